//! The device-generic training path (`--device cuda`/`metal`, and candle's CPU backend in the
//! tests): the tuned path's model, initialisation, batches, masks, losses, schedule, clipping,
//! AdamW and dead-code resets, from ordinary candle tensor ops and autograd on the device.
//!
//! What differs from the tuned CPU path (`trainer.rs` holds what both share):
//! - each MLP is matmul, broadcast add and ReLU on views of its one flat parameter variable
//!   (the same variable, the same layout, so saving and AdamW see no difference);
//! - the nearest codeword is the argmin of ‖c‖² − 2 r·c from a distance GEMM, where the tuned
//!   path re-checks near ties with exact distances: the two can choose differently only
//!   between codewords whose distances agree to rounding;
//! - the codebooks' k-means init runs on the device (`kmeans::device`);
//! - nothing waits for the host inside an epoch: the epoch's row order, prefix masks and
//!   contrastive pairs are drawn up front (from the same RNG, in the same order as the tuned
//!   path draws them step by step) and uploaded once; code usage is counted on the device;
//!   each step's loss, its parts and a finiteness flag per variable stay on the device until
//!   the epoch ends, when they come back in one read. A diverged step is then reported with
//!   the same epoch, step and message as the tuned path gives, after the rest of the epoch's
//!   steps have run (on NaNs, harmlessly).

use super::trainer::*;
use crate::error::Result;
use crate::quant::adamw::{TensorAdamW, clip_scale_tensor};
use crate::quant::kmeans::{self, KMeansConfig};
use candle_core::{D, DType, Tensor, Var};

/// A dense layer as device tensors: W (out × in) and b (out).
pub(super) type Layer = (Tensor, Tensor);

