//! Lloyd with Elkan's bounds (Elkan, "Using the triangle inequality to accelerate k-means",
//! ICML 2003), the default: see `lloyd_elkan`.

use super::{
    ClusterSums, ELKAN_GEMM_FRACTION, KMeansConfig, KMeansFit, exact_inertia, reseed_empty,
    separation,
};
use crate::error::Result;
use crate::matrix::{Matrix, sq_dist};
use crate::quant::distance::{BLOCK_ROWS, Codebook, dots_into, gemm_slack};
use rayon::prelude::*;

/// Rows per GEMM search in phase B (8 MiB of gathered rows at D = 1024).
const SEARCH_ROWS: usize = 2048;
/// Independent running minima or counters in the per-point passes over the K centres.
const MIN_LANES: usize = 16;

/// `fn $name(args) -> ret` calling `$portable` (an `#[inline(always)]` function), compiled
/// once more for AVX-512 and picked at run time, as `matrix::sq_dist` is: the portable build
/// may only assume SSE2, so the lane loops would run 4 wide instead of 16. Both versions do
/// the same operations in the same order, so they give the same results.
macro_rules! with_avx512 {
    ($name:ident = $portable:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn fast($($arg: $ty),*) -> $ret {
                    $portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { fast($($arg),*) };
                }
            }
            $portable($($arg),*)
        }
    };
}

with_avx512!(loosen = loosen_portable(
    l: &mut [f32],
    shift: &[f32],
    half_cc: &[f32],
    u: f32,
    cur: usize
) -> usize);
with_avx512!(count_open = count_open_portable(l: &[f32], half_cc: &[f32], u: f32) -> usize);
with_avx512!(bounds_from_dots = bounds_from_dots_portable(
    xi: &[f32],
    xn: f32,
    cb: &Codebook,
    row: &mut [f32]
) -> (u32, f32));

/// Lloyd with Elkan's bounds (Elkan, "Using the triangle inequality to accelerate k-means",
/// ICML 2003): a lower bound on the distance from every point to every centre. In
/// high-dimensional data each point sits among a few near-equidistant centres (Hamerly's
/// single bound is then useless) while hundreds of others are far; per-centre bounds rule the
/// far ones out for good, so later iterations compute a few exact distances per point instead
/// of a full GEMM row. Single distances are computed directly (exact); GEMM searches re-check
/// every centre within the expansion's rounding slack of the best with an exact distance.
pub(super) fn lloyd_elkan(
    x: &Matrix,
    init: Matrix,
    cfg: &KMeansConfig,
    gemm_after: Option<usize>,
) -> Result<KMeansFit> {
    let (n, k, d) = (x.rows, cfg.k, x.cols);
    // The rows of a phase-B group, and their dot products with every centre.
    let (mut scratch, mut dots) = (Vec::new(), Vec::new());
    let x_norms = x.row_sq_norms();
    let mut cb = Codebook::new(init)?;
    let mut assign = vec![0u32; n];
    let mut upper = vec![0f32; n];
    let mut lower = vec![0f32; n * k];
    init_bounds(x, &x_norms, &cb, &mut assign, &mut upper, &mut lower);
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
    let mut phase_s = [0f64; 4];
    while iterations < cfg.max_iter {
        iterations += 1;
        let t0 = std::time::Instant::now();
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
        let (mut half_cc, half_sep) = separation(&cb)?;
        half_cc.iter_mut().for_each(|v| *v *= 0.5);
        let cents = &cb.centroids;
        let gemm_after = gemm_after.unwrap_or(k / ELKAN_GEMM_FRACTION);
        let t1 = std::time::Instant::now();
        // Phase A: bounds for every point; few candidates → exact distances one by one,
        // many → left for the batched GEMM searches of phase B.
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
                    j != cur && u > l[j].max(half_cc[cur * k + j])
                };
                let hcur = &half_cc[cur * k..(cur + 1) * k];
                let loose = loosen(l, &shift, hcur, *u, cur);
                if loose == 0 || *u <= half_sep[cur] {
                    return (0, false, false);
                }
                if loose > 4 * gemm_after.max(1) {
                    // Far too many to tighten away: the GEMM gives exact distances anyway.
                    return (0, false, true);
                }
                *u = sq_dist(xi, cents.row(cur)).sqrt();
                l[cur] = *u;
                // l[cur] = u rules `cur` itself out.
                let candidates = count_open(l, hcur, *u);
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
        let t2 = std::time::Instant::now();
        // Phase B: the points with many candidates, searched by GEMM with exact re-checks, a
        // group of rows at a time so the gathered rows are still in cache when the GEMM reads
        // them (gathering all of them first cost a write and a read of up to the whole sample).
        let heavy: Vec<usize> = (0..n).filter(|&i| outcome[i].2).collect();
        step_evals += (heavy.len() * k) as u64;
        for group in heavy.chunks(SEARCH_ROWS) {
            scratch.resize(group.len() * d, 0.0);
            (scratch.par_chunks_mut(d.max(1)), group.par_iter())
                .into_par_iter()
                .for_each(|(row, &i)| row.copy_from_slice(x.row(i)));
            dots.resize(group.len() * k, 0.0);
            dots_into(&scratch, group.len(), cents, &mut dots);
            let found: Vec<(u32, f32)> = (dots.par_chunks_mut(k), group.par_iter())
                .into_par_iter()
                .map(|(row, &i)| bounds_from_dots(x.row(i), x_norms[i], &cb, row))
                .collect();
            for ((&i, row), (a, u)) in group.iter().zip(dots.chunks(k)).zip(found) {
                lower[i * k..(i + 1) * k].copy_from_slice(row);
                changed += (assign[i] != a) as usize;
                (assign[i], upper[i]) = (a, u);
            }
        }
        evals += step_evals;
        let t3 = std::time::Instant::now();
        // Keep the cluster sums current: only moved points change them.
        if moved.is_empty() {
            sums.apply_moves(x, &prev, &assign);
        } else {
            sums = ClusterSums::new(x, &assign, k);
        }
        prev.copy_from_slice(&assign);
        let t4 = std::time::Instant::now();
        for (p, (a, b)) in phase_s
            .iter_mut()
            .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)])
        {
            *p += (b - a).as_secs_f64();
        }
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
        centres_s = phase_s[0],
        bounds_s = phase_s[1],
        gemm_search_s = phase_s[2],
        sums_s = phase_s[3],
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

