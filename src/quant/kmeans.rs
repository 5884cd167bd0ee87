//! k-means: sampled k-means++ seeding, Lloyd iterations, and a balanced variant.
//!
//! Lloyd's assignment step uses Hamerly's bounds (Hamerly, "Making k-means even faster",
//! SDM 2010): each point keeps an upper bound on the distance to its centre and a lower bound
//! on the distance to any other centre, so after the first iterations most points are proven
//! not to move and only the rest go through the GEMM search. The result is the same as plain
//! Lloyd; the arithmetic in later iterations drops by an order of magnitude.

use crate::error::{Error, Result};
use crate::matrix::{Matrix, sq_dist};
use crate::quant::distance::{Codebook, Nearest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// k-means++ seeds from at most this many candidate points per centroid: seeding is
/// sequential (one pass per centre), and past a few candidates per centre the initial
/// inertia no longer improves measurably, while the seeding time grows linearly.
pub const KMEANSPP_CANDIDATES_PER_CENTROID: usize = 8;
/// Memory Elkan's per-centre lower bounds (N × K f32) may take; above it, Hamerly's single
/// bound per point is used. 1 GiB covers a 1 M-row training sample at K = 256.
pub const ELKAN_BOUNDS_BYTES: usize = 1 << 30;
/// A point whose bounds leave more than K / this many candidate centres is searched with the
/// GEMM instead of one exact distance at a time: a GEMM row of K distances costs about as much
/// as K / 6 single distances at the arithmetic rates (~200 GFLOP/s vs ~30), but single
/// distances are bound by memory traffic, and K / 32 measured fastest (11.5–12.7 s vs
/// 12.4–14.2 s at K / 6 on the 100k × 1024 benchmark).
const ELKAN_GEMM_FRACTION: usize = 32;
/// METHODS.md §2 defaults.
pub const DEFAULT_MAX_ITER: usize = 50;
pub const DEFAULT_TOL: f64 = 1e-4;

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
    if k == 0 {
        return Err(Error::Config("k-means needs at least one cluster".into()));
    }
    if k > n {
        return Err(Error::Config(format!(
            "codebook size {k} is larger than the number of training points ({n}); \
             use a smaller codebook or more items"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let t = std::time::Instant::now();
    let init = kmeans_pp(x, k, &mut rng);
    tracing::debug!(
        k,
        seconds = t.elapsed().as_secs_f64(),
        "k-means++ seeding done"
    );
    if cfg.balanced {
        lloyd_balanced(x, init, cfg)
    } else if n.saturating_mul(k).saturating_mul(4) <= ELKAN_BOUNDS_BYTES {
        lloyd_elkan(x, init, cfg, None)
    } else {
        lloyd(x, init, cfg)
    }
}

/// k-means++ (Arthur & Vassilvitskii 2007) on a random subset of candidates.
pub fn kmeans_pp(x: &Matrix, k: usize, rng: &mut ChaCha8Rng) -> Matrix {
    let n = x.rows;
    let m = n.min(k.saturating_mul(KMEANSPP_CANDIDATES_PER_CENTROID).max(k));
    let cand: Vec<usize> = if m == n {
        (0..n).collect()
    } else {
        sample_indices(n, m, rng)
    };
    let pts = x.gather(&cand);
    let mut centroids = Matrix::zeros(k, x.cols);
    let first = rng.random_range(0..m);
    centroids.row_mut(0).copy_from_slice(pts.row(first));
    let mut d2: Vec<f64> = pts
        .data
        .par_chunks(x.cols)
        .map(|r| sq_dist(r, pts.row(first)) as f64)
        .collect();
    for c in 1..k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut t = rng.random::<f64>() * total;
            let mut pick = m - 1;
            for (i, &d) in d2.iter().enumerate() {
                if t < d {
                    pick = i;
                    break;
                }
                t -= d;
            }
            pick
        } else {
            // Fewer distinct points than clusters: duplicates are unavoidable.
            rng.random_range(0..m)
        };
        let chosen = pts.row(pick).to_vec();
        centroids.row_mut(c).copy_from_slice(&chosen);
        d2.par_iter_mut()
            .zip(pts.data.par_chunks(x.cols))
            .for_each(|(d, r)| {
                let nd = sq_dist(r, &chosen) as f64;
                if nd < *d {
                    *d = nd;
                }
            });
    }
    centroids
}

/// `m` distinct indices out of `0..n`, sorted (Floyd's algorithm; deterministic for a seed).
pub fn sample_indices(n: usize, m: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
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

/// Centroids as member means; clusters without members keep their previous centroid.
fn update_centroids(x: &Matrix, assignment: &[u32], prev: &Matrix) -> (Matrix, Vec<usize>) {
    let k = prev.rows;
    let mem = members(assignment, k);
    let d = x.cols;
    let mut c = Matrix::zeros(k, d);
    c.data
        .par_chunks_mut(d)
        .zip(mem.par_iter())
        .enumerate()
        .for_each(|(j, (row, ms))| {
            if ms.is_empty() {
                row.copy_from_slice(prev.row(j));
                return;
            }
            let mut acc = vec![0f64; d];
            for &i in ms {
                for (a, &v) in acc.iter_mut().zip(x.row(i as usize)) {
                    *a += v as f64;
                }
            }
            let inv = 1.0 / ms.len() as f64;
            for (o, a) in row.iter_mut().zip(&acc) {
                *o = (a * inv) as f32;
            }
        });
    (c, mem.iter().map(Vec::len).collect())
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

/// Lloyd with Elkan's bounds (Elkan, "Using the triangle inequality to accelerate k-means",
/// ICML 2003): a lower bound on the distance from every point to every centre. In
/// high-dimensional data each point sits among a few near-equidistant centres (Hamerly's
/// single bound is then useless) while hundreds of others are far; per-centre bounds rule the
/// far ones out for good, so later iterations compute a few exact distances per point instead
/// of a full GEMM row. Distances here are direct (not the GEMM expansion), so they are exact.
fn lloyd_elkan(
    x: &Matrix,
    init: Matrix,
    cfg: &KMeansConfig,
    gemm_after: Option<usize>,
) -> Result<KMeansFit> {
    let (n, k) = (x.rows, cfg.k);
    let mut scratch = Matrix {
        data: Vec::new(),
        rows: 0,
        cols: x.cols,
    };
    let mut cb = Codebook::new(init)?;
    let mut assign = vec![0u32; n];
    let mut upper = vec![0f32; n];
    let mut lower = vec![0f32; n * k];
    init_bounds(x, &cb, &mut assign, &mut upper, &mut lower)?;
    let mut evals = (n * k) as u64;
    let mut inertia: f64 = upper.iter().map(|&u| (u as f64) * (u as f64)).sum();
    let (mut iterations, mut converged, mut reseeded) = (0, false, 0);
    let mut sums = ClusterSums::new(x, &assign, k);
    let mut prev = assign.clone();
    while iterations < cfg.max_iter {
        iterations += 1;
        let mut c = sums.centroids(&cb.centroids);
        let mut counts = sums.counts.clone();
        let sq_upper: Vec<f32> = upper.iter().map(|u| u * u).collect();
        let moved = reseed_empty(x, &mut c, &mut assign, &mut counts, &sq_upper);
        reseeded += moved.len();
        let shift: Vec<f32> = (0..k)
            .map(|j| sq_dist(c.row(j), cb.centroids.row(j)).sqrt())
            .collect();
        cb = Codebook::new(c)?;
        for &p in &moved {
            upper[p] = f32::INFINITY; // its centre changed: force an exact recomputation
        }
        // Centre-to-centre distances: a centre farther than 2u from a point's own centre
        // cannot be closer to the point.
        let cc: Vec<f32> = cb
            .all_distances(&cb.centroids)?
            .iter()
            .map(|d| d.sqrt())
            .collect();
        let half_sep: Vec<f32> = (0..k)
            .map(|j| {
                0.5 * (0..k)
                    .filter(|&i| i != j)
                    .map(|i| cc[j * k + i])
                    .fold(f32::INFINITY, f32::min)
            })
            .collect();
        let cents = &cb.centroids;
        let gemm_after = gemm_after.unwrap_or(k / ELKAN_GEMM_FRACTION);
        // Phase A: bounds for every point; few candidates → exact distances one by one,
        // many → left for one batched GEMM search (phase B).
        let outcome: Vec<(u64, bool, bool)> = (
            assign.par_iter_mut(),
            upper.par_iter_mut(),
            lower.par_chunks_mut(k),
        )
            .into_par_iter()
            .enumerate()
            .map(|(i, (a, u, l))| {
                let xi = x.row(i);
                let mut cur = *a as usize;
                *u += shift[cur];
                for (lj, &sj) in l.iter_mut().zip(&shift) {
                    *lj = (*lj - sj).max(0.0);
                }
                if *u <= half_sep[cur] {
                    return (0, false, false);
                }
                let open = |u: f32, l: &[f32], cur: usize, j: usize| {
                    j != cur && u > l[j].max(0.5 * cc[cur * k + j])
                };
                if !(0..k).any(|j| open(*u, l, cur, j)) {
                    return (0, false, false);
                }
                *u = sq_dist(xi, cents.row(cur)).sqrt();
                l[cur] = *u;
                let candidates = (0..k).filter(|&j| open(*u, l, cur, j)).count();
                if candidates > gemm_after {
                    return (1, false, true);
                }
                let mut ev = 1u64;
                for j in 0..k {
                    if !open(*u, l, cur, j) {
                        continue;
                    }
                    let dj = sq_dist(xi, cents.row(j)).sqrt();
                    l[j] = dj;
                    ev += 1;
                    if dj < *u || (dj == *u && j < cur) {
                        cur = j;
                        *u = dj;
                    }
                }
                let changed = cur != *a as usize;
                *a = cur as u32;
                (ev, changed, false)
            })
            .collect();
        let mut step_evals: u64 = outcome.iter().map(|o| o.0).sum();
        let mut changed = outcome.iter().filter(|o| o.1).count();
        // Phase B: the points with many candidates, as one GEMM search with exact re-checks.
        let heavy: Vec<usize> = (0..n).filter(|&i| outcome[i].2).collect();
        if !heavy.is_empty() {
            scratch.data.clear();
            for &i in &heavy {
                scratch.data.extend_from_slice(x.row(i));
            }
            scratch.rows = heavy.len();
            let d2 = cb.all_distances(&scratch)?;
            step_evals += (heavy.len() * k) as u64;
            let mut row_of = vec![usize::MAX; n];
            for (r, &i) in heavy.iter().enumerate() {
                row_of[i] = r;
            }
            let c_norms = &c_norms_of(&cb);
            changed += (
                assign.par_iter_mut(),
                upper.par_iter_mut(),
                lower.par_chunks_mut(k),
            )
                .into_par_iter()
                .enumerate()
                .filter(|(i, _)| row_of[*i] != usize::MAX)
                .map(|(i, (a, u, l))| {
                    let old = *a;
                    (*a, *u) = bounds_from_gemm(
                        x.row(i),
                        cents,
                        c_norms,
                        &d2[row_of[i] * k..(row_of[i] + 1) * k],
                        l,
                    );
                    (*a != old) as usize
                })
                .sum::<usize>();
        }
        evals += step_evals;
        // Keep the cluster sums current: only moved points change them.
        if moved.is_empty() {
            sums.apply_moves(x, &prev, &assign);
        } else {
            sums = ClusterSums::new(x, &assign, k);
        }
        prev.copy_from_slice(&assign);
        // The stopping rule needs the exact inertia (upper bounds of skipped points may be
        // loose); with tol = 0 only the final value is reported, so skip the O(N·D) pass.
        let rel = if cfg.tol > 0.0 {
            let new_inertia = exact_inertia(x, cents, &assign);
            let rel = if inertia > 0.0 {
                (inertia - new_inertia).abs() / inertia
            } else {
                0.0
            };
            inertia = new_inertia;
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
        inertia = exact_inertia(x, &cb.centroids, &assign);
    }
    tracing::debug!(
        k,
        iterations,
        inertia,
        reseeded,
        evals,
        "k-means (Elkan) fitted"
    );
    Ok(KMeansFit {
        centroids: cb.centroids,
        assignment: assign,
        inertia,
        iterations,
        converged,
        reseeded,
        distance_evals: evals,
    })
}

fn exact_inertia(x: &Matrix, cents: &Matrix, assign: &[u32]) -> f64 {
    (0..x.rows)
        .into_par_iter()
        .map(|i| sq_dist(x.row(i), cents.row(assign[i] as usize)) as f64)
        .sum()
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

/// Exact first assignment and Elkan bounds from one full GEMM search.
fn init_bounds(
    x: &Matrix,
    cb: &Codebook,
    assign: &mut [u32],
    upper: &mut [f32],
    lower: &mut [f32],
) -> Result<()> {
    let k = cb.len();
    let d2 = cb.all_distances(x)?;
    let c_norms = c_norms_of(cb);
    (
        assign.par_iter_mut(),
        upper.par_iter_mut(),
        lower.par_chunks_mut(k),
        d2.par_chunks(k),
    )
        .into_par_iter()
        .enumerate()
        .for_each(|(i, (a, u, l, d))| {
            (*a, *u) = bounds_from_gemm(x.row(i), &cb.centroids, &c_norms, d, l);
        });
    Ok(())
}

fn c_norms_of(cb: &Codebook) -> Vec<f32> {
    cb.centroids.row_sq_norms()
}

/// From one point's GEMM-expansion squared distances `d2` to all centres: its nearest centre
/// and exact distance, and lower bounds `l` for every centre. The expansion can round a little
/// either way, so bounds are lowered by a safety slack and every centre within twice that slack
/// of the best is re-checked with an exact distance (ties → lowest index, as plain Lloyd).
fn bounds_from_gemm(
    xi: &[f32],
    cents: &Matrix,
    c_norms: &[f32],
    d2: &[f32],
    l: &mut [f32],
) -> (u32, f32) {
    let xn = crate::matrix::sq_norm(xi);
    let slack = |j: usize| 1e-5 * (xn + c_norms[j]) + 1e-30;
    let approx_best = (0..d2.len())
        .map(|j| d2[j] + slack(j))
        .fold(f32::INFINITY, f32::min);
    let (mut best, mut best_d) = (0usize, f32::INFINITY);
    for j in 0..d2.len() {
        l[j] = (d2[j] - slack(j)).max(0.0).sqrt();
        if d2[j] - slack(j) <= approx_best {
            let e = sq_dist(xi, cents.row(j)).sqrt();
            l[j] = e;
            if e < best_d {
                best = j;
                best_d = e;
            }
        }
    }
    (best as u32, best_d)
}

/// Lloyd with Hamerly's bounds: one lower bound per point, for when Elkan's N × K bounds do
/// not fit in memory.
fn lloyd(x: &Matrix, init: Matrix, cfg: &KMeansConfig) -> Result<KMeansFit> {
    let (n, k) = (x.rows, cfg.k);
    let mut cb = Codebook::new(init)?;
    let x_norms = x.row_sq_norms();
    let first = cb.nearest_with_norms(x, &x_norms, true)?;
    let mut evals = (n * k) as u64;
    let mut assign = first.index;
    // Hamerly bounds, as plain (not squared) distances.
    let mut upper: Vec<f32> = first.dist.iter().map(|d| d.sqrt()).collect();
    let mut lower: Vec<f32> = first.second.iter().map(|d| d.sqrt()).collect();
    let mut inertia: f64 = first.dist.iter().map(|&d| d as f64).sum();
    let mut iterations = 0;
    let mut converged = false;
    let mut reseeded = 0;
    let mut scratch = Matrix {
        data: Vec::new(),
        rows: 0,
        cols: x.cols,
    };
    let mut scratch_norms = Vec::new();
    while iterations < cfg.max_iter {
        iterations += 1;
        let (mut c, mut counts) = update_centroids(x, &assign, &cb.centroids);
        let sq_upper: Vec<f32> = upper.iter().map(|u| u * u).collect();
        let re = reseed_empty(x, &mut c, &mut assign, &mut counts, &sq_upper);
        reseeded += re.len();
        if !re.is_empty() {
            // Moved points' old centres are now "other" centres: their lower bounds are void.
            lower.iter_mut().for_each(|l| *l = 0.0);
        }
        // How far each centre moved bounds how much any distance to it can have changed.
        let shift: Vec<f32> = (0..k)
            .map(|j| sq_dist(c.row(j), cb.centroids.row(j)).sqrt())
            .collect();
        let (max1, arg1, max2) = top2(&shift);
        cb = Codebook::new(c)?;
        let half_sep = half_min_separation(&cb)?;
        // Exact distance to the (new) own centre for every point: O(N·D), K times cheaper than
        // a search, and it gives the exact inertia and the tightest upper bound.
        let cents = &cb.centroids;
        let active: Vec<usize> = upper
            .par_iter_mut()
            .zip(lower.par_iter_mut())
            .enumerate()
            .filter_map(|(i, (u, l))| {
                let a = assign[i] as usize;
                *l -= if a == arg1 { max2 } else { max1 };
                *u = sq_dist(x.row(i), cents.row(a)).sqrt();
                let bound = l.max(half_sep[a]);
                (*u > bound).then_some(i)
            })
            .collect();
        if !active.is_empty() {
            // Nearly everyone active: searching all rows beats copying them out first.
            let all = active.len() * 10 >= n * 9;
            let Nearest {
                index,
                dist,
                second,
            } = if all {
                cb.nearest_with_norms(x, &x_norms, true)?
            } else {
                // One buffer for the whole fit: a fresh multi-MiB allocation per iteration
                // costs page faults and TLB shootdowns that measured 25% of the fit.
                scratch.data.clear();
                for &i in &active {
                    scratch.data.extend_from_slice(x.row(i));
                }
                scratch.rows = active.len();
                scratch_norms.clear();
                scratch_norms.extend(active.iter().map(|&i| x_norms[i]));
                cb.nearest_with_norms(&scratch, &scratch_norms, true)?
            };
            evals += ((if all { n } else { active.len() }) * k) as u64;
            for (t, &i) in active.iter().enumerate() {
                let t = if all { i } else { t };
                // The GEMM expansion can round a hair below the exact own-centre distance;
                // keep the current centre unless the new one is really closer.
                let (d1, d2) = (dist[t].sqrt(), second[t].sqrt());
                if index[t] == assign[i] {
                    lower[i] = d2;
                } else if d1 < upper[i] {
                    assign[i] = index[t];
                    upper[i] = d1;
                    lower[i] = d2;
                } else {
                    lower[i] = d1;
                }
            }
        }
        let new_inertia: f64 = upper.par_iter().map(|&u| (u as f64) * (u as f64)).sum();
        let rel = if inertia > 0.0 {
            (inertia - new_inertia).abs() / inertia
        } else {
            0.0
        };
        inertia = new_inertia;
        if re.is_empty() && (rel < cfg.tol || active.is_empty()) {
            converged = true;
            break;
        }
    }
    tracing::debug!(k, iterations, inertia, reseeded, "k-means fitted");
    Ok(KMeansFit {
        centroids: cb.centroids,
        assignment: assign,
        inertia,
        iterations,
        converged,
        reseeded,
        distance_evals: evals,
    })
}

fn top2(v: &[f32]) -> (f32, usize, f32) {
    let (mut m1, mut a1, mut m2) = (0f32, usize::MAX, 0f32);
    for (j, &s) in v.iter().enumerate() {
        if s > m1 {
            m2 = m1;
            m1 = s;
            a1 = j;
        } else if s > m2 {
            m2 = s;
        }
    }
    (m1, a1, m2)
}

/// Half the distance from each centre to its nearest other centre: a point closer than that
/// to its own centre cannot be closer to any other.
fn half_min_separation(cb: &Codebook) -> Result<Vec<f32>> {
    let k = cb.len();
    if k == 1 {
        return Ok(vec![f32::INFINITY]);
    }
    let all = cb.all_distances(&cb.centroids)?;
    Ok((0..k)
        .into_par_iter()
        .map(|j| {
            let m = (0..k)
                .filter(|&i| i != j)
                .map(|i| all[j * k + i])
                .fold(f32::INFINITY, f32::min);
            // GEMM rounding: never claim more separation than is certain.
            0.5 * m.sqrt() * (1.0 - 1e-5)
        })
        .collect())
}

/// Lloyd with a capacity-constrained assignment step (every cluster ⌊N/K⌋ or ⌈N/K⌉ members).
fn lloyd_balanced(x: &Matrix, init: Matrix, cfg: &KMeansConfig) -> Result<KMeansFit> {
    let (n, k) = (x.rows, cfg.k);
    let mut cb = Codebook::new(init)?;
    let mut assign;
    let mut inertia = f64::INFINITY;
    let mut iterations = 0;
    let mut converged = false;
    let mut evals = 0u64;
    loop {
        let dist = cb.all_distances(x)?;
        evals += (n * k) as u64;
        let (a, new_inertia) = balanced_assignment(&dist, n, k);
        assign = a;
        let rel = if inertia.is_finite() && inertia > 0.0 {
            (inertia - new_inertia).abs() / inertia
        } else {
            f64::INFINITY
        };
        inertia = new_inertia;
        if rel < cfg.tol {
            converged = true;
            break;
        }
        if iterations == cfg.max_iter {
            break;
        }
        iterations += 1;
        let (c, _) = update_centroids(x, &assign, &cb.centroids);
        cb = Codebook::new(c)?;
    }
    Ok(KMeansFit {
        centroids: cb.centroids,
        assignment: assign,
        inertia,
        iterations,
        converged,
        reseeded: 0,
        distance_evals: evals,
    })
}

/// Greedy capacity-constrained assignment: points with the most to lose (largest gap between
/// their best and second-best centre) choose first, each taking its nearest centre that still
/// has room. Capacities are ⌊N/K⌋, and N mod K clusters may take one more.
pub fn balanced_assignment(dist: &[f32], n: usize, k: usize) -> (Vec<u32>, f64) {
    let floor = n / k;
    let mut extra = n % k;
    let prefs: Vec<Vec<u16>> = dist
        .par_chunks(k)
        .map(|d| {
            let mut o: Vec<u16> = (0..k as u16).collect();
            o.sort_by(|&a, &b| d[a as usize].total_cmp(&d[b as usize]).then(a.cmp(&b)));
            o
        })
        .collect();
    let margin = |i: usize| {
        if k < 2 {
            0.0
        } else {
            dist[i * k + prefs[i][1] as usize] - dist[i * k + prefs[i][0] as usize]
        }
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| margin(b).total_cmp(&margin(a)).then(a.cmp(&b)));
    let mut size = vec![0usize; k];
    let mut assign = vec![0u32; n];
    let mut inertia = 0f64;
    for i in order {
        for &j in &prefs[i] {
            let j = j as usize;
            let room = size[j] < floor || (size[j] == floor && extra > 0);
            if room {
                if size[j] == floor {
                    extra -= 1;
                }
                size[j] += 1;
                assign[i] = j as u32;
                inertia += dist[i * k + j] as f64;
                break;
            }
        }
    }
    (assign, inertia)
}

#[cfg(test)]
mod tests {
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
            let (nc, _) = update_centroids(x, &assign, &c);
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
            lloyd(&x, init.clone(), &cfg).unwrap(),
            lloyd_elkan(&x, init.clone(), &cfg, Some(cfg.k)).unwrap(), // one distance at a time
            lloyd_elkan(&x, init.clone(), &cfg, Some(0)).unwrap(),     // always the GEMM
            lloyd_elkan(&x, init.clone(), &cfg, None).unwrap(),
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
