//! Residual k-means (OneRec, MiniOneRec; docs/methods.md §2): k-means on the vectors, then on what
//! each level leaves over. No neural network, so it trains in seconds and is exactly
//! reproducible.

use crate::error::{Error, Result};
use crate::matrix::Matrix;
use crate::progress::Progress;
use crate::quant::config::{Method, QuantizerConfig};
use crate::quant::distance::Codebook;
use crate::quant::kmeans::device::DeviceCodebook;
use crate::quant::kmeans::{self, KMeansConfig};
use crate::quant::{Quantizer, store};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What config.json holds for an RQ-KMeans model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RqKMeansConfig {
    pub method: Method,
    pub format_version: u32,
    pub sidtool_version: String,
    pub dim: usize,
    pub codebook_sizes: Vec<usize>,
    pub seed: u64,
    pub max_iter: usize,
    pub tol: f64,
    pub balanced: bool,
    /// How training went, level by level (for the record; not needed to encode).
    pub training: Vec<LevelFit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LevelFit {
    pub train_rows: usize,
    pub iterations: usize,
    pub converged: bool,
    pub inertia: f64,
    pub reseeded_clusters: usize,
    pub distance_evals: u64,
}

/// Rows per host-to-device upload when encoding on a device (256 MiB at D = 1024).
const DEVICE_ENCODE_ROWS: usize = 65_536;

/// Where training keeps the residuals of the level being clustered.
enum Residual {
    Host(Matrix),
    Device(Tensor),
}

pub(crate) struct RqKMeans {
    config: RqKMeansConfig,
    codebooks: Vec<Codebook>,
}

impl RqKMeans {
    /// Training on the tuned CPU path (`device` None) or the candle path on `device`.
    pub(crate) fn fit_in(
        x: &Matrix,
        cfg: &QuantizerConfig,
        seed: u64,
        progress: &dyn Progress,
        device: Option<&Device>,
    ) -> Result<Self> {
        // The residuals being clustered: on the host for the tuned CPU path, on the device
        // for the candle path.
        let mut residual = match device {
            None => Residual::Host(x.clone()),
            Some(d) => Residual::Device(kmeans::device::upload(x, d)?),
        };
        let mut model = RqKMeans {
            config: RqKMeansConfig {
                method: Method::RqKmeans,
                format_version: store::FORMAT_VERSION,
                sidtool_version: crate::VERSION.to_string(),
                dim: x.cols,
                codebook_sizes: cfg.codebook_sizes.clone(),
                seed,
                max_iter: cfg.max_iter,
                tol: cfg.tol,
                balanced: cfg.balanced,
                training: Vec::new(),
            },
            codebooks: Vec::new(),
        };
        progress.start(
            "train rq-kmeans (levels)",
            Some(cfg.codebook_sizes.len() as u64),
        );
        for (level, &k) in cfg.codebook_sizes.iter().enumerate() {
            let kc = KMeansConfig {
                k,
                max_iter: cfg.max_iter,
                tol: cfg.tol,
                balanced: cfg.balanced,
                seed: seed.wrapping_add(level as u64),
            };
            let t = std::time::Instant::now();
            let fit = match &residual {
                Residual::Host(r) => kmeans::fit(r, &kc)?,
                Residual::Device(r) => kmeans::device::fit(r, &kc)?,
            };
            let mut used = vec![false; k];
            fit.assignment.iter().for_each(|&a| used[a as usize] = true);
            let used = used.iter().filter(|&&u| u).count();
            if used < k {
                tracing::warn!(
                    "level {}: only {used} of {k} codes hold any training item (the residuals have \
                     too few distinct values); smaller --codebook-sizes would waste fewer codes",
                    level + 1
                );
            }
            tracing::debug!(
                level = level + 1,
                seconds = t.elapsed().as_secs_f64(),
                "k-means level time"
            );
            tracing::info!(
                level = level + 1,
                k,
                iterations = fit.iterations,
                inertia = fit.inertia,
                "k-means level fitted"
            );
            model.config.training.push(LevelFit {
                train_rows: x.rows,
                iterations: fit.iterations,
                converged: fit.converged,
                inertia: fit.inertia,
                reseeded_clusters: fit.reseeded,
                distance_evals: fit.distance_evals,
            });
            model.codebooks.push(Codebook::new(fit.centroids)?);
            if level + 1 < cfg.codebook_sizes.len() {
                match &mut residual {
                    Residual::Host(r) => model.subtract(r, level, &fit.assignment),
                    Residual::Device(r) => {
                        let c =
                            kmeans::device::upload(&model.codebooks[level].centroids, r.device())?;
                        *r = kmeans::device::subtract(r, &c, &fit.assignment)?;
                    }
                }
            }
            progress.advance(1);
        }
        progress.finish();
        Ok(model)
    }

    /// Encoding through the candle path on `device` (the CPU backend too, in tests).
    pub(crate) fn encode_generic(&self, x: &Matrix, device: &Device) -> Result<Vec<u16>> {
        let levels = self.levels();
        let cbs = self
            .codebooks
            .iter()
            .map(|c| DeviceCodebook::new(c.centroids.clone(), device))
            .collect::<Result<Vec<_>>>()?;
        let mut codes = vec![0u16; x.rows * levels];
        let d = x.cols;
        for start in (0..x.rows).step_by(DEVICE_ENCODE_ROWS) {
            let len = DEVICE_ENCODE_ROWS.min(x.rows - start);
            let rows = &x.data[start * d..(start + len) * d];
            let mut r = Tensor::from_slice(rows, (len, d), device)?;
            for (level, cb) in cbs.iter().enumerate() {
                let idx = cb.nearest(&r)?;
                for (i, &j) in idx.iter().enumerate() {
                    codes[(start + i) * levels + level] = j as u16;
                }
                if level + 1 < levels {
                    r = kmeans::device::subtract(&r, cb.centroids(), &idx)?;
                }
            }
        }
        Ok(codes)
    }

    pub fn config(&self) -> &RqKMeansConfig {
        &self.config
    }

    pub fn codebook(&self, level: usize) -> &Codebook {
        &self.codebooks[level]
    }

    /// `out_i = from_i − c_{idx_i}` (`from` = `out` itself when `None`) and `norms_i = ‖out_i‖²`,
    /// in one pass over the rows.
    fn residual_into(
        &self,
        from: Option<&Matrix>,
        level: usize,
        idx: &[u32],
        out: &mut Matrix,
        norms: &mut [f32],
    ) {
        let c = &self.codebooks[level].centroids;
        let d = out.cols.max(1);
        (
            out.data.par_chunks_mut(d),
            idx.par_iter(),
            norms.par_iter_mut(),
        )
            .into_par_iter()
            .enumerate()
            .for_each(|(i, (row, &j, norm))| {
                if let Some(src) = from {
                    row.copy_from_slice(src.row(i));
                }
                for (v, &cv) in row.iter_mut().zip(c.row(j as usize)) {
                    *v -= cv;
                }
                *norm = crate::matrix::sq_norm(row);
            });
    }

    /// Subtract each row's chosen codeword from the residual, in place.
    fn subtract(&self, r: &mut Matrix, level: usize, idx: &[u32]) {
        let c = &self.codebooks[level].centroids;
        let d = r.cols;
        if d == 0 {
            return;
        }
        r.data
            .par_chunks_mut(d)
            .zip(idx.par_iter())
            .for_each(|(row, &j)| {
                for (v, &cv) in row.iter_mut().zip(c.row(j as usize)) {
                    *v -= cv;
                }
            });
    }
}

impl Quantizer for RqKMeans {
    fn method(&self) -> Method {
        Method::RqKmeans
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    fn codebook_sizes(&self) -> &[usize] {
        &self.config.codebook_sizes
    }

    fn fit(x: &Matrix, cfg: &QuantizerConfig, seed: u64, progress: &dyn Progress) -> Result<Self> {
        let device = crate::device::open(cfg.device)?;
        if cfg.balanced && !device.is_cpu() {
            tracing::warn!(
                "balanced k-means (the default) has no device path yet: training runs on the \
                 CPU, encoding still uses --device; --balanced=false trains plain k-means on \
                 the device"
            );
        }
        let generic = !(device.is_cpu() || cfg.balanced);
        Self::fit_in(x, cfg, seed, progress, generic.then_some(&device))
    }

    fn encode(&self, x: &Matrix) -> Result<Vec<u16>> {
        let levels = self.levels();
        let mut codes = vec![0u16; x.rows * levels];
        // Level 1 reads `x` itself; each later level's residual is written together with its
        // row norms in one pass (encode is memory-bound outside the GEMM).
        let mut norms = x.row_sq_norms();
        let mut r: Option<Matrix> = None;
        for level in 0..levels {
            let src = r.as_ref().unwrap_or(x);
            let near = self.codebooks[level].nearest_with_norms(src, &norms, false)?;
            for (i, &j) in near.index.iter().enumerate() {
                codes[i * levels + level] = j as u16;
            }
            if level + 1 < levels {
                r = Some(match r.take() {
                    Some(mut m) => {
                        self.residual_into(None, level, &near.index, &mut m, &mut norms);
                        m
                    }
                    None => {
                        let mut m = Matrix::new(vec![0.0; x.data.len()], x.rows, x.cols);
                        self.residual_into(Some(x), level, &near.index, &mut m, &mut norms);
                        m
                    }
                });
            }
        }
        Ok(codes)
    }

    fn encode_on(&self, x: &Matrix, device: &Device) -> Result<Vec<u16>> {
        if device.is_cpu() {
            self.encode(x)
        } else {
            self.encode_generic(x, device)
        }
    }

    fn decode_prefix(&self, codes: &[u16], depth: usize) -> Result<Matrix> {
        let levels = self.levels();
        let n = codes.len() / levels;
        let d = self.dim();
        let mut out = Matrix::zeros(n, d);
        out.data
            .par_chunks_mut(d.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                for l in 0..depth.min(levels) {
                    let c = self.codebooks[l]
                        .centroids
                        .row(codes[i * levels + l] as usize);
                    for (v, &cv) in row.iter_mut().zip(c) {
                        *v += cv;
                    }
                }
            });
        Ok(out)
    }

    fn level_distances(&self, x: &Matrix, codes: &[u16], level: usize) -> Result<Vec<f32>> {
        let levels = self.levels();
        let mut r = x.clone();
        for before in 0..level {
            let idx: Vec<u32> = (0..x.rows)
                .map(|i| codes[i * levels + before] as u32)
                .collect();
            self.subtract(&mut r, before, &idx);
        }
        self.codebooks[level].all_distances(&r)
    }

    fn fingerprint(&self) -> String {
        crate::quant::fingerprint_of(
            Method::RqKmeans,
            self.codebooks.iter().map(|c| c.centroids.data.as_slice()),
        )
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for (l, cb) in self.codebooks.iter().enumerate() {
            tensors.insert(format!("codebooks.{l}"), cb.centroids.to_tensor()?);
        }
        crate::quant::save_to(dir, &self.config, &tensors)
    }

    fn load(dir: &Path) -> Result<Self> {
        let config: RqKMeansConfig = store::read_config(dir)?;
        if config.method != Method::RqKmeans {
            return Err(Error::artifact(
                dir,
                "config.json does not describe an rq-kmeans model",
            ));
        }
        let tensors = store::load_tensors(dir)?;
        let codebooks = config
            .codebook_sizes
            .iter()
            .enumerate()
            .map(|(l, &k)| {
                let t = store::take(&tensors, dir, &format!("codebooks.{l}"), &[k, config.dim])?;
                Codebook::new(Matrix::from_tensor(&t)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RqKMeans { config, codebooks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, d: usize, seed: u64) -> Matrix {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..10 * d)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        let mut v = Vec::with_capacity(n * d);
        for i in 0..n {
            for j in 0..d {
                v.push(centres[(i % 10) * d + j] + rng.random_range(-1.0f32..1.0));
            }
        }
        Matrix::new(v, n, d)
    }

    fn cfg(sizes: &[usize]) -> QuantizerConfig {
        QuantizerConfig {
            codebook_sizes: sizes.to_vec(),
            ..QuantizerConfig::default()
        }
    }

    #[test]
    fn error_decreases_with_each_level() {
        let x = data(2000, 16, 1);
        let q = RqKMeans::fit(&x, &cfg(&[16, 16, 16]), 7, &Silent).unwrap();
        let codes = q.encode(&x).unwrap();
        let errs = q.prefix_sq_errors(&x, &codes).unwrap();
        let total: f64 = x.data.iter().map(|v| (*v as f64).powi(2)).sum();
        assert!(errs[0] < total);
        assert!(errs[1] < errs[0] && errs[2] < errs[1], "{errs:?}");
        let full = q.decode(&codes).unwrap();
        let direct: f64 = (0..x.rows)
            .map(|i| crate::matrix::sq_dist(x.row(i), full.row(i)) as f64)
            .sum();
        assert!((direct - errs[2]).abs() / direct < 1e-5);
    }

    #[test]
    fn same_seed_same_codes_and_save_load_round_trip() {
        let x = data(1500, 12, 2);
        let a = RqKMeans::fit(&x, &cfg(&[32, 8]), 3, &Silent).unwrap();
        let b = RqKMeans::fit(&x, &cfg(&[32, 8]), 3, &Silent).unwrap();
        let codes = a.encode(&x).unwrap();
        assert_eq!(codes, b.encode(&x).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        a.save(&path).unwrap();
        let c = crate::quant::load(&path).unwrap();
        assert_eq!(c.codebook_sizes(), &[32, 8]);
        assert_eq!(c.encode(&x).unwrap(), codes);
    }

    #[test]
    fn codes_do_not_depend_on_how_rows_are_batched() {
        let x = data(5000, 24, 6);
        let q = RqKMeans::fit(&x, &cfg(&[64, 32]), 2, &Silent).unwrap();
        let all = q.encode(&x).unwrap();
        let mut one_by_one = Vec::new();
        for i in (0..x.rows).step_by(97) {
            let idx: Vec<usize> = (i..(i + 97).min(x.rows)).collect();
            one_by_one.extend(q.encode(&x.gather(&idx)).unwrap());
        }
        assert_eq!(all, one_by_one);
    }

    #[test]
    fn level_distances_rank_the_chosen_code_first() {
        let x = data(300, 8, 4);
        let q = RqKMeans::fit(&x, &cfg(&[8, 8]), 1, &Silent).unwrap();
        let codes = q.encode(&x).unwrap();
        let d = q.level_distances(&x, &codes, 1).unwrap();
        for i in 0..x.rows {
            let row = &d[i * 8..(i + 1) * 8];
            let best = (0..8).min_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(row[best], row[codes[i * 2 + 1] as usize]);
        }
    }

    /// The candle path (here on candle's CPU backend, as on a GPU) against the tuned CPU path:
    /// the same codebooks to rounding and the same codes, on the test catalogue's vectors
    /// and on synthetic data, through training and through encoding.
    #[test]
    fn device_path_gives_the_cpu_codes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/items.parquet");
        let (_, items) =
            crate::io::embeddings::read_all(&path, "item_id", "embedding", 8192).unwrap();
        for (x, sizes) in [
            (items, vec![32, 16, 16]),
            (data(3000, 24, 9), vec![64, 32, 8]),
        ] {
            // Plain k-means: balanced training always runs on the CPU's own path.
            let c = QuantizerConfig {
                balanced: false,
                ..cfg(&sizes)
            };
            let cpu = RqKMeans::fit(&x, &c, 42, &Silent).unwrap();
            let dev = RqKMeans::fit_in(&x, &c, 42, &Silent, Some(&Device::Cpu)).unwrap();
            for (a, b) in cpu.codebooks.iter().zip(&dev.codebooks) {
                let diff = a
                    .centroids
                    .data
                    .iter()
                    .zip(&b.centroids.data)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(diff <= 1e-6, "codebooks differ by {diff}");
            }
            let codes = cpu.encode(&x).unwrap();
            assert_eq!(dev.encode(&x).unwrap(), codes);
            assert_eq!(cpu.encode_generic(&x, &Device::Cpu).unwrap(), codes);
            for (a, b) in cpu.config.training.iter().zip(&dev.config.training) {
                assert_eq!(a.iterations, b.iterations);
            }
        }
    }
}