/// Moves a point's lower bounds `l` back by the centres' shifts and counts the centres other
/// than `cur` that the upper bound `u` leaves open (`half_cc`: half the distances from `cur`).
/// Counted in lanes, so the pass compiles to vector code.
#[inline(always)]
fn loosen_portable(l: &mut [f32], shift: &[f32], half_cc: &[f32], u: f32, cur: usize) -> usize {
    let mut lanes = [0u32; MIN_LANES];
    let (lc, lr) = l.as_chunks_mut::<MIN_LANES>();
    let (sc, sr) = shift.as_chunks::<MIN_LANES>();
    let (hc, hr) = half_cc.as_chunks::<MIN_LANES>();
    for ((l, s), h) in lc.iter_mut().zip(sc).zip(hc) {
        for t in 0..MIN_LANES {
            l[t] = (l[t] - s[t]).max(0.0);
            lanes[t] += (u > l[t].max(h[t])) as u32;
        }
    }
    let mut open: usize = lanes.iter().map(|&c| c as usize).sum();
    for ((l, s), h) in lr.iter_mut().zip(sr).zip(hr) {
        *l = (*l - s).max(0.0);
        open += (u > l.max(*h)) as usize;
    }
    open - (u > l[cur].max(half_cc[cur])) as usize
}

/// How many centres the upper bound `u` leaves open, counted in lanes as in [`loosen`]. The
/// point's own centre counts unless its bound is at least `u` (callers set l[cur] = u).
#[inline(always)]
fn count_open_portable(l: &[f32], half_cc: &[f32], u: f32) -> usize {
    let mut lanes = [0u32; MIN_LANES];
    let (lc, lr) = l.as_chunks::<MIN_LANES>();
    let (hc, hr) = half_cc.as_chunks::<MIN_LANES>();
    for (l, h) in lc.iter().zip(hc) {
        for t in 0..MIN_LANES {
            lanes[t] += (u > l[t].max(h[t])) as u32;
        }
    }
    let rest = lr.iter().zip(hr).filter(|(l, h)| u > l.max(**h)).count();
    lanes.iter().map(|&c| c as usize).sum::<usize>() + rest
}

