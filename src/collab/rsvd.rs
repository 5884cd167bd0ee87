//! Truncated randomized SVD of a symmetric sparse matrix (Halko, Martinsson & Tropp 2011,
//! "Finding structure with randomness", Algorithms 4.4 and 5.1).
//!
//! Range finder: a seeded Gaussian sketch Y = A·Ω with l = k + p columns, then q power
//! iterations (A·Aᵀ)^q, re-orthonormalising after every product (A = Aᵀ here, so each
//! iteration is two products with A). With Q the final basis, B = Qᵀ·A = (A·Q)ᵀ, and the SVD
//! of the small B comes from the eigendecomposition of B·Bᵀ = Zᵀ·Z, Z = A·Q (l × l):
//! A ≈ (Q·W)·Σ·Vᵀ. Everything tall is n × l f64 and row-major; at most two such blocks are
//! alive (0.6 GB each for a million items at l = 74).
//!
//! **Orthonormalisation: SVQB, twice** (Stathopoulos & Wu 2002), the eigenvalue form of
//! CholeskyQR2 (Fukaya et al. 2014): G = YᵀY, G = V·D·Vᵀ, Q = Y·V·D^{-1/2}. Like CholeskyQR2
//! it costs two GEMMs through [`crate::gemm::dgemm_ex`] (the Gram matrix, summed over fixed
//! row blocks in a fixed order so it is bit-identical on any thread count, and the basis
//! change), both parallel, against Householder QR's 2·n·l² flops of serial, memory-bound
//! column sweeps (nalgebra's QR is single-threaded). Unlike a Cholesky factorisation it does
//! not break on a rank-deficient sketch: directions with D below [`DROP`] · max D are
//! dropped, which is exactly how a catalogue whose PPMI matrix has fewer than l non-trivial
//! directions ends up with fewer components (the rest of the output is zero). The second
//! pass restores orthogonality to rounding level, as CholeskyQR2's does. The small l × l
//! eigendecompositions use nalgebra.

use crate::collab::sparse::Csr;
use crate::gemm::dgemm_ex;
use crate::progress::Progress;
use nalgebra::{DMatrix, SymmetricEigen};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// Rows per partial Gram matrix: fixed, so the sum's order never depends on the pool.
const GRAM_ROWS: usize = 2048;

/// Relative size (of the largest) below which an eigenvalue of a Gram matrix counts as zero:
/// 1e-12 in squared singular values is 1e-6 in singular values, far above f64 rounding of the
/// Gram matrix (~1e-16 · l) and far below any direction worth keeping.
pub(crate) const DROP: f64 = 1e-12;

/// The leading singular triplets that were found.
#[derive(Debug, Clone)]
pub(crate) struct TruncatedSvd {
    pub n: usize,
    /// Left singular vectors, row-major n × `sigma.len()`; each column's largest-magnitude
    /// entry is positive (a fixed sign, so results do not flip between versions of the
    /// eigensolver).
    pub u: Vec<f64>,
    /// Singular values, descending; at most the k asked for, fewer when the matrix has
    /// fewer non-trivial directions.
    pub sigma: Vec<f64>,
}

/// The k leading singular triplets of the symmetric `a` with `oversample` extra sketch columns
/// and `power_iterations` power iterations, seeded.
pub(crate) fn truncated_svd(
    a: &Csr,
    k: usize,
    oversample: usize,
    power_iterations: usize,
    seed: u64,
    progress: &dyn Progress,
) -> TruncatedSvd {
    let n = a.n;
    let l = (k + oversample).min(n);
    let products = 2 * power_iterations as u64 + 2;
    progress.start("collab: randomized svd (products)", Some(products));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut q: Vec<f64> = (0..n * l).map(|_| rng.sample(StandardNormal)).collect();
    let mut t = vec![0.0; n * l];
    let mut w = l;
    for _ in 0..2 * power_iterations + 1 {
        t.resize(n * w, 0.0);
        a.mul_dense(&q, w, &mut t);
        progress.advance(1);
        std::mem::swap(&mut q, &mut t);
        w = orthonormalise(&mut q, &mut t, n, w);
    }
    // Z = A·Q = Bᵀ; B·Bᵀ = Zᵀ·Z = W·Σ²·Wᵀ.
    t.resize(n * w, 0.0);
    a.mul_dense(&q, w, &mut t);
    progress.advance(1);
    let (vals, vecs) = eigen_desc(&gram(&t, n, w), w);
    let r = vals
        .iter()
        .take(k)
        .take_while(|&&v| vals[0] > 0.0 && v > DROP * vals[0])
        .count();
    let sigma: Vec<f64> = vals[..r].iter().map(|v| v.sqrt()).collect();
    // U = Q·W[:, :r].
    let mut wr = vec![0.0; w * r];
    for i in 0..w {
        wr[i * r..(i + 1) * r].copy_from_slice(&vecs[i * w..i * w + r]);
    }
    let mut u = std::mem::take(&mut t);
    u.resize(n * r, 0.0);
    dgemm_ex(&q, n, w, false, &wr, r, false, &mut u, false);
    fix_signs(&mut u, n, r);
    progress.finish();
    TruncatedSvd { n, u, sigma }
}

