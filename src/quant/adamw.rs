//! AdamW as one parallel pass per parameter tensor, for RQ-VAE / GenSAR training.
//!
//! candle-nn's AdamW builds each update from about ten single-threaded element-wise tensor ops
//! (and the gradient clipping before it from a few more), which cost more than a tenth of an
//! RQ-VAE epoch on 1024-dim inputs. This computes the same update (candle's formula, in the
//! same order of operations) in place, over all cores, with the clipping scale folded in. Each
//! element's update depends only on that element, so the result does not depend on how the
//! work is split: training stays deterministic.
//!
//! [`TensorAdamW`] is the same update from ordinary candle tensor ops, for the device-generic
//! training path (`--device cuda`/`metal`, and candle's CPU backend in tests): on the CPU backend
//! it gives the fused op's bits, and its gradient-clipping scale stays a device scalar so that
//! no step waits for the host.

use crate::error::Result;
use crate::quant::cpu_data::{slice, with_data};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use std::sync::Mutex;

/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

pub(crate) struct FusedAdamW {
    vars: Vec<Var>,
    /// First and second moments of each variable.
    moments: Vec<Mutex<(Vec<f32>, Vec<f32>)>>,
    step_t: i32,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl FusedAdamW {
    /// candle-nn's defaults: β1 0.9, β2 0.999, ε 1e-8.
    pub fn new(vars: Vec<Var>, lr: f64, weight_decay: f64) -> Self {
        let moments = vars
            .iter()
            .map(|v| {
                let n = v.elem_count();
                Mutex::new((vec![0f32; n], vec![0f32; n]))
            })
            .collect();
        FusedAdamW {
            vars,
            moments,
            step_t: 0,
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// One update; every gradient is first multiplied by `grad_scale` (global-norm clipping).
    pub fn step(&mut self, grads: &GradStore, grad_scale: f64) -> Result<()> {
        self.step_t += 1;
        let op = Update {
            moments: None,
            grad_scale: grad_scale as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            scale_m: (1.0 / (1.0 - self.beta1.powi(self.step_t))) as f32,
            scale_v: (1.0 / (1.0 - self.beta2.powi(self.step_t))) as f32,
            decay: (1.0 - self.lr * self.weight_decay) as f32,
            lr: self.lr as f32,
            eps: self.eps as f32,
        };
        for (var, moments) in self.vars.iter().zip(&self.moments) {
            if let Some(g) = grads.get(var.as_tensor()) {
                let op = Update {
                    moments: Some(moments),
                    ..op
                };
                var.as_tensor().inplace_op2(&g.contiguous()?, &op)?;
            }
        }
        Ok(())
    }
}

/// The factor that scales all gradients to a global L2 norm of at most `max` (1 when they are
/// within it). Summed in fixed chunks, in order, so the factor does not depend on threads.
pub(crate) fn clip_scale(grads: &GradStore, vars: &[Var], max: f64) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let parts: Vec<f64> = with_data(g, |s| {
                s.par_chunks(CHUNK)
                    .map(crate::matrix::sq_norm_f64)
                    .collect()
            })?;
            sq += parts.iter().sum::<f64>();
        }
    }
    let norm = sq.sqrt();
    Ok(if norm > max { max / norm } else { 1.0 })
}

