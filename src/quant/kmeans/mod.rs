//! k-means: sampled k-means++ seeding (`seeding.rs`), Lloyd iterations accelerated by
//! triangle-inequality bounds (`elkan.rs`, or `hamerly.rs` when Elkan's bounds would not fit in
//! memory) and OneRec's balanced variant (`balanced.rs`). The bounds only skip work that cannot
//! change the result: assignments are those of plain Lloyd (tested against a naive Lloyd).

mod balanced;
pub(crate) mod device;
mod elkan;
mod hamerly;
mod seeding;

pub(crate) use seeding::kmeans_pp;

use crate::error::{Error, Result};
use crate::matrix::{Matrix, sq_dist};
use crate::quant::distance::{Codebook, gemm_slack};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// k-means++ seeds from at most this many candidate points per centroid: seeding is
/// sequential (one pass per centre), and past a few candidates per centre the initial
/// inertia no longer improves measurably, while the seeding time grows linearly.
pub(crate) const KMEANSPP_CANDIDATES_PER_CENTROID: usize = 8;
/// Memory Elkan's per-centre lower bounds (N × K f32) may take; above it, Hamerly's single
/// bound per point is used. 1 GiB covers a 1 M-row training sample at K = 256.
pub(crate) const ELKAN_BOUNDS_BYTES: usize = 1 << 30;
/// A point whose bounds leave more than K / this many candidate centres is searched with the
/// GEMM instead of one exact distance at a time: a GEMM row of K distances costs about as much
/// as K / 6 single distances at the arithmetic rates (~200 GFLOP/s vs ~30), but single
/// distances are bound by memory traffic, and K / 32 measured fastest (11.5–12.7 s vs
/// 12.4–14.2 s at K / 6 on the 100k × 1024 benchmark).
const ELKAN_GEMM_FRACTION: usize = 32;
/// docs/methods.md §2 defaults.
pub(crate) const DEFAULT_MAX_ITER: usize = 50;
pub(crate) const DEFAULT_TOL: f64 = 1e-4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KMeansConfig {
    pub k: usize,
    pub max_iter: usize,
    /// Stop when the relative change of inertia between iterations falls below this.
    pub tol: f64,
    /// Every cluster ends with ⌊N/K⌋ or ⌈N/K⌉ members (OneRec's balanced k-means).
    pub balanced: bool,
    pub seed: u64,
}

impl KMeansConfig {
    pub fn new(k: usize, seed: u64) -> Self {
        KMeansConfig {
            k,
            max_iter: DEFAULT_MAX_ITER,
            tol: DEFAULT_TOL,
            balanced: false,
            seed,
        }
    }
}

/// A fitted k-means model and how the fit went.
#[derive(Debug, Clone)]
pub struct KMeansFit {
    pub centroids: Matrix,
    /// Cluster of every training point under the final centroids' assignment step.
    pub assignment: Vec<u32>,
    /// Sum of squared distances of points to their assigned centroid.
    pub inertia: f64,
    pub iterations: usize,
    pub converged: bool,
    /// How many times an empty cluster was re-seeded.
    pub reseeded: usize,
    /// Distance computations (point × centroid) actually done, for benchmarks.
    pub distance_evals: u64,
}

/// Fit k-means to the rows of `x`.
pub fn fit(x: &Matrix, cfg: &KMeansConfig) -> Result<KMeansFit> {
    let (n, k) = (x.rows, cfg.k);
    check_k(n, k)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let t = std::time::Instant::now();
    let init = kmeans_pp(x, k, &mut rng);
    tracing::debug!(
        k,
        seconds = t.elapsed().as_secs_f64(),
        "k-means++ seeding done"
    );
    let bounds_bytes = n
        .saturating_mul(k)
        .saturating_mul(std::mem::size_of::<f32>());
    if cfg.balanced {
        balanced::lloyd_balanced(x, init, cfg)
    } else if bounds_bytes <= ELKAN_BOUNDS_BYTES {
        elkan::lloyd_elkan(x, init, cfg, None)
    } else {
        hamerly::lloyd_hamerly(x, init, cfg)
    }
}

