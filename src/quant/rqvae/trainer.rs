//! Training: candle variables, the fused MLP ops, AdamW, dead-code resets and the
//! checkpoint kept by evaluation.

use super::arch::*;
use super::dense::*;
use super::eval::*;
use super::model::*;
use super::store::*;
use crate::error::{Error, Result};
use crate::matrix::Matrix;
use crate::progress::Progress;
use crate::quant::adamw::{FusedAdamW, clip_scale};
use crate::quant::config::{Method, PrefixMasking, QuantizerConfig, RqVaeConfig};
use crate::quant::distance::Codebook;
use crate::quant::gensar::DualSpec;
use crate::quant::kmeans::{self, KMeansConfig};
use crate::quant::mlp::{self, MlpLossOp, MlpOp};
use crate::quant::store;
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One MLP's parameters, all layers in one variable (see `quant/mlp.rs`).
pub(super) struct Mlp {
    pub(super) params: Var,
    pub(super) widths: Vec<usize>,
}

/// Training state: candle variables, optimiser, RNG.
pub(super) struct Trainer<'a> {
    pub(super) x: &'a Matrix,
    pub(super) cfg: RqVaeConfig,
    pub(super) sizes: Vec<usize>,
    pub(super) dual: Option<DualSpec>,
    pub(super) arch: Arch,
    pub(super) seed: u64,
    pub(super) rng: ChaCha8Rng,
    pub(super) enc: Vec<Mlp>,
    pub(super) dec: Vec<Mlp>,
    pub(super) codebooks: Vec<Var>,
    pub(super) pairs: Vec<(u32, u32)>,
}

/// He-uniform weights and zero biases, layer by layer, from our own RNG (candle's random init
/// is not seedable on the CPU).
pub(super) fn mlp_vars(rng: &mut ChaCha8Rng, widths: &[usize]) -> Result<Mlp> {
    let mut p = Vec::with_capacity(mlp::param_count(widths));
    for io in widths.windows(2) {
        let (inp, out) = (io[0], io[1]);
        let bound = (6.0 / inp as f64).sqrt() as f32;
        p.extend((0..inp * out).map(|_| rng.random_range(-bound..bound)));
        p.extend(std::iter::repeat_n(0f32, out));
    }
    let n = p.len();
    Ok(Mlp {
        params: Var::from_tensor(&Tensor::from_vec(p, n, &Device::Cpu)?)?,
        widths: widths.to_vec(),
    })
}

/// `input_grad`: whether the input needs a gradient (not for raw data).
pub(super) fn forward_mlp(m: &Mlp, x: &Tensor, input_grad: bool) -> Result<Tensor> {
    Ok(x.apply_op2(m.params.as_tensor(), MlpOp::new(&m.widths, input_grad))?)
}

pub(super) fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.mean_all()?)
}

/// Columns `span` of a (rows × `width`) tensor; the tensor itself when the span is all of it.
pub(super) fn narrow(t: &Tensor, span: Span, width: usize) -> Result<Tensor> {
    if span == (0, width) {
        Ok(t.clone())
    } else {
        Ok(t.narrow(1, span.0, span.1)?)
    }
}

pub(super) fn to_dense(m: &Mlp) -> Result<Vec<Dense>> {
    let p = m.params.as_tensor().to_vec1::<f32>()?;
    Ok(mlp::layers(&m.widths, &p)
        .into_iter()
        .zip(m.widths.windows(2))
        .map(|((w, b), io)| Dense {
            w: Matrix::new(w.to_vec(), io[1], io[0]),
            b: b.to_vec(),
        })
        .collect())
}

