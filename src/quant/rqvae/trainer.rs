//! Training: candle variables, the MLPs, AdamW, dead-code resets and the checkpoint kept by
//! evaluation. What differs between the tuned CPU path and the device-generic path
//! ([`Backend`]) is chosen at a few seams (the MLP, the decoder's loss, the nearest-codeword
//! search, the optimiser and the epoch loop); the losses, masking, contrastive term and
//! schedule are one piece of code for both (the losses in `losses.rs`). The generic epoch loop
//! and its pieces are in `generic.rs`.

use super::arch::*;
use super::dense::*;
use super::eval::*;
use super::model::*;
use super::store::*;
use crate::device::DeviceKind;
use crate::error::{Error, Result};
use crate::matrix::Matrix;
use crate::progress::Progress;
use crate::quant::adamw::{FusedAdamW, TensorAdamW, clip_scale};
use crate::quant::config::{Method, QuantizerConfig, RqVaeConfig};
use crate::quant::distance::Codebook;
use crate::quant::gensar::DualSpec;
use crate::quant::kmeans::{self, KMeansConfig};
use crate::quant::mlp::{self, MlpLossOp, MlpOp};
use crate::quant::store;
use candle_core::{Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where and how training runs.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The tuned CPU path: the fused MLP ops of `quant/mlp.rs`, [`FusedAdamW`], the exact
    /// host nearest-codeword search.
    Tuned,
    /// Ordinary candle tensor ops and autograd on this device (`--device cuda`/`metal`; the
    /// CPU backend in tests), [`TensorAdamW`], an argmin over distance GEMMs.
    Generic(Device),
}

impl Backend {
    /// The backend a config asks for: the tuned path for `cpu`, the generic one elsewhere.
    pub(crate) fn of(cfg: &QuantizerConfig) -> Result<Backend> {
        match cfg.device {
            DeviceKind::Cpu => Ok(Backend::Tuned),
            kind => Ok(Backend::Generic(crate::device::open(kind)?)),
        }
    }

    /// The device the variables live on.
    pub(super) fn device(&self) -> Device {
        match self {
            Backend::Tuned => Device::Cpu,
            Backend::Generic(d) => d.clone(),
        }
    }

    pub(super) fn is_generic(&self) -> bool {
        matches!(self, Backend::Generic(_))
    }
}

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
    pub(super) backend: Backend,
    /// The variables' device (CPU for the tuned path).
    pub(super) device: Device,
    /// The training rows on the device (generic path only).
    pub(super) xd: Option<Tensor>,
}