/// AdamW from candle tensor ops on the variables' own device: [`FusedAdamW`]'s update, element
/// by element the same f32 operations in the same order (so the same bits wherever the
/// gradients are the same), with the moments as device tensors.
pub(crate) struct TensorAdamW {
    vars: Vec<Var>,
    /// First and second moments of each variable.
    moments: Vec<(Tensor, Tensor)>,
    step_t: i32,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl TensorAdamW {
    /// candle-nn's defaults, as [`FusedAdamW::new`].
    pub fn new(vars: Vec<Var>, lr: f64, weight_decay: f64) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|v| Ok((v.zeros_like()?, v.zeros_like()?)))
            .collect::<Result<_>>()?;
        Ok(TensorAdamW {
            vars,
            moments,
            step_t: 0,
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// One update; every gradient is first multiplied by `grad_scale` (a 0-d tensor on the
    /// variables' device, from [`clip_scale_tensor`]) when given.
    pub fn step(&mut self, grads: &GradStore, grad_scale: Option<&Tensor>) -> Result<()> {
        self.step_t += 1;
        // The constants exactly as `Update` rounds them to f32 (affine takes f64 and rounds
        // once; 1 − β is taken in f32, as the fused op does).
        let b1 = self.beta1 as f32;
        let b2 = self.beta2 as f32;
        let scale_m = (1.0 / (1.0 - self.beta1.powi(self.step_t))) as f32 as f64;
        let scale_v = (1.0 / (1.0 - self.beta2.powi(self.step_t))) as f32 as f64;
        let decay = (1.0 - self.lr * self.weight_decay) as f32 as f64;
        let lr = self.lr as f32 as f64;
        let eps = self.eps as f32 as f64;
        for (var, (m, v)) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = match grad_scale {
                Some(s) => g.broadcast_mul(s)?,
                None => g.clone(),
            };
            let nm = (m.affine(b1 as f64, 0.0)? + g.affine((1.0 - b1) as f64, 0.0)?)?;
            let nv = (v.affine(b2 as f64, 0.0)? + g.sqr()?.affine((1.0 - b2) as f64, 0.0)?)?;
            let adjusted =
                (nm.affine(scale_m, 0.0)? / nv.affine(scale_v, 0.0)?.sqrt()?.affine(1.0, eps)?)?;
            let theta = (var.as_tensor().affine(decay, 0.0)? - adjusted.affine(lr, 0.0)?)?;
            var.set(&theta)?;
            *m = nm;
            *v = nv;
        }
        Ok(())
    }
}

/// [`clip_scale`] as a 0-d device tensor: min(1, `max` / ‖g‖) over all the variables'
/// gradients, summed on their device in f32 (None when no variable has a gradient).
pub(crate) fn clip_scale_tensor(
    grads: &GradStore,
    vars: &[Var],
    max: f64,
) -> Result<Option<Tensor>> {
    let mut sq: Option<Tensor> = None;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let s = g.sqr()?.sum_all()?;
            sq = Some(match sq {
                None => s,
                Some(acc) => (acc + s)?,
            });
        }
    }
    let Some(sq) = sq else { return Ok(None) };
    // max / norm, capped at 1 (an infinite ratio for a zero norm becomes 1); the 1 is made on
    // the device (a scalar operand would be uploaded every step).
    let one = Tensor::ones((), sq.dtype(), sq.device())?;
    Ok(Some(sq.sqrt()?.recip()?.affine(max, 0.0)?.minimum(&one)?))
}

