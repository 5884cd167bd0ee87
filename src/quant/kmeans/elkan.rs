//! Lloyd with Elkan's bounds (Elkan, "Using the triangle inequality to accelerate k-means",
//! ICML 2003), the default: see `lloyd_elkan`.

use super::{
    ClusterSums, ELKAN_GEMM_FRACTION, KMeansConfig, KMeansFit, exact_inertia, reseed_empty,
    separation,
};
use crate::error::Result;
use crate::matrix::{Matrix, sq_dist};
use crate::quant::distance::{BLOCK_ROWS, Codebook, gemm_slack};
use rayon::prelude::*;

/// Lloyd with Elkan's bounds (Elkan, "Using the triangle inequality to accelerate k-means",
/// ICML 2003): a lower bound on the distance from every point to every centre. In
/// high-dimensional data each point sits among a few near-equidistant centres (Hamerly's
/// single bound is then useless) while hundreds of others are far; per-centre bounds rule the
/// far ones out for good, so later iterations compute a few exact distances per point instead
/// of a full GEMM row. Distances here are direct (not the GEMM expansion), so they are exact.
pub(super) fn lloyd_elkan(
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
    // Upper bounds from the GEMM are not exact distances; the stopping rule needs exact ones.
    let mut inertia = if cfg.tol > 0.0 {
        exact_inertia(x, &cb.centroids, &assign)
    } else {
        0.0
    };
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
        let (cc, half_sep) = separation(&cb)?;
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
                let open = |u: f32, l: &[f32], cur: usize, j: usize| {
                    j != cur && u > l[j].max(0.5 * cc[cur * k + j])
                };
                // One pass: move the bounds and count candidates against the loose upper bound.
                let ccur = &cc[cur * k..(cur + 1) * k];
                let mut loose = 0usize;
                for (j, (lj, &sj)) in l.iter_mut().zip(&shift).enumerate() {
                    *lj = (*lj - sj).max(0.0);
                    loose += (j != cur && *u > lj.max(0.5 * ccur[j])) as usize;
                }
                if loose == 0 || *u <= half_sep[cur] {
                    return (0, false, false);
                }
                if loose > 4 * gemm_after.max(1) {
                    // Far too many to tighten away: the GEMM gives exact distances anyway.
                    return (0, false, true);
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
            let c_norms = cb.sq_norms();
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

/// Exact first assignment and Elkan bounds from a GEMM search, block by block so the
/// distance matrix never exists in full next to the N × K bounds.
fn init_bounds(
    x: &Matrix,
    cb: &Codebook,
    assign: &mut [u32],
    upper: &mut [f32],
    lower: &mut [f32],
) -> Result<()> {
    let k = cb.len();
    for start in (0..x.rows).step_by(BLOCK_ROWS) {
        let end = (start + BLOCK_ROWS).min(x.rows);
        let d2 =
            cb.distances_of_rows(&x.data[start * x.cols..end * x.cols], end - start, x.cols)?;
        (
            &mut assign[start..end],
            &mut upper[start..end],
            lower[start * k..end * k].par_chunks_mut(k),
            d2.par_chunks(k),
        )
            .into_par_iter()
            .enumerate()
            .for_each(|(r, (a, u, l, d))| {
                (*a, *u) = bounds_from_gemm(x.row(start + r), &cb.centroids, cb.sq_norms(), d, l);
            });
    }
    Ok(())
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
    let slack = |j: usize| gemm_slack(xi.len(), xn, c_norms[j]);
    let approx_best = (0..d2.len())
        .map(|j| d2[j] + slack(j))
        .fold(f32::INFINITY, f32::min);
    let mut near = 0usize;
    let mut first = 0usize;
    for j in 0..d2.len() {
        l[j] = (d2[j] - slack(j)).max(0.0).sqrt();
        if d2[j] - slack(j) <= approx_best {
            if near == 0 {
                first = j;
            }
            near += 1;
        }
    }
    if near == 1 {
        // The best is clear of every other centre: no exact distance needed. Its upper bound
        // is the GEMM value plus the slack.
        return (first as u32, (d2[first] + slack(first)).sqrt());
    }
    let (mut best, mut best_d) = (0usize, f32::INFINITY);
    for j in 0..d2.len() {
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