/// Orthonormalise the columns of `y` (n × w) in place, with `scratch` as work space; returns
/// the number of columns kept.
fn orthonormalise(y: &mut Vec<f64>, scratch: &mut Vec<f64>, n: usize, w: usize) -> usize {
    let r = svqb(y, n, w, scratch);
    svqb(scratch, n, r, y)
}

/// One SVQB pass: `out` (n × r) = `y`·V·D^{-1/2} over the eigenpairs of YᵀY above [`DROP`].
fn svqb(y: &[f64], n: usize, w: usize, out: &mut Vec<f64>) -> usize {
    if w == 0 {
        out.clear();
        return 0;
    }
    let (vals, vecs) = eigen_desc(&gram(y, n, w), w);
    let r = vals
        .iter()
        .take_while(|&&v| vals[0] > 0.0 && v > DROP * vals[0])
        .count();
    let mut m = vec![0.0; w * r];
    for i in 0..w {
        for j in 0..r {
            m[i * r + j] = vecs[i * w + j] / vals[j].sqrt();
        }
    }
    out.resize(n * r, 0.0);
    dgemm_ex(y, n, w, false, &m, r, false, out, false);
    r
}

/// YᵀY for row-major `y` (n × w): partial products over fixed blocks of rows in parallel,
/// added in block order, then symmetrised.
fn gram(y: &[f64], n: usize, w: usize) -> Vec<f64> {
    debug_assert_eq!(y.len(), n * w);
    let parts: Vec<Vec<f64>> = y
        .par_chunks(GRAM_ROWS * w)
        .map(|block| {
            let rows = block.len() / w;
            let mut g = vec![0.0; w * w];
            dgemm_ex(block, w, rows, true, block, w, false, &mut g, false);
            g
        })
        .collect();
    let mut g = vec![0.0; w * w];
    for p in parts {
        for (a, b) in g.iter_mut().zip(p) {
            *a += b;
        }
    }
    for i in 0..w {
        for j in 0..i {
            let s = 0.5 * (g[i * w + j] + g[j * w + i]);
            g[i * w + j] = s;
            g[j * w + i] = s;
        }
    }
    g
}

/// Eigenvalues of the symmetric `g` (w × w) in descending order (ties by index) and the
/// matching eigenvectors as the columns of a row-major w × w matrix.
pub(crate) fn eigen_desc(g: &[f64], w: usize) -> (Vec<f64>, Vec<f64>) {
    let e = SymmetricEigen::new(DMatrix::from_row_slice(w, w, g));
    let mut order: Vec<usize> = (0..w).collect();
    order.sort_by(|&a, &b| {
        e.eigenvalues[b]
            .total_cmp(&e.eigenvalues[a])
            .then(a.cmp(&b))
    });
    let vals = order.iter().map(|&j| e.eigenvalues[j]).collect();
    let mut vecs = vec![0.0; w * w];
    for i in 0..w {
        for (c, &j) in order.iter().enumerate() {
            vecs[i * w + c] = e.eigenvectors[(i, j)];
        }
    }
    (vals, vecs)
}