impl<'a> Trainer<'a> {
    pub(super) fn new(
        x: &'a Matrix,
        cfg: &QuantizerConfig,
        dual: Option<DualSpec>,
        seed: u64,
    ) -> Result<Self> {
        let v = cfg.rqvae.clone();
        let max_k = cfg.codebook_sizes.iter().copied().max().unwrap_or(0);
        if max_k > x.rows {
            return Err(Error::Config(format!(
                "codebook size {max_k} is larger than the number of training rows ({})",
                x.rows
            )));
        }
        if let Some(d) = &dual {
            d.check(x.cols, cfg.codebook_sizes.len())?;
        }
        let arch = Arch::of(
            x.cols,
            v.latent_dim,
            cfg.codebook_sizes.len(),
            dual.as_ref(),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let enc = arch
            .enc_in
            .iter()
            .map(|s| mlp_vars(&mut rng, &widths(s.1, &v.hidden, v.latent_dim)))
            .collect::<Result<_>>()?;
        let dec = arch
            .kinds
            .iter()
            .map(|k| {
                let mut w = widths(k.input.1, &v.hidden, k.latent.1);
                w.reverse();
                mlp_vars(&mut rng, &w)
            })
            .collect::<Result<_>>()?;
        Ok(Trainer {
            x,
            cfg: v,
            sizes: cfg.codebook_sizes.clone(),
            dual,
            arch,
            seed,
            rng,
            enc,
            dec,
            codebooks: Vec::new(),
            pairs: Vec::new(),
        })
    }

    pub(super) fn rows(&self, idx: &[usize]) -> Result<Tensor> {
        let m = self.x.gather(idx);
        Ok(Tensor::from_vec(m.data, (m.rows, m.cols), &Device::Cpu)?)
    }

    /// The concatenated latent of a batch of input rows.
    pub(super) fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let width = self.x.cols;
        let parts = self
            .enc
            .iter()
            .zip(&self.arch.enc_in)
            .map(|(e, &s)| {
                let xi = narrow(x, s, width)?.contiguous()?;
                forward_mlp(e, &xi, false)
            })
            .collect::<Result<Vec<_>>>()?;
        if parts.len() == 1 {
            Ok(parts.into_iter().next().expect("one part"))
        } else {
            Ok(Tensor::cat(&parts, 1)?)
        }
    }

    /// TIGER's codebook init: k-means on the residuals of the first batch (at least K rows).
    pub(super) fn init_codebooks(&mut self, order: &[usize]) -> Result<()> {
        let max_k = self.sizes.iter().copied().max().unwrap_or(1);
        let take = self.cfg.batch_size.max(max_k).min(order.len());
        let z = self.encode(&self.rows(&order[..take])?)?;
        let mut r = Matrix::from_tensor(&z)?;
        for (level, &k) in self.sizes.iter().enumerate() {
            let span = self.arch.level_span[level];
            let fit = kmeans::fit(
                &r.columns(span.0, span.1),
                &KMeansConfig {
                    max_iter: 20,
                    ..KMeansConfig::new(k, self.seed.wrapping_add(level as u64))
                },
            )?;
            for (i, &a) in fit.assignment.iter().enumerate() {
                shift(r.row_mut(i), span, fit.centroids.row(a as usize), -1.0);
            }
            self.codebooks
                .push(Var::from_tensor(&fit.centroids.to_tensor()?)?);
        }
        Ok(())
    }

    pub(super) fn snapshot(
        &self,
        evaluations: Vec<Evaluation>,
        epochs_run: usize,
        best_epoch: usize,
        resets: usize,
    ) -> Result<RqVae> {
        Ok(RqVae {
            config: RqVaeSaved {
                method: if self.dual.is_some() {
                    Method::Gensar
                } else {
                    Method::RqVae
                },
                format_version: store::FORMAT_VERSION,
                sidtool_version: crate::VERSION.into(),
                dim: self.x.cols,
                codebook_sizes: self.sizes.clone(),
                hidden: self.cfg.hidden.clone(),
                latent_dim: self.cfg.latent_dim,
                dual: self.dual.clone(),
                seed: self.seed,
                train: self.cfg.clone(),
                train_rows: self.x.rows,
                epochs_run,
                best_epoch,
                evaluations,
                dead_code_resets: resets,
                epoch_seconds: Vec::new(),
            },
            arch: self.arch.clone(),
            enc: self.enc.iter().map(to_dense).collect::<Result<_>>()?,
            dec: self.dec.iter().map(to_dense).collect::<Result<_>>()?,
            codebooks: self
                .codebooks
                .iter()
                .map(|c| Codebook::new(Matrix::from_tensor(c.as_tensor())?))
                .collect::<Result<_>>()?,
        })
    }

