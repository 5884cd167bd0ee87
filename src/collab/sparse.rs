//! A symmetric sparse matrix in CSR form and its product with a tall dense block: the PPMI
//! matrix of a million-item catalogue holds a few entries per item and never exists densely.

use rayon::prelude::*;

/// Rows per rayon task in [`Csr::mul_dense`]: each row is an independent dot product in
/// CSR order, so the split only affects speed, never the result.
const ROWS_PER_TASK: usize = 256;

/// Compressed sparse rows of an n × n matrix, columns sorted within each row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Csr {
    pub n: usize,
    /// Row `i` is `cols[offsets[i]..offsets[i + 1]]` with values likewise.
    pub offsets: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<f32>,
}

impl Csr {
    /// The symmetric matrix whose upper triangle is `upper` (`(a, b, v)` with a < b, sorted
    /// by (a, b)); the diagonal is zero.
    pub(crate) fn symmetric_from_upper(n: usize, upper: &[(u32, u32, f32)]) -> Self {
        let mut offsets = vec![0usize; n + 1];
        for &(a, b, _) in upper {
            debug_assert!(a < b && (b as usize) < n);
            offsets[a as usize + 1] += 1;
            offsets[b as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let nnz = offsets[n];
        let mut cols = vec![0u32; nnz];
        let mut vals = vec![0f32; nnz];
        let mut next = offsets[..n].to_vec();
        // In (a, b) order, row a receives its columns b > a ascending, and row b its columns
        // a < b ascending, all before any (b, ·) entry: every row comes out sorted.
        for &(a, b, v) in upper {
            for (row, col) in [(a, b), (b, a)] {
                let slot = &mut next[row as usize];
                cols[*slot] = col;
                vals[*slot] = v;
                *slot += 1;
            }
        }
        Csr {
            n,
            offsets,
            cols,
            vals,
        }
    }

    /// Stored entries (both triangles).
    pub(crate) fn nnz(&self) -> usize {
        self.cols.len()
    }

    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.offsets[i]..self.offsets[i + 1];
        (&self.cols[r.clone()], &self.vals[r])
    }

    /// `y = A · x` for x row-major n × `w`. Rows in parallel; each row sums its entries in
    /// column order, so the result is identical for any number of threads.
    pub(crate) fn mul_dense(&self, x: &[f64], w: usize, y: &mut [f64]) {
        assert!(x.len() == self.n * w && y.len() == self.n * w);
        if w == 0 {
            return;
        }
        y.par_chunks_mut(ROWS_PER_TASK * w)
            .enumerate()
            .for_each(|(t, block)| {
                for (r, out) in block.chunks_mut(w).enumerate() {
                    out.fill(0.0);
                    let (cols, vals) = self.row(t * ROWS_PER_TASK + r);
                    for (&c, &v) in cols.iter().zip(vals) {
                        let v = v as f64;
                        let src = &x[c as usize * w..(c as usize + 1) * w];
                        for (o, s) in out.iter_mut().zip(src) {
                            *o += v * s;
                        }
                    }
                }
            });
    }

    /// The dense matrix, for tests against references.
    #[cfg(test)]
    pub(crate) fn to_dense(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.n * self.n];
        for i in 0..self.n {
            let (cols, vals) = self.row(i);
            for (&c, &v) in cols.iter().zip(vals) {
                d[i * self.n + c as usize] = v as f64;
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_rows_are_sorted_and_the_product_matches_dense() {
        let upper = [(0, 2, 1.5), (0, 3, -2.0), (1, 2, 0.5), (2, 3, 4.0)];
        let a = Csr::symmetric_from_upper(5, &upper);
        assert_eq!(a.offsets, vec![0, 2, 3, 6, 8, 8]);
        assert_eq!(a.row(2).0, &[0, 1, 3]);
        assert_eq!(a.row(3).0, &[0, 2]);
        assert_eq!(a.nnz(), 8);
        let d = a.to_dense();
        for i in 0..5 {
            for j in 0..5 {
                assert_eq!(d[i * 5 + j], d[j * 5 + i]);
            }
        }
        let x: Vec<f64> = (0..10).map(|v| v as f64 - 3.0).collect();
        let mut y = vec![f64::NAN; 10];
        a.mul_dense(&x, 2, &mut y);
        for i in 0..5 {
            for c in 0..2 {
                let want: f64 = (0..5).map(|j| d[i * 5 + j] * x[j * 2 + c]).sum();
                assert_eq!(y[i * 2 + c], want);
            }
        }
        assert_eq!(&y[8..], &[0.0, 0.0], "empty row gives zeros");
    }
}
