//! OneRec's balanced k-means: a capacity-constrained assignment step.

use super::{ClusterSums, KMeansConfig, KMeansFit};
use crate::error::Result;
use crate::matrix::Matrix;
use crate::quant::distance::Codebook;
use rayon::prelude::*;

/// Preferred centres kept per point in the balanced assignment; when all are full, the point
/// falls back to a scan of every centre (rare: most points get their first or second choice).
const BALANCED_PREFERENCES: usize = 8;

/// Lloyd with a capacity-constrained assignment step (every cluster ⌊N/K⌋ or ⌈N/K⌉ members).
pub(super) fn lloyd_balanced(x: &Matrix, init: Matrix, cfg: &KMeansConfig) -> Result<KMeansFit> {
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
        let (c, _) = ClusterSums::centroids_of(x, &assign, &cb.centroids);
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
pub(crate) fn balanced_assignment(dist: &[f32], n: usize, k: usize) -> (Vec<u32>, f64) {
    let floor = n / k;
    let mut extra = n % k;
    let m = BALANCED_PREFERENCES.min(k);
    // Each point's m nearest centres, nearest first (ties → lower index); a full K-long
    // preference list per point would cost N·K·2 bytes and N sorts of K.
    let prefs: Vec<u16> = dist
        .par_chunks(k)
        .flat_map_iter(|d| {
            let mut o: Vec<u16> = (0..k as u16).collect();
            let by_dist =
                |a: &u16, b: &u16| d[*a as usize].total_cmp(&d[*b as usize]).then(a.cmp(b));
            if m < k {
                o.select_nth_unstable_by(m - 1, by_dist);
                o.truncate(m);
            }
            o.sort_by(by_dist);
            o
        })
        .collect();
    let pref = |i: usize| &prefs[i * m..(i + 1) * m];
    let margin = |i: usize| {
        if m < 2 {
            0.0
        } else {
            dist[i * k + pref(i)[1] as usize] - dist[i * k + pref(i)[0] as usize]
        }
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| margin(b).total_cmp(&margin(a)).then(a.cmp(&b)));
    let mut size = vec![0usize; k];
    let mut assign = vec![0u32; n];
    let mut inertia = 0f64;
    for i in order {
        let room = |size: &[usize], extra: usize, j: usize| {
            size[j] < floor || (size[j] == floor && extra > 0)
        };
        // The nearest centre with room: among the m preferred, else by a scan of all K.
        let d = &dist[i * k..(i + 1) * k];
        let j = pref(i)
            .iter()
            .map(|&j| j as usize)
            .find(|&j| room(&size, extra, j))
            .unwrap_or_else(|| {
                (0..k)
                    .filter(|&j| room(&size, extra, j))
                    .min_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)))
                    .expect("total capacity equals the number of points")
            });
        if size[j] == floor {
            extra -= 1;
        }
        size[j] += 1;
        assign[i] = j as u32;
        inertia += d[j] as f64;
    }
    (assign, inertia)
}