/// Exact first assignment and Elkan bounds from a GEMM search, block by block, the dot
/// products written straight into the bounds they become.
fn init_bounds(
    x: &Matrix,
    x_norms: &[f32],
    cb: &Codebook,
    assign: &mut [u32],
    upper: &mut [f32],
    lower: &mut [f32],
) {
    let (k, d) = (cb.len(), x.cols);
    for start in (0..x.rows).step_by(BLOCK_ROWS) {
        let end = (start + BLOCK_ROWS).min(x.rows);
        let block = &mut lower[start * k..end * k];
        dots_into(
            &x.data[start * d..end * d],
            end - start,
            &cb.centroids,
            block,
        );
        (
            &mut assign[start..end],
            &mut upper[start..end],
            block.par_chunks_mut(k),
        )
            .into_par_iter()
            .enumerate()
            .for_each(|(r, (a, u, l))| {
                let i = start + r;
                (*a, *u) = bounds_from_dots(x.row(i), x_norms[i], cb, l);
            });
    }
}

/// From one point's dot products with every centre (`row`, overwritten with the point's lower
/// bounds): its nearest centre and the distance to it. The GEMM expansion ‖x‖² − 2x·c + ‖c‖²
/// can round a little either way, so bounds are lowered by a safety slack and every centre
/// within twice that slack of the best is re-checked with an exact distance (ties → lowest
/// index, as plain Lloyd).
#[inline(always)]
fn bounds_from_dots_portable(xi: &[f32], xn: f32, cb: &Codebook, row: &mut [f32]) -> (u32, f32) {
    let (dim, c_norms) = (xi.len(), cb.sq_norms());
    // Squared distances, and the smallest upper end, with one running minimum per lane: a
    // single one is a chain of dependent `min`s the compiler may not reorder (8% of a fit).
    let to_d2 = |v: &mut f32, cn: f32| *v = (xn - 2.0 * *v + cn).max(0.0);
    let mut lanes = [f32::INFINITY; MIN_LANES];
    let (rows, rest) = row.as_chunks_mut::<MIN_LANES>();
    let (norms, norms_rest) = c_norms.as_chunks::<MIN_LANES>();
    for (r, n) in rows.iter_mut().zip(norms) {
        for t in 0..MIN_LANES {
            to_d2(&mut r[t], n[t]);
            lanes[t] = lanes[t].min(r[t] + gemm_slack(dim, xn, n[t]));
        }
    }
    let mut approx_best = lanes.into_iter().fold(f32::INFINITY, f32::min);
    for (v, &cn) in rest.iter_mut().zip(norms_rest) {
        to_d2(v, cn);
        approx_best = approx_best.min(*v + gemm_slack(dim, xn, cn));
    }
    // Centres that may be the nearest, with their GEMM distances; then the bounds, in a pass
    // of its own that compiles to vector code.
    let near: Vec<(usize, f32)> = (row.iter().zip(c_norms).enumerate())
        .filter(|(_, (v, cn))| **v - gemm_slack(dim, xn, **cn) <= approx_best)
        .map(|(j, (v, _))| (j, *v))
        .collect();
    for (v, &cn) in row.iter_mut().zip(c_norms) {
        *v = (*v - gemm_slack(dim, xn, cn)).max(0.0).sqrt();
    }
    if let [(only, d2)] = near[..] {
        // The best is clear of every other centre: no exact distance needed. Its upper bound
        // is the GEMM value plus the slack.
        return (
            only as u32,
            (d2 + gemm_slack(dim, xn, c_norms[only])).sqrt(),
        );
    }
    let (mut best, mut best_d) = (0usize, f32::INFINITY);
    for (j, _) in near {
        let e = sq_dist(xi, cb.centroids.row(j)).sqrt();
        row[j] = e;
        if e < best_d {
            best = j;
            best_d = e;
        }
    }
    (best as u32, best_d)
}