#[derive(Clone, Copy)]
struct Update<'a> {
    moments: Option<&'a Mutex<(Vec<f32>, Vec<f32>)>>,
    grad_scale: f32,
    beta1: f32,
    beta2: f32,
    scale_m: f32,
    scale_v: f32,
    decay: f32,
    lr: f32,
    eps: f32,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "sidtool-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let g = slice(s2, l2)?;
        let Some((start, end)) = l1.contiguous_offsets() else {
            candle_core::bail!("adamw needs contiguous parameters");
        };
        let CpuStorage::F32(theta) = s1 else {
            candle_core::bail!("adamw needs f32 parameters");
        };
        let theta = &mut theta[start..end];
        let mut guard = self
            .moments
            .expect("set per variable")
            .lock()
            .expect("not poisoned");
        let (m, v) = &mut *guard;
        if theta.len() != g.len() || m.len() != g.len() {
            candle_core::bail!("adamw: parameter, gradient and moments differ in size");
        }
        let u = *self;
        theta
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((t, g), m), v)| {
                for i in 0..t.len() {
                    let g = g[i] * u.grad_scale;
                    let nm = m[i] * u.beta1 + g * (1.0 - u.beta1);
                    let nv = v[i] * u.beta2 + g * g * (1.0 - u.beta2);
                    m[i] = nm;
                    v[i] = nv;
                    let adjusted = (nm * u.scale_m) / ((nv * u.scale_v).sqrt() + u.eps);
                    t[i] = t[i] * u.decay - adjusted * u.lr;
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

    /// A few steps on a small quadratic give the same parameters as candle-nn's AdamW
    /// (the independent reference), with and without gradient scaling.
    #[test]
    fn matches_candle_adamw() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..40_000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let target = Tensor::from_vec(
            (0..40_000)
                .map(|i| (i % 7) as f32 - 3.0)
                .collect::<Vec<_>>(),
            (200, 200),
            &dev,
        )
        .unwrap();
        let ours =
            Var::from_tensor(&Tensor::from_vec(init.clone(), (200, 200), &dev).unwrap()).unwrap();
        let theirs = Var::from_tensor(&Tensor::from_vec(init, (200, 200), &dev).unwrap()).unwrap();
        let mut a = FusedAdamW::new(vec![ours.clone()], 0.05, 0.01);
        let mut b = AdamW::new(
            vec![theirs.clone()],
            ParamsAdamW {
                lr: 0.05,
                weight_decay: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        for step in 0..5 {
            let scale = if step % 2 == 0 { 1.0 } else { 0.5 };
            let la = (ours.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let ga = la.backward().unwrap();
            a.step(&ga, scale).unwrap();
            let lb = (theirs.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let mut gb = lb.backward().unwrap();
            let g = gb.remove(theirs.as_tensor()).unwrap();
            gb.insert(theirs.as_tensor(), (g * scale).unwrap());
            b.step(&gb).unwrap();
        }
        let (x, y) = (
            ours.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            theirs
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
        assert_ne!(x[0], 0.0);
    }

    /// The tensor-op AdamW gives the fused op's bits on candle's CPU backend, step after step
    /// (with a changing learning rate and clipping scale), and its device-side clipping scale
    /// is the host one's to f32 rounding.
    #[test]
    fn tensor_adamw_gives_the_fused_bits() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..3000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let target = Tensor::from_vec(
            (0..3000).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(),
            (30, 100),
            &dev,
        )
        .unwrap();
        let var =
            || Var::from_tensor(&Tensor::from_vec(init.clone(), (30, 100), &dev).unwrap()).unwrap();
        let (ours, theirs) = (var(), var());
        let mut fused = FusedAdamW::new(vec![ours.clone()], 0.05, 0.01);
        let mut tensor = TensorAdamW::new(vec![theirs.clone()], 0.05, 0.01).unwrap();
        for step in 0..6 {
            let lr = 0.05 / (step + 1) as f64;
            (fused.lr, tensor.lr) = (lr, lr);
            let grads = |v: &Var| {
                (v.as_tensor() - &target)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            };
            let (ga, gb) = (grads(&ours), grads(&theirs));
            let max = [1e9, 10.0][step % 2];
            let a = clip_scale(&ga, std::slice::from_ref(&ours), max).unwrap();
            let b = clip_scale_tensor(&gb, std::slice::from_ref(&theirs), max)
                .unwrap()
                .unwrap();
            let b_v = b.to_scalar::<f32>().unwrap();
            assert!(
                ((a as f32) - b_v).abs() <= 1e-6 * a as f32,
                "clip scale {a} vs {b_v}"
            );
            assert_eq!(a == 1.0, b_v == 1.0);
            // The same scale for both, so that the updates can be compared bit for bit.
            fused.step(&ga, b_v as f64).unwrap();
            tensor.step(&gb, Some(&b)).unwrap();
            let bits = |v: &Var| -> Vec<u32> {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            assert_eq!(bits(&ours), bits(&theirs), "step {step}");
        }
        assert_ne!(
            ours.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            init
        );
    }

    #[test]
    fn clip_scale_is_the_global_norm_ratio() {
        let dev = Device::Cpu;
        let v = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &dev).unwrap()).unwrap();
        // d/dv of Σ v²/2 is v itself: norm 5.
        let loss = (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let g = loss.backward().unwrap();
        assert!((clip_scale(&g, std::slice::from_ref(&v), 1.0).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(clip_scale(&g, &[v], 10.0).unwrap(), 1.0);
    }
}