/// Flip each column so that its largest-magnitude entry (the first, on ties) is positive.
fn fix_signs(u: &mut [f64], n: usize, r: usize) {
    for j in 0..r {
        let mut best = (0.0f64, 0usize);
        for i in 0..n {
            let v = u[i * r + j].abs();
            if v > best.0 {
                best = (v, i);
            }
        }
        if u[best.1 * r + j] < 0.0 {
            for i in 0..n {
                u[i * r + j] = -u[i * r + j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collab::cooccur::{Histories, counts};
    use crate::collab::ppmi::ppmi;
    use crate::io::interactions::Interaction;
    use crate::progress::Silent;

    /// PPMI of 60 items in 6 taste groups of 10, with some cross-group noise.
    fn planted_ppmi() -> Csr {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut events = Vec::new();
        for user in 0..300u32 {
            let group = user % 6;
            for t in 0..12 {
                let item = if rng.random::<f64>() < 0.15 {
                    rng.random_range(0..60)
                } else {
                    group * 10 + rng.random_range(0..10)
                };
                events.push(Interaction {
                    user,
                    item,
                    time: t,
                });
            }
        }
        let h = Histories::new(&events, 300);
        ppmi(60, &counts(&h, 5))
    }

    #[test]
    fn matches_a_dense_eigendecomposition() {
        let a = planted_ppmi();
        let n = a.n;
        let dense = a.to_dense();
        // Singular values of a symmetric matrix: |eigenvalues|; left vectors: eigenvectors.
        let (vals, vecs) = eigen_desc(&dense, n);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| vals[y].abs().total_cmp(&vals[x].abs()));
        // Six taste groups: six large singular values, then a slowly decaying noise spectrum.
        // Measured on this case: without power iterations the worst σ is 3e-2 off and the
        // subspace cosines fall to 0.96; with one, cosines miss 1 by 1.4e-5; with two, 5e-9
        // and 6e-9. So these bounds fail if the power iterations or re-orthonormalisation break.
        let k = 6;
        let gap = vals[order[k]].abs() / vals[order[k - 1]].abs();
        assert!(
            gap < 0.8,
            "the case must have a spectral gap after k: {gap}"
        );
        let svd = truncated_svd(&a, k, 10, 2, 11, &Silent);
        assert_eq!(svd.sigma.len(), k);
        for j in 0..k {
            let want = vals[order[j]].abs();
            let rel = (svd.sigma[j] - want).abs() / want;
            assert!(
                rel < 1e-4,
                "σ_{j}: {} vs {want} (rel {rel:e})",
                svd.sigma[j]
            );
        }
        // Subspaces: the singular values of U_refᵀ·U are the cosines of the principal angles.
        let mut c = vec![0.0; k * k];
        for (p, &col) in order[..k].iter().enumerate() {
            for j in 0..k {
                c[p * k + j] = (0..n).map(|i| vecs[i * n + col] * svd.u[i * k + j]).sum();
            }
        }
        let ctc: Vec<f64> = (0..k * k)
            .map(|ij| (0..k).map(|p| c[p * k + ij / k] * c[p * k + ij % k]).sum())
            .collect();
        let (cos2, _) = eigen_desc(&ctc, k);
        for (j, c2) in cos2.iter().enumerate() {
            assert!(
                c2.sqrt() > 1.0 - 1e-6,
                "principal angle {j}: cos {}",
                c2.sqrt()
            );
        }
        // And U is orthonormal.
        for p in 0..k {
            for j in 0..k {
                let d: f64 = (0..n).map(|i| svd.u[i * k + p] * svd.u[i * k + j]).sum();
                assert!((d - if p == j { 1.0 } else { 0.0 }).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn a_low_rank_matrix_gives_fewer_components() {
        // Two disjoint item pairs: rank 4 (eigenvalues ±v twice), asked for 8.
        let a = Csr::symmetric_from_upper(6, &[(0, 1, 1.0), (2, 3, 2.0)]);
        let svd = truncated_svd(&a, 8, 10, 2, 1, &Silent);
        assert_eq!(svd.sigma.len(), 4);
        let mut s = svd.sigma.clone();
        s.iter_mut().for_each(|v| *v = (*v * 1e9).round() / 1e9);
        assert_eq!(s, vec![2.0, 2.0, 1.0, 1.0]);
        for i in 4..6 {
            assert!(svd.u[i * 4..(i + 1) * 4].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn same_seed_same_bits_on_any_thread_count() {
        // Large enough that the sparse products and the Gram sums split into many blocks.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = 3 * GRAM_ROWS + 17;
        let mut upper: Vec<(u32, u32, f32)> = (0..8 * n)
            .map(|_| {
                let a = rng.random_range(0..n as u32 - 1);
                (a, rng.random_range(a + 1..n as u32), rng.random::<f32>())
            })
            .collect();
        upper.sort_by_key(|&(a, b, _)| (a, b));
        upper.dedup_by_key(|&mut (a, b, _)| (a, b));
        let a = Csr::symmetric_from_upper(n, &upper);
        let run = |threads: usize, seed: u64| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| truncated_svd(&a, 8, 10, 2, seed, &Silent))
        };
        let one = run(1, 3);
        let two = run(2, 3);
        assert_eq!(one.u, two.u);
        assert_eq!(one.sigma, two.sigma);
        assert_ne!(run(1, 4).u, one.u, "the seed is used");
    }
}