/// k clusters need at least k points.
fn check_k(n: usize, k: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::Config("k-means needs at least one cluster".into()));
    }
    if k > n {
        return Err(Error::Config(format!(
            "codebook size {k} is larger than the number of training points ({n}); \
             use a smaller codebook or more items"
        )));
    }
    Ok(())
}

/// `m` distinct indices out of `0..n`, sorted (Floyd's algorithm; deterministic for a seed).
pub(crate) fn sample_indices(n: usize, m: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut chosen = std::collections::HashSet::with_capacity(m);
    let mut out = Vec::with_capacity(m);
    for j in (n - m)..n {
        let t = rng.random_range(0..=j);
        let v = if chosen.contains(&t) { j } else { t };
        chosen.insert(v);
        out.push(v);
    }
    out.sort_unstable();
    out
}

/// Members of each cluster, in point order.
fn members(assignment: &[u32], k: usize) -> Vec<Vec<u32>> {
    let mut m = vec![Vec::new(); k];
    for (i, &a) in assignment.iter().enumerate() {
        m[a as usize].push(i as u32);
    }
    m
}

/// Move the farthest points of non-singleton clusters into empty clusters.
/// Returns the moved points (one per re-seeded cluster).
fn reseed_empty(
    x: &Matrix,
    centroids: &mut Matrix,
    assignment: &mut [u32],
    counts: &mut [usize],
    dist: &[f32],
) -> Vec<usize> {
    let empty: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] == 0).collect();
    let mut moved = Vec::with_capacity(empty.len());
    if empty.is_empty() {
        return moved;
    }
    let mut order: Vec<usize> = (0..x.rows).collect();
    order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    let mut next = order.into_iter();
    for &j in &empty {
        for p in next.by_ref() {
            let old = assignment[p] as usize;
            if counts[old] > 1 {
                counts[old] -= 1;
                counts[j] = 1;
                assignment[p] = j as u32;
                centroids.row_mut(j).copy_from_slice(x.row(p));
                moved.push(p);
                break;
            }
        }
    }
    moved
}

/// Rows per partial sum in [`ordered_sum`].
const SUM_CHUNK: usize = 4096;

/// Σ f(i) for i in 0..n, in parallel but always added in the same order: a float sum split
/// by rayon's work stealing would depend on the thread count, and the inertia decides when
/// Lloyd stops, so it must not.
fn ordered_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let parts: Vec<f64> = (0..n.div_ceil(SUM_CHUNK))
        .into_par_iter()
        .map(|c| {
            (c * SUM_CHUNK..((c + 1) * SUM_CHUNK).min(n))
                .map(&f)
                .sum::<f64>()
        })
        .collect();
    parts.iter().sum()
}

/// Σ‖x_i − c_{a(i)}‖², exactly and in a fixed order.
fn exact_inertia(x: &Matrix, cents: &Matrix, assign: &[u32]) -> f64 {
    ordered_sum(x.rows, |i| {
        sq_dist(x.row(i), cents.row(assign[i] as usize)) as f64
    })
}

/// Per-cluster sums of member vectors, updated as points move, so a centroid update costs
/// O(moved · D) instead of O(N · D): after the first few iterations few points move.
struct ClusterSums {
    sums: Vec<f64>,
    counts: Vec<usize>,
    d: usize,
}

impl ClusterSums {
    fn new(x: &Matrix, assign: &[u32], k: usize) -> Self {
        let d = x.cols;
        let mem = members(assign, k);
        let mut sums = vec![0f64; k * d];
        sums.par_chunks_mut(d.max(1))
            .zip(mem.par_iter())
            .for_each(|(acc, ms)| {
                for &i in ms {
                    for (a, &v) in acc.iter_mut().zip(x.row(i as usize)) {
                        *a += v as f64;
                    }
                }
            });
        ClusterSums {
            sums,
            counts: mem.iter().map(Vec::len).collect(),
            d,
        }
    }

    /// Move every point whose cluster differs between `before` and `after`.
    fn apply_moves(&mut self, x: &Matrix, before: &[u32], after: &[u32]) {
        let d = self.d;
        let moves: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        if moves.len() * 4 > before.len() {
            *self = ClusterSums::new(x, after, self.counts.len());
            return;
        }
        for i in moves {
            let (from, to) = (before[i] as usize, after[i] as usize);
            for (t, &v) in x.row(i).iter().enumerate() {
                self.sums[from * d + t] -= v as f64;
                self.sums[to * d + t] += v as f64;
            }
            self.counts[from] -= 1;
            self.counts[to] += 1;
        }
    }

