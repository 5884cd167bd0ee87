//! Pooling choices and the normalisation that follows them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How token states become one item vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The last real token's state (Qwen3-Embedding: the appended `<|endoftext|>`).
    Last,
    /// Masked mean over real tokens (MiniOneRec; sentence-transformers' BERT models).
    Mean,
    /// The first token's state (`[CLS]`; BGE).
    Cls,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Last => "last",
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            _ => Err(Error::Config(format!(
                "unknown pooling `{s}` (expected last, mean or cls)"
            ))),
        }
    }
}

/// Flat row index of each sequence's last token in a right-padded (rows × t) batch.
pub(crate) fn last_token_rows(seqs: &[&[u32]], t: usize) -> Vec<u32> {
    seqs.iter()
        .enumerate()
        .map(|(r, s)| (r * t + s.len() - 1) as u32)
        .collect()
}

/// Scale `v` to unit L2 norm (a zero vector stays zero). Summed in f64 so the result does
/// not depend on the vector's length in ulps.
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let n = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    if n > 0.0 {
        for x in v.iter_mut() {
            *x = (*x as f64 / n) as f32;
        }
    }
}

/// Matryoshka truncation: keep the first `dim` components, then re-normalise.
pub fn finish(mut v: Vec<f32>, dim: Option<usize>, normalize: bool) -> Vec<f32> {
    if normalize {
        l2_normalize(&mut v);
    }
    if let Some(d) = dim
        && d < v.len()
    {
        v.truncate(d);
        l2_normalize(&mut v);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matryoshka_truncates_then_renormalises() {
        let v = finish(vec![3.0, 4.0, 12.0], Some(2), true);
        assert_eq!(v.len(), 2);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        let z = finish(vec![0.0; 4], None, true);
        assert_eq!(z, vec![0.0; 4]);
    }
}
