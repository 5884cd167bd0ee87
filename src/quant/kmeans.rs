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
    let init = kmeans_pp(x, k, &mut rng);
    if cfg.balanced {
        lloyd_balanced(x, init, cfg)
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
/// Returns the re-seeded clusters.
fn reseed_empty(
    x: &Matrix,
    centroids: &mut Matrix,
    assignment: &mut [u32],
    counts: &mut [usize],
    dist: &[f32],
) -> Vec<usize> {
    let empty: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] == 0).collect();
    if empty.is_empty() {
        return empty;
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
                break;
            }
        }
    }
    empty
}

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
        let fast = lloyd(&x, init.clone(), &cfg).unwrap();
        assert_eq!(fast.reseeded, 0);
        let naive = naive_lloyd(&x, init, fast.iterations);
        assert_eq!(fast.assignment, naive);
        assert!(fast.distance_evals < (x.rows * cfg.k * (fast.iterations + 1)) as u64);
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
