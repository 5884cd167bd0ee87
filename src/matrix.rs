//! A dense row-major f32 matrix: the in-memory form of embeddings, residuals and codebooks.

use crate::error::Result;
use candle_core::{Device, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Matrix {
    pub fn new(data: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Matrix { data, rows, cols }
    }

    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix::new(vec![0.0; rows * cols], rows, cols)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub(crate) fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Rows `idx` copied into a new matrix, in that order (in parallel: an RQ-VAE batch is
    /// 4 MiB of scattered rows).
    pub fn gather(&self, idx: &[usize]) -> Matrix {
        use rayon::prelude::*;
        let mut data = vec![0f32; idx.len() * self.cols];
        if self.cols > 0 {
            data.par_chunks_mut(self.cols)
                .zip(idx.par_iter())
                .for_each(|(row, &i)| row.copy_from_slice(self.row(i)));
        }
        Matrix::new(data, idx.len(), self.cols)
    }

    /// Squared L2 norm of every row.
    pub(crate) fn row_sq_norms(&self) -> Vec<f32> {
        use rayon::prelude::*;
        if self.cols == 0 {
            return vec![0.0; self.rows];
        }
        self.data.par_chunks(self.cols).map(sq_norm).collect()
    }

    /// A CPU tensor holding a copy of the matrix (candle cannot borrow host memory).
    pub(crate) fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.rows, self.cols),
            &Device::Cpu,
        )?)
    }

    pub(crate) fn from_tensor(t: &Tensor) -> Result<Matrix> {
        let (rows, cols) = t.dims2()?;
        let data = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(Matrix::new(data, rows, cols))
    }

    /// Columns `off..off + width` of every row, copied.
    pub fn columns(&self, off: usize, width: usize) -> Matrix {
        assert!(off + width <= self.cols, "column range outside the matrix");
        if off == 0 && width == self.cols {
            return self.clone();
        }
        let mut data = Vec::with_capacity(self.rows * width);
        for i in 0..self.rows {
            data.extend_from_slice(&self.row(i)[off..off + width]);
        }
        Matrix::new(data, self.rows, width)
    }

    /// The matrices side by side (all must have the same number of rows).
    pub(crate) fn hcat(parts: &[&Matrix]) -> Matrix {
        if let [one] = parts {
            return (*one).clone();
        }
        let rows = parts.first().map_or(0, |p| p.rows);
        let cols = parts.iter().map(|p| p.cols).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for p in parts {
                assert_eq!(p.rows, rows, "hcat: row counts differ");
                data.extend_from_slice(p.row(i));
            }
        }
        Matrix::new(data, rows, cols)
    }

    pub fn append(&mut self, other: &Matrix) {
        if self.rows == 0 {
            self.cols = other.cols;
        }
        assert_eq!(self.cols, other.cols);
        self.data.extend_from_slice(&other.data);
        self.rows += other.rows;
    }
}

/// Lanes of the partial sums below: independent accumulators let the compiler vectorise the
/// loops (a single running sum is a serial dependency chain) and keep rounding error small.
const LANES: usize = 16;

/// Dot product of two equal-length vectors.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

/// Squared L2 norm.
#[inline]
pub(crate) fn sq_norm(v: &[f32]) -> f32 {
    dot(v, v)
}

/// Σ (aᵢ − bᵢ)², each difference in f32, squares and sums in f64, in lanes (for losses and
/// gradient norms, which sum millions of terms). Deterministic: a fixed order for a length.
#[inline]
pub(crate) fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    const W: usize = 8;
    let (ac, ar) = a.as_chunks::<W>();
    let (bc, br) = b.as_chunks::<W>();
    let mut acc = [0f64; W];
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..W {
            let d = (x[i] - y[i]) as f64;
            acc[i] += d * d;
        }
    }
    let rest: f64 = ar
        .iter()
        .zip(br)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    acc.iter().sum::<f64>() + rest
}

/// Σ aᵢ² accumulated in f64, as [`sq_dist_f64`].
#[inline]
pub(crate) fn sq_norm_f64(a: &[f32]) -> f64 {
    const W: usize = 8;
    let (ac, ar) = a.as_chunks::<W>();
    let mut acc = [0f64; W];
    for x in ac {
        for i in 0..W {
            acc[i] += x[i] as f64 * x[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + ar.iter().map(|&x| x as f64 * x as f64).sum::<f64>()
}

/// Squared Euclidean distance, computed directly (not by the GEMM expansion), so it is exact
/// up to f32 rounding even for nearby points.
///
/// Elkan's k-means spends its time here, so on x86-64 the same code is also compiled for
/// AVX-512 and AVX2 and the best is picked at run time (the portable build may only assume
/// SSE2). All builds add in the same order, so they return identical results.
#[inline]
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { sq_dist_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { sq_dist_avx2(a, b) };
        }
    }
    sq_dist_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sq_dist_avx512(a: &[f32], b: &[f32]) -> f32 {
    sq_dist_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_avx2(a: &[f32], b: &[f32]) -> f32 {
    sq_dist_portable(a, b)
}

#[inline(always)]
fn sq_dist_portable(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>()
        + ar.iter()
            .zip(br)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_f64_sums() {
        let a: Vec<f32> = (0..1027)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..1027)
            .map(|i| ((i * 11 % 89) as f32 - 40.0) / 3.0)
            .collect();
        let d64: f64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| (x as f64) * (y as f64))
            .sum();
        let s64: f64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| ((x - y) as f64).powi(2))
            .sum();
        assert!(((dot(&a, &b) as f64) - d64).abs() / d64.abs() < 1e-5);
        assert!(((sq_dist(&a, &b) as f64) - s64).abs() / s64 < 1e-5);
    }
}
