//! `sidtool bench`: the figures docs/benchmarks.md quotes, measured the same way as
//! `bench/rq_anchor.py faiss` so the two can be put side by side.

pub mod mixture;

use crate::config::QuantizerConfig;
use crate::device::DeviceKind;
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
    /// Where training and encoding ran: cpu, cuda or metal.
    pub device: DeviceKind,
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
    /// Achieved rate of the CPU assignment GEMM (one full nearest search of all rows); null
    /// on a device.
    pub assignment_gemm_gflops: Option<f64>,
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
    device: DeviceKind,
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
        device,
        // FAISS's k-means, the comparison's other side, is plain.
        balanced: false,
        ..QuantizerConfig::default()
    };
    let t = Instant::now();
    let q = RqKMeans::fit(&sample, &cfg, seed, &Silent)?;
    let train_s = t.elapsed().as_secs_f64();
    let dev = crate::device::open(device)?;
    let t = Instant::now();
    let codes = q.encode_on(&x, &dev)?;
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
    // The CPU GEMM's rate; a device's is not measured apart from the encode time.
    let gflops = if dev.is_cpu() {
        Some(gemm_rate(&x, q.codebook(0))?)
    } else {
        None
    };
    let evals = q.config().training.iter().map(|l| l.distance_evals).sum();
    let plain = sizes
        .iter()
        .map(|&k| (sample.rows * k * (niter + 1)) as u64)
        .sum();
    Ok(RqBenchReport {
        tool: "sidtool",
        device,
        gemm_backend: crate::gemm::gemm_backend(),
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
pub(crate) fn gemm_rate(x: &Matrix, cb: &Codebook) -> Result<f64> {
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

/// Items of `bench embed` compared with the CPU's f32 vectors.
const REFERENCE_ITEMS: usize = 64;

/// Figures of `sidtool bench embed`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedBenchReport {
    pub tool: &'static str,
    pub model: String,
    pub device: DeviceKind,
    pub dtype: crate::device::EmbedDType,
    pub threads: usize,
    pub items: usize,
    pub tokens_per_item: usize,
    pub batch_rows: usize,
    pub seconds: f64,
    pub items_per_s: f64,
    pub tokens_per_s: f64,
    /// Matmul FLOPs (projections + attention, 2 per multiply-add) per second of forward.
    pub gflops_per_s: Option<f64>,
    /// Seconds spent in each part (forward parts summed over all batches).
    pub breakdown_s: EmbedBreakdown,
    /// On a device or in a dtype other than f32: the lowest cosine between its vectors and
    /// the CPU's in f32, over the first items (at most 64).
    pub min_cosine_vs_f32: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedBreakdown {
    pub tokenize: f64,
    pub projections: f64,
    pub attention: f64,
    pub mlp: f64,
    pub other: f64,
    pub parquet: f64,
}

/// Embed `n` synthetic items of exactly `t` tokens (random ids, end token last) with the
/// model of `cfg`, timing each part. Tokenization is timed on the decoded texts.
pub fn embed(
    cfg: &crate::config::EmbedConfig,
    n: usize,
    t: usize,
    warmup: usize,
    seed: u64,
) -> Result<EmbedBenchReport> {
    use crate::embed::Encoder;
    use crate::embed::models::qwen3::ForwardTimes;
    use rand::Rng;
    let mut cfg = cfg.clone();
    cfg.max_length = cfg.max_length.max(t);
    let enc = Encoder::load(&cfg)?;
    let vocab = enc.tokenizer().get_vocab_size(false) as u32;
    let end = enc
        .tokenizer()
        .token_to_id(crate::embed::encoder::QWEN3_END_TOKEN)
        .unwrap_or(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let seqs: Vec<Vec<u32>> = (0..n + warmup)
        .map(|_| {
            let mut s: Vec<u32> = (0..t - 1).map(|_| rng.random_range(0..vocab)).collect();
            s.push(end);
            s
        })
        .collect();
    let texts: Vec<String> = seqs[..n]
        .iter()
        .map(|s| {
            enc.tokenizer()
                .decode(&s[..t - 1], true)
                .unwrap_or_default()
        })
        .collect();
    let clock = Instant::now();
    let _ = enc.tokenize(&texts)?;
    let tokenize = clock.elapsed().as_secs_f64();
    let rows = (cfg.batch_tokens() / t).max(1);
    for w in seqs[n..].chunks(rows) {
        let refs: Vec<&[u32]> = w.iter().map(Vec::as_slice).collect();
        enc.embed_tokens(&refs, None)?;
    }
    let mut times = ForwardTimes::default();
    let mut vectors = Vec::with_capacity(n);
    let clock = Instant::now();
    for b in seqs[..n].chunks(rows) {
        let refs: Vec<&[u32]> = b.iter().map(Vec::as_slice).collect();
        vectors.extend(enc.embed_tokens(&refs, Some(&mut times))?);
    }
    let seconds = clock.elapsed().as_secs_f64();
    let flops = enc.flops(n * t, t);
    let on_cpu_f32 =
        enc.info.dtype == crate::device::EmbedDType::F32 && cfg.device == DeviceKind::Cpu;
    let min_cosine_vs_f32 = if !on_cpu_f32 {
        drop(enc);
        // The reference is the CPU in f32 (the path checked against HF transformers), on the
        // first items only: a CPU forward of a large model is slow.
        let f32cfg = crate::config::EmbedConfig {
            dtype: Some(crate::device::EmbedDType::F32),
            device: DeviceKind::Cpu,
            batch_tokens: None,
            ..cfg.clone()
        };
        let reference = Encoder::load(&f32cfg)?;
        let mut worst = 1.0f64;
        let m = n.min(REFERENCE_ITEMS);
        let ref_rows = (f32cfg.batch_tokens() / t).max(1);
        for (b, got) in seqs[..m]
            .chunks(ref_rows)
            .zip(vectors[..m].chunks(ref_rows))
        {
            let refs: Vec<&[u32]> = b.iter().map(Vec::as_slice).collect();
            for (r, g) in reference.embed_tokens(&refs, None)?.iter().zip(got) {
                let c: f64 = r
                    .iter()
                    .zip(g)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum();
                worst = worst.min(c);
            }
        }
        Some(worst)
    } else {
        None
    };
    // Parquet: the same vectors written as an embeddings table.
    let dim = vectors.first().map_or(0, Vec::len);
    let m = Matrix::new(vectors.concat(), n, dim);
    let ids = crate::item_id::ItemIds::Int((0..n as i64).collect());
    let dir = std::env::temp_dir().join(format!("sidtool-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| crate::error::Error::io(&dir, e))?;
    let clock = Instant::now();
    let mut w = crate::io::embeddings::EmbeddingWriter::create(
        &dir.join("embeddings.parquet"),
        ids.data_type(),
        dim,
    )?;
    w.write(&ids, &m)?;
    w.finish()?;
    let parquet = clock.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(EmbedBenchReport {
        tool: "sidtool",
        model: cfg.model.clone(),
        device: cfg.device,
        dtype: cfg
            .dtype
            .unwrap_or(crate::device::EmbedDType::default_for(cfg.device)),
        threads: rayon::current_num_threads(),
        items: n,
        tokens_per_item: t,
        batch_rows: rows,
        seconds,
        items_per_s: n as f64 / seconds,
        tokens_per_s: (n * t) as f64 / seconds,
        gflops_per_s: flops.map(|f| f / seconds / 1e9),
        breakdown_s: EmbedBreakdown {
            tokenize,
            projections: times.projections,
            attention: times.attention,
            mlp: times.mlp,
            other: times.other,
            parquet,
        },
        min_cosine_vs_f32,
    })
}
