//! The encoder's dense projections, `y = x Wᵀ`: the bulk of its arithmetic.
//!
//! Weights are stored transposed, (in, out) row-major, once at load: candle's matmul then reads
//! both operands row-major instead of packing a transposed view on every call, and the fused
//! CPU forward hands the same buffer to [`crate::quant::distance::sgemm`] (OpenBLAS with
//! `--features openblas`).

use crate::error::Result;
use candle_core::Tensor;

pub struct Linear {
    /// (in, out), contiguous.
    wt: Tensor,
}

impl Linear {
    /// From a transformers-layout weight (out, in).
    pub fn new(w: Tensor) -> Result<Self> {
        Ok(Linear {
            wt: w.t()?.contiguous()?,
        })
    }

    /// x: (rows, in) → (rows, out), as candle ops (any device and dtype).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.wt)?)
    }

    /// The (in, out) weight.
    pub fn weight_t(&self) -> &Tensor {
        &self.wt
    }

    /// (in, out).
    pub fn dims(&self) -> Result<(usize, usize)> {
        Ok(self.wt.dims2()?)
    }
}
