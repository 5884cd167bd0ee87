//! The encoder's dense projections, `y = x Wᵀ`: the bulk of its arithmetic.
//!
//! By default candle's matmul runs them, on weights stored transposed, (in, out) row-major,
//! once at load, so neither operand is packed from a strided view on every call. Built with
//! `--features openblas`, f32 projections on the CPU go through the same OpenBLAS SGEMM as the
//! k-means distances ([`crate::quant::distance::dots_into`]), whose AVX-512 kernel runs them
//! about 1.6× faster than candle's.

use crate::error::Result;
use candle_core::Tensor;

pub struct Linear {
    /// (in, out), contiguous: the candle path.
    wt: Tensor,
    /// (out, in) row-major: the OpenBLAS path (CPU, f32 only).
    #[cfg(feature = "openblas")]
    w: Option<crate::matrix::Matrix>,
}

impl Linear {
    /// From a transformers-layout weight (out, in).
    pub fn new(w: Tensor) -> Result<Self> {
        #[cfg(feature = "openblas")]
        let blas = if w.device().is_cpu() && w.dtype() == candle_core::DType::F32 {
            let (out, inp) = w.dims2()?;
            Some(crate::matrix::Matrix::new(
                w.flatten_all()?.to_vec1::<f32>()?,
                out,
                inp,
            ))
        } else {
            None
        };
        Ok(Linear {
            #[cfg(feature = "openblas")]
            wt: if blas.is_some() {
                Tensor::zeros(0, w.dtype(), w.device())?
            } else {
                w.t()?.contiguous()?
            },
            #[cfg(not(feature = "openblas"))]
            wt: w.t()?.contiguous()?,
            #[cfg(feature = "openblas")]
            w: blas,
        })
    }

    /// x: (rows, in) → (rows, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "openblas")]
        if let Some(w) = &self.w {
            return blas_forward(x, w);
        }
        Ok(x.matmul(&self.wt)?)
    }
}

#[cfg(feature = "openblas")]
fn blas_forward(x: &Tensor, w: &crate::matrix::Matrix) -> Result<Tensor> {
    let x = x.contiguous()?;
    let (rows, inp) = x.dims2()?;
    assert_eq!(inp, w.cols, "projection input width");
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        unreachable!("the OpenBLAS path is only built for CPU weights");
    };
    let data = &cpu.as_slice::<f32>()?[layout.start_offset()..][..rows * inp];
    let mut out = vec![0f32; rows * w.rows];
    crate::quant::distance::dots_into(data, rows, w, &mut out);
    drop(storage);
    Ok(Tensor::from_vec(out, (rows, w.rows), x.device())?)
}
