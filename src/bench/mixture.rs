//! `sidtool bench gen`: the benchmark data as a deterministic Gaussian mixture, written by
//! sidtool itself so a machine without pyarrow (a GPU box with only torch) can make it. Rows:
//! one of 64 unit centres plus anisotropic noise (a power-law spectrum of total norm 0.85,
//! permuted per centre), then normalised to unit length; the same shape of data as
//! `bench/rq_anchor.py gen` makes, not the same rows.

use crate::error::{Error, Result};
use crate::item_id::ItemIds;
use crate::matrix::Matrix;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::path::Path;

const CENTRES: usize = 64;
/// Norm of each centre's noise scales.
const NOISE: f64 = 0.85;
/// Spectrum exponent: scale_i ∝ (i + 1)^−α.
const ALPHA: f64 = 0.5;
/// Rows per seeded chunk: a smaller `n` gives a prefix of a larger one.
const CHUNK: usize = 10_000;

/// `n` rows of dimension `d`, row-major, with each row's centre.
pub fn mixture(n: usize, d: usize) -> (Matrix, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<Vec<f32>> = (0..CENTRES)
        .map(|_| {
            let c: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
            let norm = c
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            c.iter().map(|v| (v / norm) as f32).collect()
        })
        .collect();
    let spec: Vec<f64> = (0..d).map(|i| ((i + 1) as f64).powf(-ALPHA)).collect();
    let total = spec.iter().map(|v| v * v).sum::<f64>().sqrt();
    let scales: Vec<Vec<f32>> = (0..CENTRES)
        .map(|_| {
            let mut s: Vec<f32> = spec.iter().map(|v| (v * NOISE / total) as f32).collect();
            s.shuffle(&mut rng);
            s
        })
        .collect();
    let mut data = vec![0f32; n * d];
    let mut cluster = vec![0u32; n];
    data.par_chunks_mut((CHUNK * d).max(1))
        .zip(cluster.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(ci, (rows, ks))| {
            let mut rng = ChaCha8Rng::seed_from_u64(1 + ci as u64);
            for (row, k) in rows.chunks_mut(d.max(1)).zip(ks) {
                *k = rng.random_range(0..CENTRES as u32);
                let (c, s) = (&centres[*k as usize], &scales[*k as usize]);
                for ((v, &cv), &sv) in row.iter_mut().zip(c).zip(s) {
                    let z: f32 = rng.sample(StandardNormal);
                    *v = cv + sv * z;
                }
                let norm = crate::matrix::sq_norm(row).sqrt().max(f32::MIN_POSITIVE);
                row.iter_mut().for_each(|v| *v /= norm);
            }
        });
    (Matrix::new(data, n, d), cluster)
}

/// Write the mixture as an embeddings table (`item_id` Int64 = row index, `embedding`) and,
/// with `npy`, the same matrix as a NumPy file for scripts without pyarrow.
pub fn write(n: usize, d: usize, out: &Path, npy: Option<&Path>) -> Result<()> {
    if n == 0 || d == 0 {
        return Err(Error::Config("bench gen needs --n ≥ 1 and --d ≥ 1".into()));
    }
    let (x, _) = mixture(n, d);
    let ids = ItemIds::Int((0..n as i64).collect());
    let mut w = crate::io::embeddings::EmbeddingWriter::create(out, ids.data_type(), d)?;
    w.write(&ids, &x)?;
    w.finish()?;
    if let Some(p) = npy {
        let t = candle_core::Tensor::from_vec(x.data, (n, d), &candle_core::Device::Cpu)?;
        t.write_npy(p)
            .map_err(|e| Error::io(p, std::io::Error::other(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unit_deterministic_and_a_prefix_of_more_rows() {
        let (a, ka) = mixture(12_345, 16);
        let (b, kb) = mixture(20_001, 16);
        assert_eq!(a.data[..], b.data[..a.data.len()]);
        assert_eq!(ka[..], kb[..ka.len()]);
        for i in 0..a.rows {
            assert!((crate::matrix::sq_norm(a.row(i)) - 1.0).abs() < 1e-5);
        }
        // Every centre is used.
        let mut seen = [false; CENTRES];
        ka.iter().for_each(|&k| seen[k as usize] = true);
        assert!(seen.iter().all(|&s| s));
        // Rows of one centre are, on average, much closer to each other than to the rest.
        let mean_cos = |same: bool| {
            let v: Vec<f32> = (1..2000)
                .filter(|&i| (ka[i] == ka[0]) == same)
                .map(|i| crate::matrix::dot(a.row(0), a.row(i)))
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        let (same, other) = (mean_cos(true), mean_cos(false));
        assert!(same > other + 0.2, "{same} vs {other}");
    }
}
