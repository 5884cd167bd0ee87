//! The reconstruction loss mean((x̂ − x)²) as one candle custom op, for RQ-VAE / GenSAR training.
//!
//! Composed from candle ops it is a subtraction, a square and a mean over the whole batch
//! (1024 × 1024 values per step on the data), forward and backward, mostly single-
//! threaded. This op makes one parallel pass each way. Sums run over fixed blocks added in
//! order, so the loss does not depend on the thread count.

use crate::quant::cpu_data::{slice, with_data};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Values per block of the parallel sums.
const BLOCK: usize = 16 * 1024;

/// `mse(prediction, target)`; the gradient flows to the prediction only (the target is data).
#[derive(Debug, Clone, Copy)]
pub struct MseOp;

impl CustomOp2 for MseOp {
    fn name(&self) -> &'static str {
        "sidtool-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("mse op: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let (a, b) = (slice(s1, l1)?, slice(s2, l2)?);
        let parts: Vec<f64> = a
            .par_chunks(BLOCK)
            .zip(b.par_chunks(BLOCK))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| {
                        let d = x - y;
                        (d * d) as f64
                    })
                    .sum::<f64>()
            })
            .collect();
        let mean = parts.iter().sum::<f64>() / a.len().max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        pred: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_scalar::<f32>()?;
        let n = pred.elem_count().max(1) as f32;
        let scale = 2.0 * g / n;
        let out = with_data(pred, |a| {
            with_data(target, |b| {
                let mut out = vec![0f32; a.len()];
                out.par_chunks_mut(BLOCK)
                    .zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)))
                    .for_each(|(o, (a, b))| {
                        for ((o, x), y) in o.iter_mut().zip(a).zip(b) {
                            *o = scale * (x - y);
                        }
                    });
                out
            })
        })??;
        Ok((
            Some(Tensor::from_vec(out, pred.shape(), pred.device())?),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Loss and gradient equal candle's own composition on the same numbers.
    #[test]
    fn matches_candle_ops() {
        let dev = Device::Cpu;
        let a: Vec<f32> = (0..50_000)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 17.0)
            .collect();
        let b: Vec<f32> = (0..50_000)
            .map(|i| ((i * 7 % 89) as f32 - 44.0) / 23.0)
            .collect();
        let x = Var::from_tensor(&Tensor::from_vec(a, (250, 200), &dev).unwrap()).unwrap();
        let t = Tensor::from_vec(b, (250, 200), &dev).unwrap();
        let ours = x.as_tensor().apply_op2(&t, MseOp).unwrap();
        let theirs = (x.as_tensor() - &t)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let (l1, l2) = (
            ours.to_scalar::<f32>().unwrap(),
            theirs.to_scalar::<f32>().unwrap(),
        );
        assert!((l1 - l2).abs() <= 1e-5 * l2.abs(), "{l1} vs {l2}");
        let g1 = ours.backward().unwrap().get(x.as_tensor()).unwrap().clone();
        let g2 = theirs
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .clone();
        let worst = (g1 - g2)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(worst < 1e-9, "largest gradient difference {worst}");
    }
}
