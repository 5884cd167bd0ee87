//! k-means on a candle device (`--device cuda`/`metal`): the same algorithm and the same
//! answers as the tuned CPU path, with the O(N·K·D) work (distance GEMMs, centroid sums,
//! inertia, k-means++ distances) in device tensors and only O(N) or O(K·D) results coming back.
//!
//! The CPU path's rule is that a point goes to the centre at the smallest *exact* squared
//! distance, lowest index on ties, with GEMM distances trusted only when the runner-up is
//! farther than the GEMM's rounding slack. The device keeps that rule: its f32 GEMM picks the
//! centre, rows whose runner-up is within the slack (or that tie) are flagged on the device,
//! and only those rows come back to be settled by exact distances on the host, with the same
//! function the CPU path uses. Centroid sums are accumulated in f64 (f32 where the device has
//! no f64: Metal) and divided as the CPU path divides, so centroids agree to the last bit
//! except where two summation orders round differently.
//!
//! The search is f32, not bf16/tf32: at RQ-KMeans' shapes (K ≤ a few thousand) an f32 GEMM
//! on a current GPU is already a small part of a level's time next to the transfers, and a
//! coarser GEMM would flag far more rows for the exact re-check (its slack grows with the
//! precision's unit roundoff, ≈ 2⁻⁸ for bf16 against 2⁻²⁴).

use super::{KMEANSPP_CANDIDATES_PER_CENTROID, KMeansConfig, KMeansFit, sample_indices};
use crate::error::{Error, Result};
use crate::matrix::{Matrix, sq_dist, sq_norm};
use crate::quant::distance::gemm_slack;
use candle_core::{D, DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows per device GEMM block: a 16 384 × K block of distances is 16 MiB at K = 256.
pub(crate) const BLOCK_ROWS: usize = 16_384;

/// Rows of `x` (row-major f32, N × D) as a device tensor.
pub(crate) fn upload(x: &Matrix, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(&x.data, (x.rows, x.cols), device)?)
}

/// A device tensor (N × D, f32) back as a [`Matrix`].
pub(crate) fn download(t: &Tensor) -> Result<Matrix> {
    let (rows, cols) = t.dims2()?;
    let data = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(Matrix::new(data, rows, cols))
}

/// Codewords on the device, with what the search needs of them on the host.
pub(crate) struct DeviceCodebook {
    /// K × D on the device.
    centroids: Tensor,
    /// ‖c_j‖², 1 × K on the device.
    sq_norms: Tensor,
    /// The same codewords on the host, for the exact re-checks.
    host: Matrix,
    /// Largest ‖c_j‖², for a slack that holds for every codeword.
    max_sq_norm: f32,
}

impl DeviceCodebook {
    pub(crate) fn new(host: Matrix, device: &Device) -> Result<Self> {
        if host.rows == 0 {
            return Err(Error::Config(
                "a codebook needs at least one codeword".into(),
            ));
        }
        let norms = host.row_sq_norms();
        let max_sq_norm = norms.iter().copied().fold(0.0, f32::max);
        Ok(DeviceCodebook {
            centroids: upload(&host, device)?,
            sq_norms: Tensor::from_vec(norms, (1, host.rows), device)?,
            host,
            max_sq_norm,
        })
    }

    pub(crate) fn centroids(&self) -> &Tensor {
        &self.centroids
    }