    /// Centroids of an assignment, computed from scratch (with their member counts).
    fn centroids_of(x: &Matrix, assign: &[u32], prev: &Matrix) -> (Matrix, Vec<usize>) {
        let sums = ClusterSums::new(x, assign, prev.rows);
        (sums.centroids(prev), sums.counts)
    }

    /// Member means; a cluster without members keeps its previous centroid.
    fn centroids(&self, prev: &Matrix) -> Matrix {
        let d = self.d;
        let mut c = Matrix::zeros(self.counts.len(), d);
        c.data
            .par_chunks_mut(d.max(1))
            .enumerate()
            .for_each(|(j, row)| {
                if self.counts[j] == 0 {
                    row.copy_from_slice(prev.row(j));
                } else {
                    let inv = 1.0 / self.counts[j] as f64;
                    for (o, &a) in row.iter_mut().zip(&self.sums[j * d..(j + 1) * d]) {
                        *o = (a * inv) as f32;
                    }
                }
            });
        c
    }
}

/// Centre-to-centre distances, lowered by the GEMM's rounding slack so they never overstate
/// (row-major K × K), and half of each centre's distance to its nearest other centre: a point
/// closer than that to its own centre cannot be closer to any other.
fn separation(cb: &Codebook) -> Result<(Vec<f32>, Vec<f32>)> {
    let (k, dim) = (cb.len(), cb.centroids.cols);
    let norms = cb.sq_norms();
    let mut cc = cb.all_distances(&cb.centroids)?;
    cc.par_chunks_mut(k).enumerate().for_each(|(a, row)| {
        for (b, v) in row.iter_mut().enumerate() {
            *v = (*v - gemm_slack(dim, norms[a], norms[b])).max(0.0).sqrt();
        }
    });
    let half = (0..k)
        .map(|a| {
            0.5 * (0..k)
                .filter(|&b| b != a)
                .map(|b| cc[a * k + b])
                .fold(f32::INFINITY, f32::min)
        })
        .collect();
    Ok((cc, half))
}

#[cfg(test)]
mod tests {
    use super::balanced::balanced_assignment;
    use super::*;

    /// Points around `centres` well-separated blobs, deterministic.
    fn blobs(n: usize, d: usize, centres: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c: Vec<f32> = (0..centres * d)
            .map(|_| rng.random_range(-5.0f32..5.0))
            .collect();
        let mut data = Vec::with_capacity(n * d);
        for i in 0..n {
            let b = i % centres;
            for j in 0..d {
                data.push(c[b * d + j] + rng.random_range(-1.0f32..1.0));
            }
        }
        Matrix::new(data, n, d)
    }

    /// Plain Lloyd with exact distances: the reference the fast path must reproduce.
    fn naive_lloyd(x: &Matrix, mut c: Matrix, iters: usize) -> Vec<u32> {
        let mut assign = vec![0u32; x.rows];
        for it in 0..=iters {
            for (i, a) in assign.iter_mut().enumerate() {
                let mut best = (f32::INFINITY, 0);
                for j in 0..c.rows {
                    let d = sq_dist(x.row(i), c.row(j));
                    if d < best.0 {
                        best = (d, j);
                    }
                }
                *a = best.1 as u32;
            }
            if it == iters {
                break;
            }
            // Plain means, computed here independently of the library's ClusterSums.
            let mut nc = c.clone();
            for j in 0..c.rows {
                let members: Vec<usize> =
                    (0..x.rows).filter(|&i| assign[i] as usize == j).collect();
                if members.is_empty() {
                    continue;
                }
                for t in 0..x.cols {
                    let s: f64 = members.iter().map(|&i| x.row(i)[t] as f64).sum();
                    nc.row_mut(j)[t] = (s / members.len() as f64) as f32;
                }
            }
            c = nc;
        }
        assign
    }