    pub(super) fn run(mut self, progress: &dyn Progress) -> Result<RqVae> {
        let n = self.x.rows;
        let l = self.sizes.len();
        let bs = self.cfg.batch_size.min(n);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        self.init_codebooks(&order)?;
        let mut vars: Vec<Var> = Vec::new();
        vars.extend(self.enc.iter().chain(&self.dec).map(|m| m.params.clone()));
        vars.extend(self.codebooks.iter().cloned());
        let mut opt = FusedAdamW::new(vars.clone(), self.cfg.lr, self.cfg.weight_decay);
        let steps_per_epoch = n.div_ceil(bs);
        let total_steps = (steps_per_epoch * self.cfg.epochs).max(1);
        let mut step = 0usize;
        let mut evaluations = Vec::new();
        let mut best: Option<(f64, f64, RqVae)> = None;
        let mut since_best = 0usize;
        let mut resets = 0usize;
        let mut epochs_run = 0;
        let mut epoch_seconds = Vec::new();
        let name = if self.dual.is_some() {
            "gensar"
        } else {
            "rq-vae"
        };
        progress.start(
            &format!("train {name} (epochs)"),
            Some(self.cfg.epochs as u64),
        );
        for epoch in 1..=self.cfg.epochs {
            order.shuffle(&mut self.rng);
            let mut used = self
                .sizes
                .iter()
                .map(|&k| vec![false; k])
                .collect::<Vec<_>>();
            let mut last_residuals: Vec<Option<Matrix>> = vec![None; l];
            let (mut sum_loss, mut sum_recon, mut sum_con) = (0.0, 0.0, 0.0);
            let clock = std::time::Instant::now();
            let mut parts_s = [0f64; 4];
            for batch in order.chunks(bs) {
                let lr = self.lr_at(step, total_steps);
                opt.lr = lr;
                let t0 = std::time::Instant::now();
                let x = self.rows(batch)?;
                let (mut loss, recon, codes, residuals) = self.step_loss(&x)?;
                if !self.pairs.is_empty() && self.cfg.contrastive_weight > 0.0 {
                    let con = self.contrastive_loss(bs)?;
                    sum_con += con.to_scalar::<f32>()? as f64 * batch.len() as f64;
                    loss = (loss + (con * self.cfg.contrastive_weight)?)?;
                }
                let loss_v = loss.to_scalar::<f32>()?;
                if !loss_v.is_finite() {
                    return Err(self.diverged(
                        name,
                        epoch,
                        step + 1,
                        &format!("the loss is {loss_v}"),
                    ));
                }
                let t1 = std::time::Instant::now();
                let grads = loss.backward()?;
                let t2 = std::time::Instant::now();
                let scale = if self.cfg.grad_clip > 0.0 {
                    clip_scale(&grads, &vars, self.cfg.grad_clip)?
                } else {
                    1.0
                };
                let t3 = std::time::Instant::now();
                opt.step(&grads, scale)?;
                // A finite loss can still come with an update that overflows the weights (a
                // huge learning rate); the next loss would be NaN, but stop at the step that
                // broke them.
                if let Some(what) = non_finite_weights(&vars)? {
                    return Err(self.diverged(name, epoch, step + 1, &what));
                }
                let t4 = std::time::Instant::now();
                parts_s[0] += (t1 - t0).as_secs_f64();
                parts_s[1] += (t2 - t1).as_secs_f64();
                parts_s[2] += (t3 - t2).as_secs_f64();
                parts_s[3] += (t4 - t3).as_secs_f64();
                step += 1;
                sum_loss += loss_v as f64 * batch.len() as f64;
                sum_recon += recon * batch.len() as f64;
                for (level, c) in codes.iter().enumerate() {
                    c.iter().for_each(|&k| used[level][k as usize] = true);
                }
                last_residuals = residuals.into_iter().map(Some).collect();
            }
            resets += self.reset_dead_codes(&used, &last_residuals)?;
            epoch_seconds.push(clock.elapsed().as_secs_f64());
            tracing::debug!(
                forward_s = parts_s[0],
                backward_s = parts_s[1],
                clip_s = parts_s[2],
                optimiser_s = parts_s[3],
                "rq-vae epoch time split"
            );
            epochs_run = epoch;
            progress.advance(1);
            let loss = sum_loss / n as f64;
            tracing::debug!(
                epoch,
                loss,
                recon = sum_recon / n as f64,
                contrastive = sum_con / n as f64,
                "rq-vae epoch"
            );
            if epoch % self.cfg.eval_every == 0 || epoch == self.cfg.epochs {
                let snap = self.snapshot(Vec::new(), epoch, epoch, resets)?;
                let e = evaluate(&snap, self.x, epoch, loss)?;
                tracing::info!(
                    epoch,
                    loss,
                    recon_mse = e.recon_mse,
                    collision_rate = e.collision_rate,
                    utilisation = ?e.utilisation,
                    entropy_bits = ?e.entropy_bits,
                    "rq-vae evaluation"
                );
                progress.note(&format!(
                    "loss {loss:.4} recon {:.4} collisions {:.3} util {:?}",
                    e.recon_mse,
                    e.collision_rate,
                    e.utilisation
                        .iter()
                        .map(|u| (u * 100.0).round() / 100.0)
                        .collect::<Vec<_>>()
                ));
                let better = match &best {
                    None => true,
                    Some((r, c, _)) => {
                        e.recon_mse < r * (1.0 - 1e-4) || (e.recon_mse <= *r && e.collisions() < *c)
                    }
                };
                let (r, c) = (e.recon_mse, e.collisions());
                evaluations.push(e);
                if better {
                    best = Some((r, c, snap));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= self.cfg.patience {
                        tracing::info!(
                            epoch,
                            "rq-vae: no better reconstruction for {} evaluations; stopping",
                            self.cfg.patience
                        );
                        break;
                    }
                }
            }
        }
        progress.finish();
        let (_, _, mut model) = best.expect("at least one evaluation runs");
        model.config.epochs_run = epochs_run;
        model.config.evaluations = evaluations;
        model.config.dead_code_resets = resets;
        model.config.epoch_seconds = epoch_seconds;
        Ok(model)
    }

