//! The LLM's embedding matrix and the new tokens: what to resize it to (never smaller than it
//! is), which new ids land on rows the model already has, and (`--init-embeddings`) initial
//! rows for them drawn as transformers' `resize_token_embeddings(mean_resizing=True)` draws new
//! rows.

use crate::error::{Error, Result};
use crate::vocab::llm::Llm;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// The file `--init-embeddings` writes.
pub(crate) const INIT_FILE: &str = "sid_embeddings.safetensors";

/// Ids `first..=last` (`count` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdRange {
    pub first: u32,
    pub last: u32,
    pub count: usize,
}

impl IdRange {
    fn new(from: usize, to: usize) -> Option<IdRange> {
        (to > from).then(|| IdRange {
            first: from as u32,
            last: to as u32 - 1,
            count: to - from,
        })
    }
}

/// How the LLM's embedding matrix must change for the new tokens (in `sid_tokens.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resize {
    /// Rows of the LLM's input embedding matrix (`vocab_size` of its config.json); absent when
    /// the LLM given has no config.json (a bare tokenizer.json).
    pub embedding_rows: Option<usize>,
    /// What to pass to `resize_token_embeddings`: the model's rows when the new tokens fit in
    /// them, else the new vocabulary rounded up to `pad_to_multiple`; never fewer rows than the
    /// model has.
    pub resize_embeddings_to: usize,
    /// New token ids on rows the model already has: rows past its tokenizer that were never
    /// trained, which resizing does not touch. Initialise them yourself (e.g. from
    /// `sid_embeddings.safetensors`).
    pub reused_rows: Option<IdRange>,
    /// New token ids on rows the resize adds (transformers initialises these itself).
    pub new_rows: Option<IdRange>,
}

/// The advice for tokens `base..vocab` of a model with `rows` embedding rows.
pub fn advise(base: usize, vocab: usize, rows: Option<usize>, pad_to_multiple: usize) -> Resize {
    let m = pad_to_multiple.max(1);
    let padded = vocab.div_ceil(m) * m;
    match rows {
        Some(r) => Resize {
            embedding_rows: Some(r),
            resize_embeddings_to: if vocab <= r { r } else { padded.max(r) },
            reused_rows: IdRange::new(base, vocab.min(r)),
            new_rows: IdRange::new(base.max(r), vocab),
        },
        None => Resize {
            embedding_rows: None,
            resize_embeddings_to: padded,
            reused_rows: None,
            new_rows: IdRange::new(base, vocab),
        },
    }
}

/// Where a model keeps its input embeddings, by the tensor name's ending, most specific first.
const EMBEDDING_NAMES: [&str; 5] = [
    "embed_tokens.weight",
    "tok_embeddings.weight",
    "word_embeddings.weight",
    "wte.weight",
    "embeddings.weight",
];

