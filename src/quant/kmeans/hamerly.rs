//! Lloyd with Hamerly's bounds (Hamerly, "Making k-means even faster", SDM 2010).

use super::{ClusterSums, KMeansConfig, KMeansFit, ordered_sum, reseed_empty, separation};
use crate::error::Result;
use crate::matrix::{Matrix, sq_dist};
use crate::quant::distance::{Codebook, Nearest};
use rayon::prelude::*;

/// When at least this fraction of points must be searched, search all rows in place rather
/// than copying the active ones out first.
const SEARCH_ALL_FRACTION: f64 = 0.9;

/// Lloyd with Hamerly's bounds: one lower bound per point, for when Elkan's N × K bounds do
/// not fit in memory.
pub(super) fn lloyd_hamerly(x: &Matrix, init: Matrix, cfg: &KMeansConfig) -> Result<KMeansFit> {
    let (n, k) = (x.rows, cfg.k);
    let mut cb = Codebook::new(init)?;
    let x_norms = x.row_sq_norms();
    let first = cb.nearest_with_norms(x, &x_norms, true)?;
    let mut evals = (n * k) as u64;
    let mut assign = first.index;
    // Hamerly bounds, as plain (not squared) distances.
    let mut upper: Vec<f32> = first.dist.iter().map(|d| d.sqrt()).collect();
    let mut lower: Vec<f32> = first.second.iter().map(|d| d.sqrt()).collect();
    let mut inertia = ordered_sum(n, |i| first.dist[i] as f64);
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
        let (mut c, mut counts) = ClusterSums::centroids_of(x, &assign, &cb.centroids);
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
        let (_, half_sep) = separation(&cb)?;
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
            let all = active.len() as f64 >= SEARCH_ALL_FRACTION * n as f64;
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
        let new_inertia = ordered_sum(n, |i| (upper[i] as f64) * (upper[i] as f64));
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