    /// The error that stops diverged training: where it happened, and what to change.
    fn diverged(&self, name: &str, epoch: usize, step: usize, what: &str) -> Error {
        let c = &self.cfg;
        Error::Training(format!(
            "{name} training diverged at epoch {epoch}, step {step}: {what}; nothing was saved. \
             Lower the learning rate (--lr, now {:?}), use a smaller commitment weight (--beta, \
             now {:?}), or clip gradients harder (--grad-clip, now {:?}{})",
            c.lr,
            c.beta,
            c.grad_clip,
            if c.grad_clip > 0.0 { "" } else { " = off" }
        ))
    }

    /// Linear warm-up, then optional cosine decay to a tenth.
    pub(super) fn lr_at(&self, step: usize, total: usize) -> f64 {
        let lr = self.cfg.lr;
        let w = self.cfg.warmup_steps;
        if step < w {
            return lr * (step + 1) as f64 / w as f64;
        }
        if !self.cfg.cosine_decay {
            return lr;
        }
        let p = (step - w) as f64 / (total.saturating_sub(w)).max(1) as f64;
        lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
    }

    /// Loss of one batch, with each level's codes and the residual entering it.
    #[allow(clippy::type_complexity)]
    pub(super) fn step_loss(
        &mut self,
        x: &Tensor,
    ) -> Result<(Tensor, f64, Vec<Vec<u32>>, Vec<Matrix>)> {
        let b = x.dim(0)?;
        let width = self.arch.width();
        let z = self.encode(x)?;
        let Levels {
            parts,
            codes,
            residuals,
            cb_loss,
        } = self.residual_quantize(&z)?;
        let mut recon: Option<Tensor> = None;
        for (kind, k) in self.arch.kinds.clone().iter().enumerate() {
            let l = k.levels.len();
            // This ID's share of each of its levels' codewords.
            let part = |level: usize| -> Result<Tensor> {
                let s = self.arch.level_span[level];
                narrow(&parts[level], (k.latent.0 - s.0, k.latent.1), s.1)
            };
            // Which levels each example reconstructs from (PLUM's progressive masking).
            let zq = match self.cfg.prefix_masking {
                PrefixMasking::None => {
                    let mut s = part(k.levels[0])?;
                    for &level in &k.levels[1..] {
                        s = (s + part(level)?)?;
                    }
                    s
                }
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
                    let m = Tensor::from_vec(m, (b, l), &Device::Cpu)?;
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
            let dec = &self.dec[kind];
            let r = z_st.contiguous()?.apply_op3(
                dec.params.as_tensor(),
                &target,
                MlpLossOp::new(&dec.widths, true),
            )?;
            recon = Some(match recon {
                None => r,
                Some(acc) => (acc + r)?,
            });
        }
        let recon = recon.expect("at least one decoder");
        let recon_v = recon.to_scalar::<f32>()? as f64;
        Ok(((recon + cb_loss)?, recon_v, codes, residuals))
    }

    /// Residual quantization of latents `z`: per level the exact nearest codeword of the
    /// detached residual of its span, r ← r − sg(e) on that span, with the codebook and
    /// commitment losses.
    pub(super) fn residual_quantize(&self, z: &Tensor) -> Result<Levels> {
        let l = self.codebooks.len();
        let width = self.arch.width();
        let mut r = z.clone();
        let mut out = Levels {
            parts: Vec::with_capacity(l),
            codes: Vec::with_capacity(l),
            residuals: Vec::with_capacity(l),
            cb_loss: Tensor::zeros((), DType::F32, &Device::Cpu)?,
        };
        for (level, cb) in self.codebooks.iter().enumerate() {
            let span = self.arch.level_span[level];
            let e_all = cb.as_tensor();
            let rs = narrow(&r, span, width)?;
            let rd = rs.detach();
            let rm = Matrix::from_tensor(&rd)?;
            let near = Codebook::new(Matrix::from_tensor(e_all)?)?.nearest(&rm, false)?;
            let idx = Tensor::from_slice(&near.index, near.index.len(), &Device::Cpu)?;
            let e = e_all.index_select(&idx, 0)?;
            out.cb_loss =
                (&out.cb_loss + mse(&rd, &e)? + (mse(&rs, &e.detach())? * self.cfg.beta)?)?;
            r = (r - place(&e.detach(), span, width)?)?;
            out.parts.push(e);
            out.codes.push(near.index);
            out.residuals.push(rm);
        }
        Ok(out)
    }

    /// Quantized latents (straight-through, all levels) of rows `idx`.
    pub(super) fn quantized_st(&self, idx: &[usize]) -> Result<Tensor> {
        let width = self.arch.width();
        let z = self.encode(&self.rows(idx)?)?;
        let parts = self.residual_quantize(&z)?.parts;
        let mut zq = place(&parts[0].detach(), self.arch.level_span[0], width)?;
        for (level, p) in parts.iter().enumerate().skip(1) {
            zq = (zq + place(&p.detach(), self.arch.level_span[level], width)?)?;
        }
        Ok((&z + (zq - &z)?.detach())?)
    }

    /// Symmetric InfoNCE over a random batch of co-occurring pairs, in-batch negatives:
    /// −½ [log softmax_j(cos(q_a, q_p_j)/τ) at the true partner + the same from the p side].
    pub(super) fn contrastive_loss(&mut self, batch: usize) -> Result<Tensor> {
        let b = batch.min(self.pairs.len());
        let chosen: Vec<(u32, u32)> = (0..b)
            .map(|_| self.pairs[self.rng.random_range(0..self.pairs.len())])
            .collect();
        let a: Vec<usize> = chosen.iter().map(|p| p.0 as usize).collect();
        let p: Vec<usize> = chosen.iter().map(|p| p.1 as usize).collect();
        let unit = |t: Tensor| -> Result<Tensor> {
            let n = (t.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?;
            Ok(t.broadcast_div(&n)?)
        };
        let qa = unit(self.quantized_st(&a)?)?;
        let qp = unit(self.quantized_st(&p)?)?;
        let logits = (qa.matmul(&qp.t()?)? / self.cfg.temperature)?;
        let target = Tensor::arange(0u32, b as u32, &Device::Cpu)?;
        let l1 = candle_nn::loss::cross_entropy(&logits, &target)?;
        let l2 = candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, &target)?;
        Ok(((l1 + l2)? * 0.5)?)
    }

    /// Re-seed every code no example used this epoch with a random residual of that level.
    pub(super) fn reset_dead_codes(
        &mut self,
        used: &[Vec<bool>],
        residuals: &[Option<Matrix>],
    ) -> Result<usize> {
        let mut count = 0;
        for (level, cb) in self.codebooks.iter().enumerate() {
            let dead: Vec<usize> = (0..used[level].len())
                .filter(|&k| !used[level][k])
                .collect();
            let Some(r) = &residuals[level] else { continue };
            if dead.is_empty() || r.rows == 0 {
                continue;
            }
            let mut m = Matrix::from_tensor(cb.as_tensor())?;
            for &k in &dead {
                let src = self.rng.random_range(0..r.rows);
                m.row_mut(k).copy_from_slice(r.row(src));
            }
            cb.set(&m.to_tensor()?)?;
            count += dead.len();
        }
        if count > 0 {
            tracing::debug!(count, "rq-vae: dead codes re-seeded");
        }
        Ok(count)
    }
}

/// Which of the trained variables (encoders, decoders, codebooks) holds a NaN or an infinity,
/// if any. Read in place: a copy of every weight each step would cost more than the check.
fn non_finite_weights(vars: &[Var]) -> Result<Option<String>> {
    use rayon::prelude::*;
    for (i, v) in vars.iter().enumerate() {
        let bad = crate::quant::cpu_data::with_data(v.as_tensor(), |s| {
            s.par_chunks(16 * 1024)
                .any(|c| c.iter().any(|x| !x.is_finite()))
        })?;
        if bad {
            return Ok(Some(format!(
                "parameter tensor {} of {} became NaN or infinite after the update",
                i + 1,
                vars.len()
            )));
        }
    }
    Ok(None)
}

/// A (rows × span width) tensor placed at `span` of a (rows × `width`) one, zeros elsewhere.
pub(super) fn place(t: &Tensor, span: Span, width: usize) -> Result<Tensor> {
    if span == (0, width) {
        Ok(t.clone())
    } else {
        Ok(t.pad_with_zeros(1, span.0, width - span.0 - span.1)?)
    }
}

/// What residual quantization of one batch gives, level by level.
pub(super) struct Levels {
    /// Chosen codewords (gradients reach the codebooks through these), each as wide as its
    /// level's span.
    pub(super) parts: Vec<Tensor>,
    pub(super) codes: Vec<Vec<u32>>,
    /// The (detached) residual entering each level.
    pub(super) residuals: Vec<Matrix>,
    /// Σ_l mse(sg(r), e) + β·mse(r, sg(e)).
    pub(super) cb_loss: Tensor,
}