/// Initial rows for the token `ids` from the LLM's input embeddings, written to `out`
/// (`token_ids`: I64 [n], `embeddings`: F32 [n, d]). As transformers' mean resizing does
/// (PR #33325): the mean of the existing rows plus a draw from N(0, 1e-9·Σ) of their covariance
/// (the mean alone when Σ is not positive definite). Unlike transformers, only the first
/// `base` rows count — the tokens the tokenizer has — since reserved rows past it were never
/// trained. Seeded: the same seed gives the same rows.
pub(crate) fn init_rows(llm: &Llm, base: usize, ids: &[u32], seed: u64, out: &Path) -> Result<()> {
    let weights = llm.weights()?;
    let Some((name, file)) = EMBEDDING_NAMES.iter().find_map(|suffix| {
        weights
            .iter()
            .filter(|(n, _)| n.ends_with(suffix))
            .min_by_key(|(n, _)| n.len())
    }) else {
        return Err(Error::Config(format!(
            "--init-embeddings: no input embedding tensor among the weights of {} (looked for \
             names ending in {})",
            llm.source,
            EMBEDDING_NAMES.join(", ")
        )));
    };
    let file = llm.shard(file)?;
    // SAFETY: mapped read-only and never written by sidtool (as in embed/loading/weights.rs).
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(&file) }
        .map_err(|e| Error::artifact(&file, format!("not a safetensors file: {e}")))?;
    let table = st.load(name, &Device::Cpu)?.to_dtype(DType::F32)?;
    let (rows, d) = table.dims2().map_err(|_| {
        Error::artifact(
            &file,
            format!("tensor {name} is not a matrix: {:?}", table.shape()),
        )
    })?;
    if let Some(r) = llm.embedding_rows()?
        && r != rows
    {
        return Err(Error::artifact(
            &file,
            format!("tensor {name} has {rows} rows but config.json's vocab_size is {r}"),
        ));
    }
    let n = base.min(rows);
    if n < 2 {
        return Err(Error::artifact(
            &file,
            format!("tensor {name} has too few rows ({rows})"),
        ));
    }
    let known = table.narrow(0, 0, n)?;
    let mean = known.mean_keepdim(0)?;
    let centered = known.broadcast_sub(&mean)?;
    let cov = (centered.t()?.matmul(&centered)? / n as f64)?;
    let mean: Vec<f32> = mean.flatten_all()?.to_vec1()?;
    let cov: Vec<f32> = cov.flatten_all()?.to_vec1()?;
    let l = nalgebra::DMatrix::from_fn(d, d, |i, j| 1e-9 * cov[i * d + j] as f64)
        .cholesky()
        .map(|c| c.l());
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows_out = Vec::with_capacity(ids.len() * d);
    for _ in ids {
        match &l {
            Some(l) => {
                let z = nalgebra::DVector::from_fn(d, |_, _| {
                    rand_distr::StandardNormal.sample(&mut rng)
                });
                let x = l * z;
                rows_out.extend((0..d).map(|i| mean[i] + x[i] as f32));
            }
            None => rows_out.extend_from_slice(&mean),
        }
    }
    let ids_t = Tensor::from_vec(
        ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
        ids.len(),
        &Device::Cpu,
    )?;
    let emb = Tensor::from_vec(rows_out, (ids.len(), d), &Device::Cpu)?;
    let tensors = HashMap::from([
        ("token_ids".to_string(), ids_t),
        ("embeddings".to_string(), emb),
    ]);
    candle_core::safetensors::save(&tensors, out).map_err(|e| Error::write(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_never_shrinks_the_matrix() {
        // Qwen3-0.6B: 151 669 tokens, 151 936 rows; 68 SID tokens fit in the reserved rows.
        let r = advise(151_669, 151_737, Some(151_936), 64);
        assert_eq!(r.resize_embeddings_to, 151_936);
        assert_eq!(r.reused_rows, IdRange::new(151_669, 151_737));
        assert_eq!(r.new_rows, None);
        // More tokens than reserved rows: grow to the padded size, part reused, part new.
        let r = advise(151_669, 152_000, Some(151_936), 64);
        assert_eq!(r.resize_embeddings_to, 152_000_usize.div_ceil(64) * 64);
        assert_eq!(r.reused_rows.unwrap().count, 151_936 - 151_669);
        assert_eq!(r.new_rows, IdRange::new(151_936, 152_000));
        // Without config.json: the padded size, every new id on a new row.
        let r = advise(100, 110, None, 64);
        assert_eq!(r.resize_embeddings_to, 128);
        assert_eq!(r.new_rows.unwrap().count, 10);
        for rows in [90, 100, 105, 110, 111, 500] {
            let r = advise(100, 110, Some(rows), 64);
            assert!(r.resize_embeddings_to >= rows.max(110), "{rows}: {r:?}");
        }
    }

    /// A model directory with a `model.embed_tokens.weight` of `rows` rows.
    fn model(rows: &[Vec<f32>]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let flat: Vec<f32> = rows.concat();
        let t = Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap();
        let other = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(
            &HashMap::from([
                ("model.embed_tokens.weight".to_string(), t),
                ("lm_head.weight".to_string(), other),
            ]),
            d.path().join("model.safetensors"),
        )
        .unwrap();
        std::fs::write(d.path().join("tokenizer.json"), "{}").unwrap();
        let cfg = format!(r#"{{"vocab_size": {}}}"#, rows.len());
        std::fs::write(d.path().join("config.json"), cfg).unwrap();
        d
    }

    fn read(path: &Path) -> (Vec<i64>, Vec<Vec<f32>>) {
        let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
        (
            t["token_ids"].to_vec1().unwrap(),
            t["embeddings"].to_vec2().unwrap(),
        )
    }

    #[test]
    fn new_rows_are_the_mean_of_the_tokenizer_rows_plus_tiny_noise() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        // 40 trained rows of 4 dims, then 10 reserved rows far away that must not count.
        let mut rows: Vec<Vec<f32>> = (0..40)
            .map(|_| {
                (0..4)
                    .map(|j| j as f32 + rng.random_range(-1.0..1.0))
                    .collect()
            })
            .collect();
        rows.extend((0..10).map(|_| vec![100.0; 4]));
        let dir = model(&rows);
        let llm = Llm::resolve(dir.path(), "main").unwrap();
        let out = dir.path().join("init.safetensors");
        init_rows(&llm, 40, &[40, 41, 55], 7, &out).unwrap();
        let (ids, emb) = read(&out);
        assert_eq!(ids, vec![40, 41, 55]);
        let mean: Vec<f64> = (0..4)
            .map(|j| rows[..40].iter().map(|r| r[j] as f64).sum::<f64>() / 40.0)
            .collect();
        for r in &emb {
            for j in 0..4 {
                // σ·√1e-9 ≈ 2e-5: the draw stays next to the mean, but is a draw.
                assert!((r[j] as f64 - mean[j]).abs() < 1e-3, "{r:?} vs {mean:?}");
            }
        }
        assert_ne!(emb[0], emb[1]);
        // Seeded.
        init_rows(&llm, 40, &[40, 41, 55], 7, &out).unwrap();
        assert_eq!(read(&out).1, emb);
        // Sharded weights: the tensor is found through the index, in its shard.
        let sharded = tempfile::tempdir().unwrap();
        for f in ["tokenizer.json", "config.json"] {
            std::fs::copy(dir.path().join(f), sharded.path().join(f)).unwrap();
        }
        let shard = "model-00002-of-00002.safetensors";
        std::fs::copy(
            dir.path().join("model.safetensors"),
            sharded.path().join(shard),
        )
        .unwrap();
        let index = format!(
            r#"{{"weight_map": {{"lm_head.weight": "model-00001-of-00002.safetensors",
                "model.embed_tokens.weight": "{shard}"}}}}"#
        );
        std::fs::write(sharded.path().join("model.safetensors.index.json"), index).unwrap();
        let llm = Llm::resolve(sharded.path(), "main").unwrap();
        init_rows(&llm, 40, &[40, 41, 55], 7, &out).unwrap();
        assert_eq!(read(&out).1, emb);
        // A singular covariance (fewer rows than dims): the mean alone.
        let flat = model(&[vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0]]);
        let llm = Llm::resolve(flat.path(), "main").unwrap();
        init_rows(&llm, 2, &[2], 0, &out).unwrap();
        assert_eq!(read(&out).1, vec![vec![2.0, 2.0, 2.0]]);
    }
}
