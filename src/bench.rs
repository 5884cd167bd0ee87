//! `sidtool bench`: the figures docs/benchmarks.md quotes, measured the same way as
//! `shared/bench/rq_anchor.py faiss` so the two can be put side by side.

use crate::config::QuantizerConfig;
use crate::error::Result;
use crate::ids::stats::code_stats;
use crate::io::embeddings::read_all;
use crate::matrix::Matrix;
use crate::progress::Silent;
use crate::quant::distance::{Codebook, gemm_flops};
use crate::quant::kmeans::sample_indices;
use crate::quant::rq_kmeans::RqKMeans;
use crate::quant::{Quantizer, distance};
use rand::SeedableRng;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct RqBenchReport {
    pub tool: &'static str,
    pub gemm_backend: String,
    pub n: usize,
    pub d: usize,
    pub train_rows: usize,
    pub codebook_sizes: Vec<usize>,
    pub niter: usize,
    pub read_s: f64,
    pub train_s: f64,
    pub encode_s: f64,
    pub encode_rows_per_s: f64,
    pub rel_mse_per_level: Vec<f64>,
    pub collision_rate: f64,
    pub levels: Vec<LevelReport>,
    /// Achieved rate of the assignment GEMM (one full nearest search of all rows).
    pub assignment_gemm_gflops: f64,
    /// Point×centroid distances k-means computed, against what plain Lloyd would compute.
    pub train_distance_evals: u64,
    pub plain_lloyd_distance_evals: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    pub utilisation: f64,
    pub entropy_bits: f64,
    pub prefix_distinct: u64,
}

/// Train RQ-KMeans on at most `points_per_centroid × K` rows (FAISS's default sampling),
/// with exactly `niter` Lloyd iterations per level, then encode every row.
pub fn rq_kmeans(
    data: &Path,
    sizes: &[usize],
    niter: usize,
    points_per_centroid: usize,
    seed: u64,
) -> Result<RqBenchReport> {
    let t = Instant::now();
    let (ids, x) = read_all(data, "item_id", "embedding", 8192)?;
    let read_s = t.elapsed().as_secs_f64();
    let want = points_per_centroid.saturating_mul(*sizes.iter().max().unwrap_or(&1));
    let sample = if want >= x.rows {
        x.clone()
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        x.gather(&sample_indices(x.rows, want, &mut rng))
    };
    let cfg = QuantizerConfig {
        codebook_sizes: sizes.to_vec(),
        max_iter: niter,
        tol: 0.0,
        ..QuantizerConfig::default()
    };
    let t = Instant::now();
    let q = RqKMeans::fit(&sample, &cfg, seed, &Silent)?;
    let train_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let codes = q.encode(&x)?;
    let encode_s = t.elapsed().as_secs_f64();
    let total: f64 = x.row_sq_norms().iter().map(|&v| v as f64).sum();
    let rel = q
        .prefix_sq_errors(&x, &codes)?
        .iter()
        .map(|e| e / total)
        .collect();
    let st = code_stats(&codes, sizes.len(), &ids, sizes);
    let mut levels = Vec::new();
    for (l, ls) in st.per_level.iter().enumerate() {
        let prefix_distinct = if l + 1 == sizes.len() {
            st.distinct_ids
        } else {
            st.prefix_fanout[l].distinct_prefixes
        };
        levels.push(LevelReport {
            utilisation: ls.utilisation,
            entropy_bits: ls.entropy_bits,
            prefix_distinct,
        });
    }
    let gflops = gemm_rate(&x, q.codebook(0))?;
    let evals = q.config().training.iter().map(|l| l.distance_evals).sum();
    let plain = sizes
        .iter()
        .map(|&k| (sample.rows * k * (niter + 1)) as u64)
        .sum();
    Ok(RqBenchReport {
        tool: "sidtool",
        gemm_backend: distance::gemm_backend(),
        n: x.rows,
        d: x.cols,
        train_rows: sample.rows,
        codebook_sizes: sizes.to_vec(),
        niter,
        read_s,
        train_s,
        encode_s,
        encode_rows_per_s: x.rows as f64 / encode_s,
        rel_mse_per_level: rel,
        collision_rate: st.collision_rate,
        levels,
        assignment_gemm_gflops: gflops,
        train_distance_evals: evals,
        plain_lloyd_distance_evals: plain,
    })
}

/// GFLOP/s of one full nearest-codeword search of `x` against `cb`.
pub fn gemm_rate(x: &Matrix, cb: &Codebook) -> Result<f64> {
    let t = Instant::now();
    let _ = cb.nearest(x, false)?;
    Ok(distance::gemm_flops(x.rows, cb.len(), x.cols) / t.elapsed().as_secs_f64() / 1e9)
}

/// Raw GEMM rate for given shapes (random data), to compare against a BLAS.
pub fn gemm(rows: usize, k: usize, d: usize) -> Result<f64> {
    use rand::Rng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let x = Matrix::new(
        (0..rows * d).map(|_| rng.random::<f32>()).collect(),
        rows,
        d,
    );
    let c = Matrix::new((0..k * d).map(|_| rng.random::<f32>()).collect(), k, d);
    let cb = Codebook::new(c)?;
    let _ = gemm_rate(&x, &cb)?;
    let t = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        let _ = cb.nearest(&x, false)?;
    }
    Ok(reps as f64 * gemm_flops(rows, k, d) / t.elapsed().as_secs_f64() / 1e9)
}