    /// Nearest codeword of every row of `x` (N × D on the device), under the CPU path's rule
    /// (see the module docs).
    pub(crate) fn nearest(&self, x: &Tensor) -> Result<Vec<u32>> {
        let (n, d) = x.dims2()?;
        let k = self.host.rows;
        let mut out = Vec::with_capacity(n);
        // 2·gemm_slack(d, ‖x‖², max‖c‖²), as an affine function of ‖x‖².
        let a = 2.0 * (d as f32 + 2.0) * f32::EPSILON;
        let slack_at = |xn: f32| 2.0 * gemm_slack(d, xn, self.max_sq_norm);
        for start in (0..n).step_by(BLOCK_ROWS) {
            let len = BLOCK_ROWS.min(n - start);
            let xb = x.narrow(0, start, len)?;
            // ‖c‖² − 2 x·c: the squared distance less ‖x‖², which the argmin does not need.
            let v = xb
                .matmul(&self.centroids.t()?)?
                .affine(-2.0, 0.0)?
                .broadcast_add(&self.sq_norms)?;
            let best_v = v.min_keepdim(D::Minus1)?;
            let best = v.argmin(D::Minus1)?.to_vec1::<u32>()?;
            let at_min = v.broadcast_eq(&best_v)?;
            let ties = at_min.to_dtype(DType::F32)?.sum(D::Minus1)?;
            let inf = Tensor::full(f32::INFINITY, (len, k), x.device())?;
            let second = at_min.where_cond(&inf, &v)?.min_keepdim(D::Minus1)?;
            let xn = xb.sqr()?.sum_keepdim(D::Minus1)?;
            let slack = xn.affine(
                a as f64,
                (a * self.max_sq_norm + 2.0 * f32::MIN_POSITIVE) as f64,
            )?;
            let close = (second - &best_v)?.le(&slack)?.to_dtype(DType::F32)?;
            let flagged = (close + ties.gt(1.0)?.to_dtype(DType::F32)?.unsqueeze(1)?)?
                .squeeze(1)?
                .to_vec1::<f32>()?;
            let rows: Vec<u32> = (0..len as u32)
                .filter(|&r| flagged[r as usize] > 0.0)
                .collect();
            let mut best = best;
            if !rows.is_empty() {
                let ids = Tensor::from_slice(&rows, rows.len(), x.device())?;
                let xr = download(&xb.index_select(&ids, 0)?)?;
                let vr = download(&v.index_select(&ids, 0)?)?;
                for (t, &r) in rows.iter().enumerate() {
                    let (row, vals) = (xr.row(t), vr.row(t));
                    let bd = vals.iter().copied().fold(f32::INFINITY, f32::min);
                    let slack = slack_at(sq_norm(row));
                    best[r as usize] = self.exact_among(row, vals, bd, slack);
                }
            }
            out.extend(best);
        }
        Ok(out)
    }

    /// The CPU path's re-check: among the codewords within `slack` of the GEMM's best value
    /// `bd`, the one at the smallest exact distance (lowest index on ties).
    fn exact_among(&self, row: &[f32], vals: &[f32], bd: f32, slack: f32) -> u32 {
        let mut best = (f32::INFINITY, 0usize);
        for (j, &vj) in vals.iter().enumerate() {
            if vj - bd <= slack {
                let e = sq_dist(row, self.host.row(j));
                if e < best.0 {
                    best = (e, j);
                }
            }
        }
        best.1 as u32
    }
}

/// The codeword rows `idx` of `c` subtracted from `x`: the next level's residual.
pub(crate) fn subtract(x: &Tensor, c: &Tensor, idx: &[u32]) -> Result<Tensor> {
    let ids = Tensor::from_slice(idx, idx.len(), x.device())?;
    Ok((x - c.index_select(&ids, 0)?)?)
}

/// k-means++ over a seeded subset of candidates, as `seeding::kmeans_pp` draws it: the same
/// candidates, the same random numbers, the same f64 running sums on the host; only the
/// point-to-centre distances are computed on the device.
fn kmeans_pp(x: &Tensor, k: usize, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let n = x.dim(0)?;
    let m = n.min(k.saturating_mul(KMEANSPP_CANDIDATES_PER_CENTROID).max(k));
    let pts = if m == n {
        x.clone()
    } else {
        let cand: Vec<u32> = sample_indices(n, m, rng)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        x.index_select(&Tensor::from_slice(&cand, m, x.device())?, 0)?
    };
    let dist_to = |p: usize| -> Result<Tensor> {
        Ok(pts
            .broadcast_sub(&pts.narrow(0, p, 1)?)?
            .sqr()?
            .sum(D::Minus1)?)
    };
    let first = rng.random_range(0..m);
    let mut chosen = vec![first as u32];
    let mut d2 = dist_to(first)?;
    for _ in 1..k {
        let host: Vec<f64> = d2.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        let pick = super::seeding::draw(&host, rng);
        chosen.push(pick as u32);
        d2 = d2.minimum(&dist_to(pick)?)?;
    }
    Ok(pts.index_select(&Tensor::from_slice(&chosen, k, x.device())?, 0)?)
}

/// Per-cluster member sums (K × D, f64 where the device has it) and member counts.
///
/// The sums are a GEMM, one-hot(assignment)ᵀ · X, not `index_add`: candle's CUDA `index_add`
/// runs one thread per output column, each walking every row in turn (1 024 threads for
/// N = 10⁶ sequential steps), while the GEMM keeps the whole GPU busy. In f64 the result
/// rounds to the same f32 centroids as the CPU path's f64 sums.
fn cluster_sums(x: &Tensor, assign: &[u32], k: usize) -> Result<(Tensor, Vec<usize>)> {
    let (n, d) = x.dims2()?;
    let dt = sum_dtype(x.device());
    let codes = Tensor::arange(0u32, k as u32, x.device())?.unsqueeze(0)?;
    let mut sums = Tensor::zeros((k, d), dt, x.device())?;
    for start in (0..n).step_by(BLOCK_ROWS) {
        let len = BLOCK_ROWS.min(n - start);
        let ids = Tensor::from_slice(&assign[start..start + len], (len, 1), x.device())?;
        let one_hot = ids.broadcast_eq(&codes)?.to_dtype(dt)?;
        let xb = x.narrow(0, start, len)?.to_dtype(dt)?;
        sums = (sums + one_hot.t()?.matmul(&xb)?)?;
    }
    let mut counts = vec![0usize; k];
    assign.iter().for_each(|&a| counts[a as usize] += 1);
    Ok((sums, counts))
}

