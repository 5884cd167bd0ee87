//! The encoder's dense projections, `y = x Wᵀ`: the bulk of its arithmetic.
//!
//! Weights stay in the transformers layout, (out, in) row-major. The fused CPU forward hands
//! that buffer to [`crate::gemm::sgemm`] as a transposed operand (OpenBLAS with
//! `--features openblas`, candle's `gemm` kernel otherwise); measured on the 0.6B shape, this
//! was as fast as a pre-transposed (in, out) copy with OpenBLAS and 3% faster with `gemm`, and
//! needs no copy at load.

use crate::error::Result;
use candle_core::Tensor;

pub(crate) struct Linear {
    /// (out, in), contiguous.
    w: Tensor,
}

impl Linear {
    /// From a transformers-layout weight (out, in).
    pub fn new(w: Tensor) -> Result<Self> {
        Ok(Linear { w: w.contiguous()? })
    }

    /// x: (rows, in) → (rows, out), as candle ops (any device and dtype).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w.t()?)?)
    }

    /// The (out, in) weight.
    pub fn weight(&self) -> &Tensor {
        &self.w
    }
}
