//! Positive pointwise mutual information of co-occurrence counts (Church & Hanks 1990;
//! Levy & Goldberg 2014 showed word2vec's SGNS factorises a shifted PMI matrix, and that the
//! SVD of PPMI is a strong, cheap alternative).

use crate::collab::sparse::Csr;
use rayon::prelude::*;

/// PPMI(i, j) = max(0, ln(c_ij · C / (c_i · c_j))) over the symmetric count matrix with
/// upper triangle `counts` (`(a, b, c_ab)`, a < b, sorted; see
/// [`crate::collab::cooccur::counts`]): c_i its row sums and C their total. The diagonal is
/// zero. Only positive entries are stored, so the result stays as sparse as the counts.
pub(crate) fn ppmi(n: usize, counts: &[(u32, u32, u64)]) -> Csr {
    let mut row_sum = vec![0u64; n];
    for &(a, b, c) in counts {
        row_sum[a as usize] += c;
        row_sum[b as usize] += c;
    }
    let total: u64 = row_sum.iter().sum();
    let ln_total = (total as f64).ln();
    let ln_row: Vec<f64> = row_sum
        .iter()
        .map(|&c| if c > 0 { (c as f64).ln() } else { 0.0 })
        .collect();
    // An order-preserving parallel filter: the same entries in the same order on any pool.
    let upper: Vec<(u32, u32, f32)> = counts
        .par_iter()
        .filter_map(|&(a, b, c)| {
            let pmi = (c as f64).ln() + ln_total - ln_row[a as usize] - ln_row[b as usize];
            (pmi > 0.0).then_some((a, b, pmi as f32))
        })
        .collect();
    Csr::symmetric_from_upper(n, &upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collab::cooccur::{Histories, counts};
    use crate::io::interactions::Interaction;

    /// The definition, computed the slow way on a dense matrix straight from the histories.
    /// Also says whether some co-occurring pair had a negative PMI (so clipping is tested).
    fn naive(n: usize, histories: &[Vec<u32>], window: usize) -> (Vec<f64>, bool) {
        let mut c = vec![0.0f64; n * n];
        for h in histories {
            for a in 0..h.len() {
                for b in a + 1..h.len() {
                    if b - a <= window && h[a] != h[b] {
                        let (x, y) = (h[a] as usize, h[b] as usize);
                        c[x * n + y] += 1.0;
                        c[y * n + x] += 1.0;
                    }
                }
            }
        }
        let row: Vec<f64> = (0..n).map(|i| c[i * n..(i + 1) * n].iter().sum()).collect();
        let total: f64 = row.iter().sum();
        let pmi: Vec<f64> = (0..n * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                if c[ij] == 0.0 {
                    0.0
                } else {
                    (c[ij] * total / (row[i] * row[j])).ln()
                }
            })
            .collect();
        let negative = pmi.iter().any(|&v| v < 0.0);
        (pmi.into_iter().map(|v| v.max(0.0)).collect(), negative)
    }

    #[test]
    fn matches_the_definition_on_a_tiny_history() {
        let histories: Vec<Vec<u32>> = vec![
            vec![0, 1, 2, 0, 3],
            vec![1, 2, 1, 4],
            vec![3, 0, 3],
            vec![5],
            vec![2, 4, 2, 4, 0, 1],
        ];
        let n = 7; // item 6 never occurs, item 5 only alone
        let mut events = Vec::new();
        for (u, h) in histories.iter().enumerate() {
            for (t, &item) in h.iter().enumerate() {
                events.push(Interaction {
                    user: u as u32,
                    item,
                    time: t as i64,
                });
            }
        }
        for window in [1, 2, 5] {
            let h = Histories::new(&events, histories.len() as u64);
            let got = ppmi(n, &counts(&h, window)).to_dense();
            let (want, clipped) = naive(n, &histories, window);
            assert!(
                clipped,
                "window {window}: some PMI is negative and must be clipped"
            );
            for (ij, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-6,
                    "window {window}, entry ({}, {}): {g} vs {w}",
                    ij / n,
                    ij % n
                );
            }
            assert!(want.iter().any(|&v| v > 0.5), "the case has signal");
            for i in [5, 6] {
                assert!(got[i * n..(i + 1) * n].iter().all(|&v| v == 0.0));
            }
        }
    }
}