fn sum_dtype(device: &Device) -> DType {
    if device.is_metal() {
        DType::F32
    } else {
        DType::F64
    }
}

/// Member means; a cluster without members keeps its previous centroid. The CPU path
/// multiplies by 1/count in f64, and so does this.
fn centroids(sums: &Tensor, counts: &[usize], prev: &Matrix) -> Result<Matrix> {
    let inv: Vec<f64> = counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f64 })
        .collect();
    let dt = sums.dtype();
    let inv = Tensor::from_vec(inv, (counts.len(), 1), sums.device())?.to_dtype(dt)?;
    let mut c = download(&sums.broadcast_mul(&inv)?.to_dtype(DType::F32)?)?;
    for (j, &n) in counts.iter().enumerate() {
        if n == 0 {
            c.row_mut(j).copy_from_slice(prev.row(j));
        }
    }
    Ok(c)
}

/// ‖x_i − c_{a(i)}‖² for every row, on the device (N, f32).
fn assigned_sq_dists(x: &Tensor, c: &Tensor, assign: &[u32]) -> Result<Tensor> {
    let (n, _) = x.dims2()?;
    let mut parts = Vec::new();
    for start in (0..n).step_by(BLOCK_ROWS) {
        let len = BLOCK_ROWS.min(n - start);
        let r = subtract(&x.narrow(0, start, len)?, c, &assign[start..start + len])?;
        parts.push(r.sqr()?.sum(D::Minus1)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Σ‖x_i − c_{a(i)}‖², each term exact in f32 and the sum in f64.
fn inertia(x: &Tensor, c: &Tensor, assign: &[u32]) -> Result<f64> {
    let d = assigned_sq_dists(x, c, assign)?;
    let dt = sum_dtype(x.device());
    Ok(d.to_dtype(dt)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// Move the farthest points of non-singleton clusters into empty clusters, farthest first
/// (ties: lower index). The CPU path orders by its distance bounds, which are exact for most
/// points; this orders by exact distances, so the two can differ only in a fit where a
/// cluster empties.
fn reseed_empty(
    x: &Tensor,
    c: &mut Matrix,
    assign: &mut [u32],
    counts: &mut [usize],
) -> Result<Vec<usize>> {
    let empty: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] == 0).collect();
    let mut moved = Vec::with_capacity(empty.len());
    if empty.is_empty() {
        return Ok(moved);
    }
    let dist = assigned_sq_dists(x, &upload(c, x.device())?, assign)?.to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..assign.len()).collect();
    order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    let mut next = order.into_iter();
    for &j in &empty {
        for p in next.by_ref() {
            let old = assign[p] as usize;
            if counts[old] > 1 {
                counts[old] -= 1;
                counts[j] = 1;
                assign[p] = j as u32;
                let row = download(&x.narrow(0, p, 1)?)?;
                c.row_mut(j).copy_from_slice(row.row(0));
                moved.push(p);
                break;
            }
        }
    }
    Ok(moved)
}

/// Lloyd's k-means on the rows of `x` (N × D, f32, on the device): k-means++ seeding, then
/// assignment and update steps until no point moves, the inertia changes by less than
/// `cfg.tol` (relative), or `cfg.max_iter` iterations. Same stopping rule and results as
/// `kmeans::fit` on the CPU (see the module docs for where they may differ).
pub(crate) fn fit(x: &Tensor, cfg: &KMeansConfig) -> Result<KMeansFit> {
    let (n, _) = x.dims2()?;
    let k = cfg.k;
    super::check_k(n, k)?;
    if cfg.balanced {
        return Err(Error::Config(
            "balanced k-means runs on the CPU only; pass --balanced=false or use --device cpu"
                .into(),
        ));
    }
    let device = x.device();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut cb = DeviceCodebook::new(download(&kmeans_pp(x, k, &mut rng)?)?, device)?;
    let mut assign = cb.nearest(x)?;
    let mut inertia_now = if cfg.tol > 0.0 {
        inertia(x, cb.centroids(), &assign)?
    } else {
        0.0
    };
    let (mut sums, mut counts) = cluster_sums(x, &assign, k)?;
    let (mut iterations, mut converged, mut reseeded) = (0, false, 0);
    while iterations < cfg.max_iter {
        iterations += 1;
        let mut c = centroids(&sums, &counts, &cb.host)?;
        let moved = reseed_empty(x, &mut c, &mut assign, &mut counts)?;
        reseeded += moved.len();
        cb = DeviceCodebook::new(c, device)?;
        let next = cb.nearest(x)?;
        let changed = next.iter().zip(&assign).filter(|(a, b)| a != b).count();
        assign = next;
        (sums, counts) = cluster_sums(x, &assign, k)?;
        let rel = if cfg.tol > 0.0 {
            let new_inertia = inertia(x, cb.centroids(), &assign)?;
            let rel = if inertia_now > 0.0 {
                (inertia_now - new_inertia).abs() / inertia_now
            } else {
                0.0
            };
            inertia_now = new_inertia;
            rel
        } else {
            f64::INFINITY
        };
        if moved.is_empty() && (changed == 0 || rel < cfg.tol) {
            converged = true;
            break;
        }
    }
    if cfg.tol <= 0.0 {
        inertia_now = inertia(x, cb.centroids(), &assign)?;
    }
    Ok(KMeansFit {
        centroids: cb.host,
        assignment: assign,
        inertia: inertia_now,
        iterations,
        converged,
        reseeded,
        distance_evals: (n * k * (iterations + 1)) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::distance::Codebook;

    /// Points around well-separated blobs plus noise, deterministic.
    fn data(n: usize, d: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..12 * d)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        let mut v = Vec::with_capacity(n * d);
        for _ in 0..n {
            let c = rng.random_range(0..12);
            for j in 0..d {
                v.push(centres[c * d + j] + rng.random_range(-1.0f32..1.0));
            }
        }
        Matrix::new(v, n, d)
    }

    #[test]
    fn nearest_matches_the_cpu_search_including_ties() {
        let x = data(3000, 24, 1);
        let mut c = data(40, 24, 2);
        // Exact duplicates and a copy of a data point: ties the GEMM cannot settle.
        let dup = c.row(3).to_vec();
        c.row_mut(17).copy_from_slice(&dup);
        let p = x.row(5).to_vec();
        c.row_mut(30).copy_from_slice(&p);
        let cpu = Codebook::new(c.clone())
            .unwrap()
            .nearest(&x, false)
            .unwrap()
            .index;
        let dev = DeviceCodebook::new(c, &Device::Cpu).unwrap();
        let got = dev.nearest(&upload(&x, &Device::Cpu).unwrap()).unwrap();
        assert_eq!(got, cpu);
        assert_eq!(got[5], 30);
    }

    #[test]
    fn seeding_draws_the_cpu_seeds() {
        let x = data(2500, 16, 3);
        for k in [1, 7, 64] {
            let cpu = super::super::kmeans_pp(&x, k, &mut ChaCha8Rng::seed_from_u64(9));
            let t = kmeans_pp(
                &upload(&x, &Device::Cpu).unwrap(),
                k,
                &mut ChaCha8Rng::seed_from_u64(9),
            );
            assert_eq!(download(&t.unwrap()).unwrap().data, cpu.data, "k = {k}");
        }
    }

    #[test]
    fn lloyd_matches_the_cpu_fit() {
        let x = data(4000, 32, 4);
        for (k, tol) in [(16, 1e-4), (50, 0.0), (200, 1e-4)] {
            let cfg = KMeansConfig {
                k,
                max_iter: 25,
                tol,
                balanced: false,
                seed: 5,
            };
            let cpu = super::super::fit(&x, &cfg).unwrap();
            let dev = fit(&upload(&x, &Device::Cpu).unwrap(), &cfg).unwrap();
            assert_eq!(dev.assignment, cpu.assignment, "k = {k}");
            assert_eq!(dev.iterations, cpu.iterations, "k = {k}");
            assert_eq!(dev.converged, cpu.converged, "k = {k}");
            let max_diff = dev
                .centroids
                .data
                .iter()
                .zip(&cpu.centroids.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff <= 1e-6, "k = {k}: centroids differ by {max_diff}");
            assert!((dev.inertia - cpu.inertia).abs() <= 1e-9 * cpu.inertia.max(1.0));
        }
    }

    #[test]
    fn balanced_is_refused_with_a_reason() {
        let x = data(100, 4, 6);
        let cfg = KMeansConfig {
            balanced: true,
            ..KMeansConfig::new(4, 1)
        };
        let e = fit(&upload(&x, &Device::Cpu).unwrap(), &cfg).unwrap_err();
        assert!(e.to_string().contains("balanced"), "{e}");
    }
}