    #[test]
    fn lloyd_matches_naive_reference() {
        let x = blobs(3000, 16, 12, 7);
        let cfg = KMeansConfig {
            k: 20,
            max_iter: 15,
            tol: 0.0,
            balanced: false,
            seed: 3,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let init = kmeans_pp(&x, cfg.k, &mut rng);
        let variants = [
            hamerly::lloyd_hamerly(&x, init.clone(), &cfg).unwrap(),
            elkan::lloyd_elkan(&x, init.clone(), &cfg, Some(cfg.k)).unwrap(), // one distance at a time
            elkan::lloyd_elkan(&x, init.clone(), &cfg, Some(0)).unwrap(),     // always the GEMM
        ];
        for fast in variants {
            assert_eq!(fast.reseeded, 0);
            let naive = naive_lloyd(&x, init.clone(), fast.iterations);
            assert_eq!(fast.assignment, naive);
            assert!(fast.distance_evals < (x.rows * cfg.k * (fast.iterations + 1)) as u64);
        }
    }

    #[test]
    fn same_seed_same_result_and_inertia_is_sum_of_distances() {
        let x = blobs(2000, 8, 5, 1);
        let cfg = KMeansConfig::new(16, 11);
        let a = fit(&x, &cfg).unwrap();
        let b = fit(&x, &cfg).unwrap();
        assert_eq!(a.assignment, b.assignment);
        assert_eq!(a.centroids, b.centroids);
        let direct: f64 = (0..x.rows)
            .map(|i| sq_dist(x.row(i), a.centroids.row(a.assignment[i] as usize)) as f64)
            .sum();
        assert!((direct - a.inertia).abs() / direct < 1e-4);
    }

    /// The greedy balanced assignment with full preference lists, as first written.
    fn naive_balanced(dist: &[f32], n: usize, k: usize) -> Vec<u32> {
        let prefs: Vec<Vec<usize>> = dist
            .chunks(k)
            .map(|d| {
                let mut o: Vec<usize> = (0..k).collect();
                o.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
                o
            })
            .collect();
        let margin = |i: usize| dist[i * k + prefs[i][1]] - dist[i * k + prefs[i][0]];
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| margin(b).total_cmp(&margin(a)).then(a.cmp(&b)));
        let (floor, mut extra) = (n / k, n % k);
        let mut size = vec![0; k];
        let mut assign = vec![0u32; n];
        for i in order {
            let j = *prefs[i]
                .iter()
                .find(|&&j| size[j] < floor || (size[j] == floor && extra > 0))
                .unwrap();
            if size[j] == floor {
                extra -= 1;
            }
            size[j] += 1;
            assign[i] = j as u32;
        }
        assign
    }

    #[test]
    fn balanced_assignment_matches_the_full_preference_greedy() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (n, k) in [(500, 20), (97, 9), (64, 64), (300, 3)] {
            // Skewed distances: most points prefer a few centres, so many must fall back.
            let dist: Vec<f32> = (0..n * k)
                .map(|t| ((t % k) as f32).powi(2) * 0.1 + rng.random_range(0.0f32..1.0))
                .collect();
            let (fast, _) = balanced_assignment(&dist, n, k);
            assert_eq!(fast, naive_balanced(&dist, n, k), "n={n} k={k}");
        }
    }

    #[test]
    fn balanced_sizes_are_exact() {
        let x = blobs(1003, 8, 3, 2);
        for k in [7, 10, 64] {
            let cfg = KMeansConfig {
                balanced: true,
                ..KMeansConfig::new(k, 5)
            };
            let f = fit(&x, &cfg).unwrap();
            let mut sizes = vec![0usize; k];
            for &a in &f.assignment {
                sizes[a as usize] += 1;
            }
            let (lo, hi) = (1003 / k, 1003_usize.div_ceil(k));
            assert!(
                sizes.iter().all(|&s| s == lo || s == hi),
                "k={k}: {sizes:?}"
            );
        }
    }

    #[test]
    fn identical_points_do_not_break_the_fit() {
        let x = Matrix::new(vec![1.0; 50 * 4], 50, 4);
        let f = fit(&x, &KMeansConfig::new(8, 0)).unwrap();
        assert!(f.inertia.abs() < 1e-9);
        assert!(f.centroids.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn more_clusters_than_points_is_an_error() {
        let x = blobs(5, 2, 1, 0);
        let e = fit(&x, &KMeansConfig::new(6, 0)).unwrap_err();
        assert!(
            e.to_string()
                .contains("larger than the number of training points")
        );
    }
}
