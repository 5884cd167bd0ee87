//! Inference layers: dense layers on plain matrices through the GEMM seam, so `assign` is
//! fast and bit-identical however rows are batched.

use super::arch::*;
use crate::gemm::sgemm;
use crate::matrix::Matrix;

/// A dense layer for inference: W (out, in) row-major and bias.
#[derive(Clone)]
pub(super) struct Dense {
    pub(super) w: Matrix,
    pub(super) b: Vec<f32>,
}

impl Dense {
    pub(super) fn forward(&self, x: &Matrix, relu: bool) -> Matrix {
        let mut out = vec![0f32; x.rows * self.w.rows];
        sgemm(
            &x.data,
            x.rows,
            x.cols,
            &self.w.data,
            self.w.rows,
            true,
            &mut out,
            false,
        );
        use rayon::prelude::*;
        out.par_chunks_mut(self.w.rows.max(1)).for_each(|row| {
            for (v, b) in row.iter_mut().zip(&self.b) {
                *v += b;
                if relu && *v < 0.0 {
                    *v = 0.0;
                }
            }
        });
        Matrix::new(out, x.rows, self.w.rows)
    }
}

pub(super) fn mlp(layers: &[Dense], x: &Matrix) -> Matrix {
    let mut h = x.clone();
    for (i, l) in layers.iter().enumerate() {
        h = l.forward(&h, i + 1 < layers.len());
    }
    h
}

/// Subtract (or add) codeword `e` from the span of one row.
pub(super) fn shift(row: &mut [f32], span: Span, e: &[f32], sign: f32) {
    row[span.0..span.0 + span.1]
        .iter_mut()
        .zip(e)
        .for_each(|(v, e)| *v += sign * e);
}