/// He-uniform weights and zero biases, layer by layer, from our own RNG (candle's random init
/// is not seedable on the CPU).
pub(super) fn mlp_vars(rng: &mut ChaCha8Rng, widths: &[usize], device: &Device) -> Result<Mlp> {
    let mut p = Vec::with_capacity(mlp::param_count(widths));
    for io in widths.windows(2) {
        let (inp, out) = (io[0], io[1]);
        let bound = (6.0 / inp as f64).sqrt() as f32;
        p.extend((0..inp * out).map(|_| rng.random_range(-bound..bound)));
        p.extend(std::iter::repeat_n(0f32, out));
    }
    let n = p.len();
    Ok(Mlp {
        params: Var::from_tensor(&Tensor::from_vec(p, n, device)?)?,
        widths: widths.to_vec(),
    })
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
        backend: Backend,
    ) -> Result<Self> {
        let v = cfg.rqvae.clone();
        let device = backend.device();
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
            .map(|s| mlp_vars(&mut rng, &widths(s.1, &v.hidden, v.latent_dim), &device))
            .collect::<Result<_>>()?;
        let dec = arch
            .kinds
            .iter()
            .map(|k| {
                let mut w = widths(k.input.1, &v.hidden, k.latent.1);
                w.reverse();
                mlp_vars(&mut rng, &w, &device)
            })
            .collect::<Result<_>>()?;
        let xd = match &backend {
            Backend::Tuned => None,
            Backend::Generic(d) => Some(kmeans::device::upload(x, d)?),
        };
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
            backend,
            device,
            xd,
        })
    }

    /// Rows `idx` of the training data as a tensor on the variables' device.
    pub(super) fn rows(&self, idx: &[usize]) -> Result<Tensor> {
        match &self.xd {
            None => {
                let m = self.x.gather(idx);
                Ok(Tensor::from_vec(m.data, (m.rows, m.cols), &Device::Cpu)?)
            }
            Some(xd) => {
                let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
                let n = idx.len();
                Ok(xd.index_select(&Tensor::from_vec(idx, n, &self.device)?, 0)?)
            }
        }
    }

    /// An MLP on a batch; `input_grad`: whether the input needs a gradient (not for raw data;
    /// the generic path leaves that to autograd).
    pub(super) fn forward_mlp(&self, m: &Mlp, x: &Tensor, input_grad: bool) -> Result<Tensor> {
        match self.backend {
            Backend::Tuned => {
                Ok(x.apply_op2(m.params.as_tensor(), MlpOp::new(&m.widths, input_grad))?)
            }
            Backend::Generic(_) => super::generic::mlp_flat(m.params.as_tensor(), &m.widths, x),
        }
    }

    /// Decoder `kind`'s reconstruction loss mean((dec(z) − target)²), with gradients to `z`
    /// and the decoder.
    pub(super) fn decoder_loss(&self, kind: usize, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        let dec = &self.dec[kind];
        match self.backend {
            Backend::Tuned => Ok(z.contiguous()?.apply_op3(
                dec.params.as_tensor(),
                target,
                MlpLossOp::new(&dec.widths, true),
            )?),
            Backend::Generic(_) => mse(&self.forward_mlp(dec, z, true)?, target),
        }
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
                self.forward_mlp(e, &xi, false)
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
        if self.backend.is_generic() {
            return self.init_codebooks_generic(order);
        }
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
        let bs = self.cfg.batch_size.min(n);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        self.init_codebooks(&order)?;
        let mut vars: Vec<Var> = Vec::new();
        vars.extend(self.enc.iter().chain(&self.dec).map(|m| m.params.clone()));
        vars.extend(self.codebooks.iter().cloned());
        let mut opt = match self.backend {
            Backend::Tuned => Optimiser::Fused(FusedAdamW::new(
                vars.clone(),
                self.cfg.lr,
                self.cfg.weight_decay,
            )),
            Backend::Generic(_) => Optimiser::Tensor(TensorAdamW::new(
                vars.clone(),
                self.cfg.lr,
                self.cfg.weight_decay,
            )?),
        };
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
            let clock = std::time::Instant::now();
            let run = Steps {
                order: &order,
                bs,
                total_steps,
                vars: &vars,
                epoch,
                name,
            };
            let out = match &mut opt {
                Optimiser::Fused(o) => self.epoch_tuned(&run, &mut step, o)?,
                Optimiser::Tensor(o) => self.epoch_generic(&run, &mut step, o)?,
            };
            resets += self.reset_dead_codes(&out.used, &out.last_residuals)?;
            epoch_seconds.push(clock.elapsed().as_secs_f64());
            epochs_run = epoch;
            progress.advance(1);
            let loss = out.sum_loss / n as f64;
            tracing::debug!(
                epoch,
                loss,
                recon = out.sum_recon / n as f64,
                contrastive = out.sum_con / n as f64,
                "rq-vae epoch"
            );
            if epoch % self.cfg.eval_every == 0 || epoch == self.cfg.epochs {
                let snap = self.snapshot(Vec::new(), epoch, epoch, resets)?;
                let e = match &self.xd {
                    None => evaluate(&snap, self.x, epoch, loss)?,
                    Some(xd) => evaluate_on(&snap, self.x, xd, epoch, loss)?,
                };
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

    /// One epoch on the tuned CPU path: each step's loss is read as soon as it is made, and a
    /// step that diverges stops training there.
    fn epoch_tuned(
        &mut self,
        run: &Steps,
        step: &mut usize,
        opt: &mut FusedAdamW,
    ) -> Result<EpochOut> {
        let (epoch, name, vars) = (run.epoch, run.name, run.vars);
        let mut used = self
            .sizes
            .iter()
            .map(|&k| vec![false; k])
            .collect::<Vec<_>>();
        let mut last_residuals: Vec<Option<Tensor>> = vec![None; self.sizes.len()];
        let (mut sum_loss, mut sum_recon, mut sum_con) = (0.0, 0.0, 0.0);
        let mut parts_s = [0f64; 4];
        for batch in run.order.chunks(run.bs) {
            let lr = self.lr_at(*step, run.total_steps);
            opt.lr = lr;
            let t0 = std::time::Instant::now();
            let x = self.rows(batch)?;
            let masks = self.mask_tensors(batch.len())?;
            let (mut loss, recon, codes, residuals) = self.step_loss(&x, &masks)?;
            let recon = recon.to_scalar::<f32>()? as f64;
            if self.contrastive_on() {
                let con = self.contrastive_loss(run.bs)?;
                sum_con += con.to_scalar::<f32>()? as f64 * batch.len() as f64;
                loss = (loss + (con * self.cfg.contrastive_weight)?)?;
            }
            let loss_v = loss.to_scalar::<f32>()?;
            if !loss_v.is_finite() {
                return Err(self.diverged(
                    name,
                    epoch,
                    *step + 1,
                    &format!("the loss is {loss_v}"),
                ));
            }
            let t1 = std::time::Instant::now();
            let grads = loss.backward()?;
            let t2 = std::time::Instant::now();
            let scale = if self.cfg.grad_clip > 0.0 {
                clip_scale(&grads, vars, self.cfg.grad_clip)?
            } else {
                1.0
            };
            let t3 = std::time::Instant::now();
            opt.step(&grads, scale)?;
            // A finite loss can still come with an update that overflows the weights (a
            // huge learning rate); the next loss would be NaN, but stop at the step that
            // broke them.
            if let Some(what) = non_finite_weights(vars)? {
                return Err(self.diverged(name, epoch, *step + 1, &what));
            }
            let t4 = std::time::Instant::now();
            parts_s[0] += (t1 - t0).as_secs_f64();
            parts_s[1] += (t2 - t1).as_secs_f64();
            parts_s[2] += (t3 - t2).as_secs_f64();
            parts_s[3] += (t4 - t3).as_secs_f64();
            *step += 1;
            sum_loss += loss_v as f64 * batch.len() as f64;
            sum_recon += recon * batch.len() as f64;
            for (level, c) in codes.iter().enumerate() {
                c.to_vec1::<u32>()?
                    .iter()
                    .for_each(|&k| used[level][k as usize] = true);
            }
            last_residuals = residuals.into_iter().map(Some).collect();
        }
        tracing::debug!(
            forward_s = parts_s[0],
            backward_s = parts_s[1],
            clip_s = parts_s[2],
            optimiser_s = parts_s[3],
            "rq-vae epoch time split"
        );
        Ok(EpochOut {
            sum_loss,
            sum_recon,
            sum_con,
            used,
            last_residuals,
        })
    }

    /// Whether the co-occurrence contrastive term is trained.
    pub(super) fn contrastive_on(&self) -> bool {
        !self.pairs.is_empty() && self.cfg.contrastive_weight > 0.0
    }

    /// The error that stops diverged training: where it happened, and what to change.
    pub(super) fn diverged(&self, name: &str, epoch: usize, step: usize, what: &str) -> Error {
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

    /// Re-seed every code no example used this epoch with a random residual of that level
    /// (from the epoch's last batch), on the codebooks' own device.
    pub(super) fn reset_dead_codes(
        &mut self,
        used: &[Vec<bool>],
        residuals: &[Option<Tensor>],
    ) -> Result<usize> {
        let mut count = 0;
        for (level, cb) in self.codebooks.iter().enumerate() {
            let k = used[level].len();
            let dead: Vec<usize> = (0..k).filter(|&c| !used[level][c]).collect();
            let Some(r) = &residuals[level] else { continue };
            let rows = r.dim(0)?;
            if dead.is_empty() || rows == 0 {
                continue;
            }
            // Row c of the new codebook is row map[c] of [codebook; picked residuals].
            let mut map: Vec<u32> = (0..k as u32).collect();
            let mut src = Vec::with_capacity(dead.len());
            for (j, &c) in dead.iter().enumerate() {
                src.push(self.rng.random_range(0..rows) as u32);
                map[c] = (k + j) as u32;
            }
            let dev = cb.device();
            let n = src.len();
            let picked = r
                .contiguous()?
                .index_select(&Tensor::from_vec(src, n, dev)?, 0)?;
            let new = Tensor::cat(&[cb.as_tensor(), &picked], 0)?
                .index_select(&Tensor::from_vec(map, k, dev)?, 0)?;
            cb.set(&new)?;
            count += dead.len();
        }
        if count > 0 {
            tracing::debug!(count, "rq-vae: dead codes re-seeded");
        }
        Ok(count)
    }
}

/// The optimiser of each backend.
enum Optimiser {
    Fused(FusedAdamW),
    Tensor(TensorAdamW),
}

/// What every epoch's loop needs besides the trainer.
pub(super) struct Steps<'r> {
    /// This epoch's order of the training rows; batches are its chunks of `bs`.
    pub(super) order: &'r [usize],
    pub(super) bs: usize,
    pub(super) total_steps: usize,
    /// Every trained variable, in the optimiser's order.
    pub(super) vars: &'r [Var],
    pub(super) epoch: usize,
    /// "rq-vae" or "gensar", for messages.
    pub(super) name: &'r str,
}

/// What one epoch of steps gives the end-of-epoch work.
pub(super) struct EpochOut {
    /// Σ over steps of the step's loss (its parts) × its batch size.
    pub(super) sum_loss: f64,
    pub(super) sum_recon: f64,
    pub(super) sum_con: f64,
    /// Per level, which codes some example chose this epoch.
    pub(super) used: Vec<Vec<bool>>,
    /// Per level, the (detached) residuals of the epoch's last batch.
    pub(super) last_residuals: Vec<Option<Tensor>>,
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
            return Ok(Some(non_finite_message(i, vars.len())));
        }
    }
    Ok(None)
}

/// What the divergence error says about variable `i` (0-based) of `n`.
pub(super) fn non_finite_message(i: usize, n: usize) -> String {
    format!(
        "parameter tensor {} of {n} became NaN or infinite after the update",
        i + 1
    )
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
    /// Each row's code (u32, on the variables' device).
    pub(super) codes: Vec<Tensor>,
    /// The (detached) residual entering each level.
    pub(super) residuals: Vec<Tensor>,
    /// Σ_l mse(sg(r), e) + β·mse(r, sg(e)).
    pub(super) cb_loss: Tensor,
}