/// `h₀ = x, h_l = ReLU(h_{l−1} W_lᵀ + b_l)`, no ReLU after the last layer.
pub(super) fn mlp_layers<'a>(
    layers: impl ExactSizeIterator<Item = (&'a Tensor, &'a Tensor)>,
    x: &Tensor,
) -> Result<Tensor> {
    let last = layers.len().saturating_sub(1);
    let mut h = x.clone();
    for (l, (w, b)) in layers.enumerate() {
        h = h.matmul(&w.t()?)?.broadcast_add(b)?;
        if l < last {
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Views of a flat MLP parameter tensor as its layers (the layout of `quant/mlp.rs`: W₁, b₁,
/// W₂, b₂, …, each W row-major (out × in)).
pub(super) fn flat_layers(params: &Tensor, widths: &[usize]) -> Result<Vec<Layer>> {
    let mut at = 0;
    widths
        .windows(2)
        .map(|io| {
            let (inp, out) = (io[0], io[1]);
            let w = params.narrow(0, at, out * inp)?.reshape((out, inp))?;
            let b = params.narrow(0, at + out * inp, out)?;
            at += out * inp + out;
            Ok((w, b))
        })
        .collect()
}

/// The MLP of a flat parameter variable on `x`, differentiable in both.
pub(super) fn mlp_flat(params: &Tensor, widths: &[usize], x: &Tensor) -> Result<Tensor> {
    let layers = flat_layers(params, widths)?;
    mlp_layers(layers.iter().map(|(w, b)| (w, b)), x)
}

/// Index of the nearest codeword (rows of `e`) to every row of `r`: the argmin of
/// ‖c‖² − 2 r·c (u32, on the device).
pub(super) fn nearest(r: &Tensor, e: &Tensor) -> Result<Tensor> {
    let norms = e.sqr()?.sum_keepdim(1)?.t()?;
    let v = r
        .contiguous()?
        .matmul(&e.t()?)?
        .affine(-2.0, 0.0)?
        .broadcast_add(&norms)?;
    Ok(v.argmin(D::Minus1)?)
}

/// Every random draw of one epoch's steps, step after step: each decoder's prefix masks
/// (all steps' rows stacked, row-major, None without masking) and the contrastive pairs'
/// rows (each step's `bs.min(pairs)` anchors, then the next step's; the same for partners).
#[derive(Debug, PartialEq)]
pub(super) struct EpochDraws {
    pub(super) masks: Vec<Option<Vec<f32>>>,
    pub(super) anchors: Vec<u32>,
    pub(super) partners: Vec<u32>,
}

impl Trainer<'_> {
    /// The draws of an epoch of `batches` (see [`EpochDraws`]), from the training RNG in the
    /// order the tuned path makes them step by step: a step's masks, decoder by decoder,
    /// then its contrastive pairs.
    pub(super) fn draw_epoch(&mut self, batches: &[&[usize]], bs: usize) -> EpochDraws {
        let mut out = EpochDraws {
            masks: vec![None; self.arch.kinds.len()],
            anchors: Vec::new(),
            partners: Vec::new(),
        };
        let contrastive = self.contrastive_on();
        for batch in batches {
            for (all, m) in out.masks.iter_mut().zip(self.draw_masks(batch.len())) {
                if let Some(m) = m {
                    all.get_or_insert_with(Vec::new).extend(m);
                }
            }
            if contrastive {
                let (a, p) = self.draw_pairs(bs);
                out.anchors.extend(a.into_iter().map(|i| i as u32));
                out.partners.extend(p.into_iter().map(|i| i as u32));
            }
        }
        out
    }

    /// The tuned path's codebook init on the device: k-means (`kmeans::device`, the CPU
    /// path's algorithm and seeds) on the residuals of the first batch's latents.
    pub(super) fn init_codebooks_generic(&mut self, order: &[usize]) -> Result<()> {
        let max_k = self.sizes.iter().copied().max().unwrap_or(1);
        let take = self.cfg.batch_size.max(max_k).min(order.len());
        let width = self.arch.width();
        let mut r = self.encode(&self.rows(&order[..take])?)?.detach();
        for (level, &k) in self.sizes.iter().enumerate() {
            let span = self.arch.level_span[level];
            let fit = kmeans::device::fit(
                &narrow(&r, span, width)?.contiguous()?,
                &KMeansConfig {
                    max_iter: 20,
                    ..KMeansConfig::new(k, self.seed.wrapping_add(level as u64))
                },
            )?;
            let c = kmeans::device::upload(&fit.centroids, &self.device)?;
            let n = fit.assignment.len();
            let idx = Tensor::from_vec(fit.assignment, n, &self.device)?;
            r = (r - place(&c.index_select(&idx, 0)?, span, width)?)?;
            self.codebooks.push(Var::from_tensor(&c)?);
        }
        Ok(())
    }

    /// One epoch on the generic path (see the module doc): the same steps as
    /// `Trainer::epoch_tuned`, with one read from the device at the end.
    pub(super) fn epoch_generic(
        &mut self,
        run: &Steps,
        step: &mut usize,
        opt: &mut TensorAdamW,
    ) -> Result<EpochOut> {
        let dev = self.device.clone();
        let xd = self
            .xd
            .clone()
            .expect("the generic path keeps the rows on the device");
        let batches: Vec<&[usize]> = run.order.chunks(run.bs).collect();
        let contrastive = self.contrastive_on();
        let bc = run.bs.min(self.pairs.len());
        let EpochDraws {
            masks,
            anchors,
            partners,
        } = self.draw_epoch(&batches, run.bs);
        let n = run.order.len();
        let upload = |v: Vec<u32>| -> Result<Tensor> {
            let len = v.len();
            Ok(Tensor::from_vec(v, len, &dev)?)
        };
        let order = upload(run.order.iter().map(|&i| i as u32).collect())?;
        let masks: Vec<Option<Tensor>> = masks
            .into_iter()
            .zip(&self.arch.kinds)
            .map(|(m, k)| {
                m.map(|m| Ok(Tensor::from_vec(m, (n, k.levels.len()), &dev)?))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        // The contrastive batches' rows and their targets 0..bc (no empty device buffers
        // without the term).
        let pairs_of = if contrastive {
            Some((
                upload(anchors)?,
                upload(partners)?,
                Tensor::arange(0u32, bc as u32, &dev)?,
            ))
        } else {
            None
        };
        let codes_of: Vec<Tensor> = self
            .sizes
            .iter()
            .map(|&k| Ok(Tensor::arange(0u32, k as u32, &dev)?.unsqueeze(0)?))
            .collect::<Result<_>>()?;
        let mut used: Vec<Tensor> = self
            .sizes
            .iter()
            .map(|&k| Ok(Tensor::zeros(k, DType::F32, &dev)?))
            .collect::<Result<_>>()?;
        let zero = Tensor::zeros((), DType::F32, &dev)?;
        let (mut losses, mut recons, mut cons, mut flags) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut last_residuals: Vec<Option<Tensor>> = vec![None; self.sizes.len()];
        let mut at = 0;
        for (s, batch) in batches.iter().enumerate() {
            opt.lr = self.lr_at(*step + s, run.total_steps);
            let b = batch.len();
            let x = xd.index_select(&order.narrow(0, at, b)?, 0)?;
            let m: Vec<Option<Tensor>> = masks
                .iter()
                .map(|m| m.as_ref().map(|m| m.narrow(0, at, b)).transpose())
                .collect::<candle_core::Result<_>>()?;
            let (mut loss, recon, codes, residuals) = self.step_loss(&x, &m)?;
            let con = match &pairs_of {
                Some((anchors, partners, target)) => {
                    let rows = |t: &Tensor| xd.index_select(&t.narrow(0, s * bc, bc)?, 0);
                    let con = self.contrastive_of(&rows(anchors)?, &rows(partners)?, target)?;
                    loss = (loss + (&con * self.cfg.contrastive_weight)?)?;
                    con
                }
                None => zero.clone(),
            };
            let grads = loss.backward()?;
            let scale = if self.cfg.grad_clip > 0.0 {
                clip_scale_tensor(&grads, run.vars, self.cfg.grad_clip)?
            } else {
                None
            };
            opt.step(&grads, scale.as_ref())?;
            // 0 for each variable whose every weight is finite, NaN otherwise.
            let finite = run
                .vars
                .iter()
                .map(|v| Ok(v.as_tensor().affine(0.0, 0.0)?.sum_all()?))
                .collect::<Result<Vec<_>>>()?;
            flags.push(Tensor::stack(&finite, 0)?);
            losses.push(loss.detach());
            recons.push(recon.detach());
            cons.push(con.detach());
            for ((u, c), all) in used.iter_mut().zip(&codes).zip(&codes_of) {
                let hit = c
                    .unsqueeze(1)?
                    .broadcast_eq(all)?
                    .to_dtype(DType::F32)?
                    .max(0)?;
                *u = u.maximum(&hit)?;
            }
            last_residuals = residuals.into_iter().map(Some).collect();
            at += b;
        }
        // The one read of the epoch.
        let read = |v: &[Tensor]| -> Result<Vec<f32>> { Ok(Tensor::stack(v, 0)?.to_vec1()?) };
        let (losses, recons, cons) = (read(&losses)?, read(&recons)?, read(&cons)?);
        let flags: Vec<Vec<f32>> = Tensor::stack(&flags, 0)?.to_vec2()?;
        let (mut sum_loss, mut sum_recon, mut sum_con) = (0.0, 0.0, 0.0);
        for (s, batch) in batches.iter().enumerate() {
            let at_step = *step + s + 1;
            if !losses[s].is_finite() {
                let what = format!("the loss is {}", losses[s]);
                return Err(self.diverged(run.name, run.epoch, at_step, &what));
            }
            if let Some(i) = flags[s].iter().position(|f| !f.is_finite()) {
                let what = non_finite_message(i, run.vars.len());
                return Err(self.diverged(run.name, run.epoch, at_step, &what));
            }
            let b = batch.len() as f64;
            sum_loss += losses[s] as f64 * b;
            sum_recon += recons[s] as f64 * b;
            sum_con += cons[s] as f64 * b;
        }
        *step += batches.len();
        let used = used
            .iter()
            .map(|u| Ok(u.to_vec1::<f32>()?.iter().map(|&h| h > 0.0).collect()))
            .collect::<Result<_>>()?;
        Ok(EpochOut {
            sum_loss,
            sum_recon,
            sum_con,
            used,
            last_residuals,
        })
    }
}
