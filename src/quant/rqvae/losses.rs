//! The training losses shared by both backends: PLUM's prefix masks, one step's loss (reconstruction,
//! codebook and commitment terms through the residual quantization), the straight-through
//! quantized latents and the contrastive co-occurrence term with its pair draws.

use super::trainer::*;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::quant::config::PrefixMasking;
use crate::quant::distance::Codebook;
use candle_core::{DType, Device, Tensor};
use rand::Rng;

impl Trainer<'_> {
    /// PLUM's progressive masks of one batch of `b` rows, one per decoder (None without
    /// masking): row-major (b × that ID's levels), 1 for the levels each example
    /// reconstructs from. Drawn from the training RNG, decoder by decoder.
    pub(super) fn draw_masks(&mut self, b: usize) -> Vec<Option<Vec<f32>>> {
        let levels: Vec<usize> = self.arch.kinds.iter().map(|k| k.levels.len()).collect();
        levels
            .into_iter()
            .map(|l| match self.cfg.prefix_masking {
                PrefixMasking::None => None,
                PrefixMasking::Uniform => {
                    let mut m = vec![0f32; b * l];
                    for row in m.chunks_mut(l) {
                        let depth = if self.rng.random_bool(self.cfg.full_prefix_prob) {
                            l
                        } else {
                            self.rng.random_range(1..=l)
                        };
                        row[..depth].fill(1.0);
                    }
                    Some(m)
                }
            })
            .collect()
    }

    /// [`Trainer::draw_masks`] as (b × levels) tensors on the variables' device.
    pub(super) fn mask_tensors(&mut self, b: usize) -> Result<Vec<Option<Tensor>>> {
        let masks = self.draw_masks(b);
        masks
            .into_iter()
            .zip(&self.arch.kinds)
            .map(|(m, k)| {
                m.map(|m| Ok(Tensor::from_vec(m, (b, k.levels.len()), &self.device)?))
                    .transpose()
            })
            .collect()
    }

    /// Loss of one batch (reconstruction through each decoder from its masked prefix, plus
    /// the codebook and commitment terms), the reconstruction part alone, and each level's
    /// codes and the residual entering it. `masks` holds each decoder's prefix mask (see
    /// [`Trainer::draw_masks`]).
    #[allow(clippy::type_complexity)]
    pub(super) fn step_loss(
        &self,
        x: &Tensor,
        masks: &[Option<Tensor>],
    ) -> Result<(Tensor, Tensor, Vec<Tensor>, Vec<Tensor>)> {
        let width = self.arch.width();
        let z = self.encode(x)?;
        let Levels {
            parts,
            codes,
            residuals,
            cb_loss,
        } = self.residual_quantize(&z, true)?;
        let mut recon: Option<Tensor> = None;
        for (kind, k) in self.arch.kinds.iter().enumerate() {
            // This ID's share of each of its levels' codewords.
            let part = |level: usize| -> Result<Tensor> {
                let s = self.arch.level_span[level];
                narrow(&parts[level], (k.latent.0 - s.0, k.latent.1), s.1)
            };
            // Which levels each example reconstructs from (PLUM's progressive masking).
            let zq = match &masks[kind] {
                None => {
                    let mut s = part(k.levels[0])?;
                    for &level in &k.levels[1..] {
                        s = (s + part(level)?)?;
                    }
                    s
                }
                Some(m) => {
                    let mut s = part(k.levels[0])?.broadcast_mul(&m.narrow(1, 0, 1)?)?;
                    for (j, &level) in k.levels.iter().enumerate().skip(1) {
                        s = (s + part(level)?.broadcast_mul(&m.narrow(1, j, 1)?)?)?;
                    }
                    s
                }
            };
            let zk = narrow(&z, k.latent, width)?;
            let z_st = (&zk + (zq - &zk)?.detach())?;
            let target = narrow(x, k.input, self.x.cols)?.contiguous()?;
            let r = self.decoder_loss(kind, &z_st, &target)?;
            recon = Some(match recon {
                None => r,
                Some(acc) => (acc + r)?,
            });
        }
        let recon = recon.expect("at least one decoder");
        Ok(((&recon + cb_loss)?, recon, codes, residuals))
    }

    /// Residual quantization of latents `z`: per level the nearest codeword of the detached
    /// residual of its span (exact on the tuned path, the distance GEMM's argmin on the
    /// generic one), r ← r − sg(e) on that span, with the codebook and commitment losses when
    /// `losses` (else `cb_loss` stays 0).
    pub(super) fn residual_quantize(&self, z: &Tensor, losses: bool) -> Result<Levels> {
        let l = self.codebooks.len();
        let width = self.arch.width();
        let mut r = z.clone();
        let mut out = Levels {
            parts: Vec::with_capacity(l),
            codes: Vec::with_capacity(l),
            residuals: Vec::with_capacity(l),
            cb_loss: Tensor::zeros((), DType::F32, &self.device)?,
        };
        for (level, cb) in self.codebooks.iter().enumerate() {
            let span = self.arch.level_span[level];
            let e_all = cb.as_tensor();
            let rs = narrow(&r, span, width)?;
            let rd = rs.detach();
            let idx = match self.backend {
                Backend::Tuned => {
                    let rm = Matrix::from_tensor(&rd)?;
                    let near = Codebook::new(Matrix::from_tensor(e_all)?)?.nearest(&rm, false)?;
                    let n = near.index.len();
                    Tensor::from_vec(near.index, n, &Device::Cpu)?
                }
                Backend::Generic(_) => super::generic::nearest(&rd, e_all)?,
            };
            let e = e_all.index_select(&idx, 0)?;
            if losses {
                out.cb_loss =
                    (&out.cb_loss + mse(&rd, &e)? + (mse(&rs, &e.detach())? * self.cfg.beta)?)?;
            }
            r = (r - place(&e.detach(), span, width)?)?;
            out.parts.push(e);
            out.codes.push(idx);
            out.residuals.push(rd);
        }
        Ok(out)
    }

    /// Quantized latents (straight-through, all levels) of the rows `x`.
    pub(super) fn quantized_st(&self, x: &Tensor) -> Result<Tensor> {
        let width = self.arch.width();
        let z = self.encode(x)?;
        // Only the codewords: the contrastive term has no codebook or commitment loss.
        let parts = self.residual_quantize(&z, false)?.parts;
        let mut zq = place(&parts[0].detach(), self.arch.level_span[0], width)?;
        for (level, p) in parts.iter().enumerate().skip(1) {
            zq = (zq + place(&p.detach(), self.arch.level_span[level], width)?)?;
        }
        Ok((&z + (zq - &z)?.detach())?)
    }

    /// The rows of one contrastive batch: `batch.min(pairs)` pairs drawn with replacement,
    /// as (anchors, partners).
    pub(super) fn draw_pairs(&mut self, batch: usize) -> (Vec<usize>, Vec<usize>) {
        let b = batch.min(self.pairs.len());
        (0..b)
            .map(|_| {
                let p = self.pairs[self.rng.random_range(0..self.pairs.len())];
                (p.0 as usize, p.1 as usize)
            })
            .unzip()
    }

    /// Symmetric InfoNCE over a random batch of co-occurring pairs, in-batch negatives:
    /// −½ [log softmax_j(cos(q_a, q_p_j)/τ) at the true partner + the same from the p side].
    pub(super) fn contrastive_loss(&mut self, batch: usize) -> Result<Tensor> {
        let (a, p) = self.draw_pairs(batch);
        let (xa, xp) = (self.rows(&a)?, self.rows(&p)?);
        let target = Tensor::arange(0u32, a.len() as u32, &self.device)?;
        self.contrastive_of(&xa, &xp, &target)
    }

    /// The contrastive loss of anchor rows `xa` and their partners `xp` (row i with row i;
    /// `target` is 0..rows as u32).
    pub(super) fn contrastive_of(
        &self,
        xa: &Tensor,
        xp: &Tensor,
        target: &Tensor,
    ) -> Result<Tensor> {
        let unit = |t: Tensor| -> Result<Tensor> {
            let n = (t.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?;
            Ok(t.broadcast_div(&n)?)
        };
        let qa = unit(self.quantized_st(xa)?)?;
        let qp = unit(self.quantized_st(xp)?)?;
        let logits = (qa.matmul(&qp.t()?)? / self.cfg.temperature)?;
        let l1 = candle_nn::loss::cross_entropy(&logits, target)?;
        let l2 = candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, target)?;
        Ok(((l1 + l2)? * 0.5)?)
    }
}
