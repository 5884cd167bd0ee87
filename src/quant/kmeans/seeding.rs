//! k-means++ seeding (Arthur & Vassilvitskii 2007) on a seeded subset of candidates.

use super::KMEANSPP_CANDIDATES_PER_CENTROID;
use super::sample_indices;
use crate::matrix::{Matrix, sq_dist};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// k-means++ (Arthur & Vassilvitskii 2007) on a random subset of candidates.
pub(crate) fn kmeans_pp(x: &Matrix, k: usize, rng: &mut ChaCha8Rng) -> Matrix {
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
        let pick = draw(&d2, rng);
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

/// The next k-means++ centre: candidate i with probability d2[i] / Σ d2 (a uniform one when
/// every candidate is a centre already). The device path draws with this too, so both pick
/// the same seeds.
pub(super) fn draw(d2: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let m = d2.len();
    let total: f64 = d2.iter().sum();
    if total > 0.0 {
        let mut t = rng.random::<f64>() * total;
        for (i, &d) in d2.iter().enumerate() {
            if t < d {
                return i;
            }
            t -= d;
        }
        m - 1
    } else {
        // Fewer distinct points than clusters: duplicates are unavoidable.
        rng.random_range(0..m)
    }
}
