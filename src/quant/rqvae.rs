//! RQ-VAE (TIGER): an MLP autoencoder whose latent is residual-quantized, trained end to end
//! with candle's autograd; METHODS.md §3, with PLUM's progressive prefix masking and
//! co-occurrence contrastive alignment (§4).
//!
//! The same engine trains GenSAR's dual quantizer (§5, [`crate::quant::gensar`]): an [`Arch`]
//! says which input columns each encoder reads, which latent columns each codebook level
//! quantizes, and which latent and input columns each decoder maps between. Plain RQ-VAE is
//! one encoder, full-width levels and one decoder; GenSAR is two encoders, shared full-width
//! levels, then semantic and collaborative levels on the two halves, and two decoders.
//!
//! Training runs on candle tensors (autograd; AdamW fused in `adamw.rs`). Inference (`encode`, `decode`) runs on
//! plain matrices through the same GEMM seam and exact nearest-codeword search as RQ-KMeans, so
//! `assign` is fast, multi-threaded and bit-identical however rows are batched.
//! Every random choice (weight init, shuffling, masks, dead-code resets) comes from one seeded
//! ChaCha8 stream: the same data, config and seed give the same model and codes on CPU, for
//! any thread count. Across CPUs that get different GEMM kernels (AVX-512 or AVX2, picked at
//! run time) the weights may round differently.

use crate::config::{Method, PrefixMasking, QuantizerConfig, RqVaeConfig};
use crate::error::{Error, Result};
use crate::gemm::sgemm;
use crate::ids::kind::IdKind;
use crate::matrix::Matrix;
use crate::progress::Progress;
use crate::quant::adamw::{FusedAdamW, clip_scale};
use crate::quant::distance::Codebook;
use crate::quant::gensar::DualSpec;
use crate::quant::kmeans::{self, KMeansConfig};
use crate::quant::mlp::{self, MlpLossOp, MlpOp};
use crate::quant::{Quantizer, store};
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One evaluation during training, kept in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub epoch: usize,
    pub loss: f64,
    /// Mean squared reconstruction error per component over all training rows (all levels);
    /// for GenSAR the sum of the semantic and the collaborative one.
    pub recon_mse: f64,
    /// Share of items whose full code tuple (the SID's, for GenSAR) another item also has
    /// (before any dedup).
    pub collision_rate: f64,
    /// GenSAR: the same for CIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid_collision_rate: Option<f64>,
    pub utilisation: Vec<f64>,
    pub entropy_bits: Vec<f64>,
}

impl Evaluation {
    /// What ties between equal reconstruction errors are broken by.
    fn collisions(&self) -> f64 {
        self.collision_rate + self.cid_collision_rate.unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RqVaeSaved {
    pub method: Method,
    pub format_version: u32,
    pub sidtool_version: String,
    /// Input width (for GenSAR: semantic + collaborative).
    pub dim: usize,
    /// K_l of every level (for GenSAR: shared, then semantic, then collaborative levels).
    pub codebook_sizes: Vec<usize>,
    pub hidden: Vec<usize>,
    /// Latent width of each encoder.
    pub latent_dim: usize,
    /// GenSAR's level split and input split; absent for plain RQ-VAE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual: Option<DualSpec>,
    pub seed: u64,
    pub train: RqVaeConfig,
    pub train_rows: usize,
    pub epochs_run: usize,
    /// The checkpoint kept: lowest reconstruction error, ties broken by lower collision rate.
    pub best_epoch: usize,
    pub evaluations: Vec<Evaluation>,
    pub dead_code_resets: usize,
    /// Wall seconds of each epoch's optimiser steps (evaluations excluded).
    #[serde(default)]
    pub epoch_seconds: Vec<f64>,
}

/// A column range: (offset, width).
type Span = (usize, usize);

/// One decoder and the ID it reconstructs from.
#[derive(Debug, Clone)]
struct Kind {
    /// Levels of this ID, in order (indices into all levels).
    levels: Vec<usize>,
    /// Latent columns the decoder reads.
    latent: Span,
    /// Input columns it reconstructs.
    input: Span,
}

/// Where every part of the model sits (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Arch {
    /// Input columns of each encoder; their latents are concatenated in this order.
    enc_in: Vec<Span>,
    latent: usize,
    /// Latent columns of each level.
    level_span: Vec<Span>,
    kinds: Vec<Kind>,
}

impl Arch {
    fn of(dim: usize, latent: usize, levels: usize, dual: Option<&DualSpec>) -> Arch {
        match dual {
            None => Arch {
                enc_in: vec![(0, dim)],
                latent,
                level_span: vec![(0, latent); levels],
                kinds: vec![Kind {
                    levels: (0..levels).collect(),
                    latent: (0, latent),
                    input: (0, dim),
                }],
            },
            Some(d) => {
                let sem = (0, d.semantic_dim);
                let col = (d.semantic_dim, dim - d.semantic_dim);
                let mut level_span = vec![(0, 2 * latent); d.shared_levels];
                level_span.extend(std::iter::repeat_n((0, latent), d.semantic_levels));
                level_span.extend(std::iter::repeat_n((latent, latent), d.collab_levels));
                Arch {
                    enc_in: vec![sem, col],
                    latent,
                    level_span,
                    kinds: vec![
                        Kind {
                            levels: d.kind_levels(IdKind::Sid),
                            latent: (0, latent),
                            input: sem,
                        },
                        Kind {
                            levels: d.kind_levels(IdKind::Cid),
                            latent: (latent, latent),
                            input: col,
                        },
                    ],
                }
            }
        }
    }

    /// Width of the concatenated latent.
    fn width(&self) -> usize {
        self.latent * self.enc_in.len()
    }

    /// Names of the encoder and decoder MLPs in model.safetensors (plain RQ-VAE keeps the
    /// unqualified names of format version 1).
    fn mlp_names(&self) -> (Vec<String>, Vec<String>) {
        if self.enc_in.len() == 1 {
            (vec!["encoder".into()], vec!["decoder".into()])
        } else {
            (
                vec!["encoder.semantic".into(), "encoder.collab".into()],
                vec!["decoder.semantic".into(), "decoder.collab".into()],
            )
        }
    }
}

/// A dense layer for inference: W (out, in) row-major and bias.
#[derive(Clone)]
struct Dense {
    w: Matrix,
    b: Vec<f32>,
}

impl Dense {
    fn forward(&self, x: &Matrix, relu: bool) -> Matrix {
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

fn mlp(layers: &[Dense], x: &Matrix) -> Matrix {
    let mut h = x.clone();
    for (i, l) in layers.iter().enumerate() {
        h = l.forward(&h, i + 1 < layers.len());
    }
    h
}

/// Subtract (or add) codeword `e` from the span of one row.
fn shift(row: &mut [f32], span: Span, e: &[f32], sign: f32) {
    row[span.0..span.0 + span.1]
        .iter_mut()
        .zip(e)
        .for_each(|(v, e)| *v += sign * e);
}

/// A trained RQ-VAE (or GenSAR dual quantizer).
#[derive(Clone)]
pub struct RqVae {
    config: RqVaeSaved,
    arch: Arch,
    /// One MLP per encoder, one per decoder.
    enc: Vec<Vec<Dense>>,
    dec: Vec<Vec<Dense>>,
    codebooks: Vec<Codebook>,
}

/// Layer widths in → … → out of an encoder (the decoder is the reverse).
fn widths(dim: usize, hidden: &[usize], latent: usize) -> Vec<usize> {
    let mut w = vec![dim];
    w.extend_from_slice(hidden);
    w.push(latent);
    w
}

impl RqVae {
    pub fn saved(&self) -> &RqVaeSaved {
        &self.config
    }

    /// Train with co-occurring row pairs of `x` for PLUM's contrastive alignment (symmetric
    /// InfoNCE over the quantized latents, in-batch negatives, weight `contrastive_weight`).
    pub fn fit_with_pairs(
        x: &Matrix,
        cfg: &QuantizerConfig,
        seed: u64,
        pairs: &[(u32, u32)],
        progress: &dyn Progress,
    ) -> Result<Self> {
        Self::fit_arch(x, cfg, None, seed, pairs, progress)
    }

    /// Train plain RQ-VAE (`dual` = None) or GenSAR's dual quantizer on the rows of `x`.
    pub(crate) fn fit_arch(
        x: &Matrix,
        cfg: &QuantizerConfig,
        dual: Option<DualSpec>,
        seed: u64,
        pairs: &[(u32, u32)],
        progress: &dyn Progress,
    ) -> Result<Self> {
        let mut t = Trainer::new(x, cfg, dual, seed)?;
        t.pairs = pairs.to_vec();
        t.run(progress)
    }

    /// Concatenated latents of `x`.
    fn latent(&self, x: &Matrix) -> Matrix {
        let parts: Vec<Matrix> = self
            .enc
            .iter()
            .zip(&self.arch.enc_in)
            .map(|(e, &(o, w))| mlp(e, &x.columns(o, w)))
            .collect();
        Matrix::hcat(&parts.iter().collect::<Vec<_>>())
    }

    /// Codes of latents: level by level, the nearest codeword to the residual of its span.
    fn quantize(&self, z: &Matrix) -> Result<Vec<u16>> {
        let l = self.codebooks.len();
        let mut codes = vec![0u16; z.rows * l];
        let mut r = z.clone();
        for (level, cb) in self.codebooks.iter().enumerate() {
            let span = self.arch.level_span[level];
            let near = cb.nearest(&r.columns(span.0, span.1), false)?;
            for (i, &c) in near.index.iter().enumerate() {
                codes[i * l + level] = c as u16;
                shift(r.row_mut(i), span, cb.centroids.row(c as usize), -1.0);
            }
        }
        Ok(codes)
    }

    /// Sum of the codewords of the chosen levels of each row: the quantized latent.
    fn latent_of_codes(&self, codes: &[u16], levels: &[usize]) -> Result<Matrix> {
        let l = self.codebooks.len();
        if levels.iter().any(|&v| v >= l) || !codes.len().is_multiple_of(l.max(1)) {
            return Err(Error::Config(format!(
                "decode: levels {levels:?} or code count {} do not fit {l} levels",
                codes.len()
            )));
        }
        let rows = codes.len() / l;
        let mut z = Matrix::zeros(rows, self.arch.width());
        for i in 0..rows {
            for &level in levels {
                let cb = &self.codebooks[level];
                let c = codes[i * l + level] as usize;
                if c >= cb.len() {
                    return Err(Error::Config(format!(
                        "code {c} at level {} is outside the codebook of {}",
                        level + 1,
                        cb.len()
                    )));
                }
                shift(
                    z.row_mut(i),
                    self.arch.level_span[level],
                    cb.centroids.row(c),
                    1.0,
                );
            }
        }
        Ok(z)
    }

    /// What decoder `kind` reconstructs (its input columns) from the quantized latent `z`.
    fn decode_latent(&self, z: &Matrix, kind: usize) -> Matrix {
        let k = &self.arch.kinds[kind];
        mlp(&self.dec[kind], &z.columns(k.latent.0, k.latent.1))
    }

    /// Reconstruction of ID kind `kind`'s input columns from the first `depth` codes of that
    /// ID (`codes` holds all levels, rows × L).
    pub fn decode_kind(&self, codes: &[u16], kind: usize, depth: usize) -> Result<Matrix> {
        let k = self
            .arch
            .kinds
            .get(kind)
            .ok_or_else(|| Error::Config(format!("this quantizer has no ID kind {kind}")))?;
        if depth > k.levels.len() {
            return Err(Error::Config(format!(
                "decode: depth {depth} exceeds the {} levels of the ID",
                k.levels.len()
            )));
        }
        let z = self.latent_of_codes(codes, &k.levels[..depth])?;
        Ok(self.decode_latent(&z, kind))
    }
}

impl Quantizer for RqVae {
    fn method(&self) -> Method {
        self.config.method
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    fn codebook_sizes(&self) -> &[usize] {
        &self.config.codebook_sizes
    }

    fn dual(&self) -> Option<&DualSpec> {
        self.config.dual.as_ref()
    }

    fn fit(x: &Matrix, cfg: &QuantizerConfig, seed: u64, progress: &dyn Progress) -> Result<Self> {
        Self::fit_with_pairs(x, cfg, seed, &[], progress)
    }

    fn encode(&self, x: &Matrix) -> Result<Vec<u16>> {
        self.quantize(&self.latent(x))
    }

    fn decode_prefix(&self, codes: &[u16], depth: usize) -> Result<Matrix> {
        let levels: Vec<usize> = (0..depth).collect();
        let z = self.latent_of_codes(codes, &levels)?;
        let parts: Vec<Matrix> = (0..self.arch.kinds.len())
            .map(|k| self.decode_latent(&z, k))
            .collect();
        Ok(Matrix::hcat(&parts.iter().collect::<Vec<_>>()))
    }

    fn decode_id(&self, codes: &[u16], kind: IdKind, depth: usize) -> Result<Matrix> {
        match (self.config.dual.is_some(), kind) {
            (true, _) => self.decode_kind(codes, kind.index(), depth),
            (false, IdKind::Sid) => self.decode_kind(codes, 0, depth),
            (false, IdKind::Cid) => Err(Error::Config("rq-vae makes no CIDs".into())),
        }
    }

    fn level_distances(&self, x: &Matrix, codes: &[u16], level: usize) -> Result<Vec<f32>> {
        let span = self.arch.level_span[level];
        // The levels before this one whose codewords overlap its span made its residual.
        let before: Vec<usize> = (0..level)
            .filter(|&j| {
                let s = self.arch.level_span[j];
                s.0 < span.0 + span.1 && span.0 < s.0 + s.1
            })
            .collect();
        let mut r = self.latent(x);
        let q = self.latent_of_codes(codes, &before)?;
        r.data.iter_mut().zip(&q.data).for_each(|(v, b)| *v -= b);
        self.codebooks[level].all_distances(&r.columns(span.0, span.1))
    }

    fn fingerprint(&self) -> String {
        let mut blocks: Vec<&[f32]> = Vec::new();
        for d in self.enc.iter().chain(&self.dec).flatten() {
            blocks.push(&d.w.data);
            blocks.push(&d.b);
        }
        blocks.extend(self.codebooks.iter().map(|c| c.centroids.data.as_slice()));
        crate::quant::fingerprint_of(self.config.method, blocks)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut t = HashMap::new();
        let (enc_names, dec_names) = self.arch.mlp_names();
        let all = enc_names
            .iter()
            .zip(&self.enc)
            .chain(dec_names.iter().zip(&self.dec));
        for (name, layers) in all {
            for (i, d) in layers.iter().enumerate() {
                t.insert(format!("{name}.{i}.weight"), d.w.to_tensor()?);
                t.insert(
                    format!("{name}.{i}.bias"),
                    Tensor::from_slice(&d.b, d.b.len(), &Device::Cpu)?,
                );
            }
        }
        for (l, cb) in self.codebooks.iter().enumerate() {
            t.insert(format!("codebooks.{l}"), cb.centroids.to_tensor()?);
        }
        store::save(dir, &self.config, &t)
    }

    fn load(dir: &Path) -> Result<Self> {
        let config: RqVaeSaved = store::read_config(dir)?;
        let expect = if config.dual.is_some() {
            Method::Gensar
        } else {
            Method::RqVae
        };
        if config.method != expect {
            return Err(Error::artifact(
                dir,
                format!("config.json does not describe an {} model", expect.name()),
            ));
        }
        if let Some(d) = &config.dual {
            d.check(config.dim, config.codebook_sizes.len())
                .map_err(|e| Error::artifact(dir, e.to_string()))?;
        }
        let arch = Arch::of(
            config.dim,
            config.latent_dim,
            config.codebook_sizes.len(),
            config.dual.as_ref(),
        );
        let t = store::load_tensors(dir)?;
        let layer = |name: &str, i: usize, inp: usize, out: usize| -> Result<Dense> {
            let wt = store::take(&t, dir, &format!("{name}.{i}.weight"), &[out, inp])?;
            let b = store::take(&t, dir, &format!("{name}.{i}.bias"), &[out])?;
            Ok(Dense {
                w: Matrix::from_tensor(&wt)?,
                b: b.to_vec1()?,
            })
        };
        let mlp_of = |name: &str, w: &[usize]| -> Result<Vec<Dense>> {
            (0..w.len() - 1)
                .map(|i| layer(name, i, w[i], w[i + 1]))
                .collect()
        };
        let (enc_names, dec_names) = arch.mlp_names();
        let enc = arch
            .enc_in
            .iter()
            .zip(&enc_names)
            .map(|(s, name)| mlp_of(name, &widths(s.1, &config.hidden, config.latent_dim)))
            .collect::<Result<_>>()?;
        let dec = arch
            .kinds
            .iter()
            .zip(&dec_names)
            .map(|(k, name)| {
                let mut w = widths(k.input.1, &config.hidden, k.latent.1);
                w.reverse();
                mlp_of(name, &w)
            })
            .collect::<Result<_>>()?;
        let codebooks = config
            .codebook_sizes
            .iter()
            .enumerate()
            .map(|(l, &k)| {
                let width = arch.level_span[l].1;
                let c = store::take(&t, dir, &format!("codebooks.{l}"), &[k, width])?;
                Codebook::new(Matrix::from_tensor(&c)?)
            })
            .collect::<Result<_>>()?;
        Ok(RqVae {
            config,
            arch,
            enc,
            dec,
            codebooks,
        })
    }
}

/// One MLP's parameters, all layers in one variable (see `quant/mlp.rs`).
struct Mlp {
    params: Var,
    widths: Vec<usize>,
}

/// Training state: candle variables, optimiser, RNG.
struct Trainer<'a> {
    x: &'a Matrix,
    cfg: RqVaeConfig,
    sizes: Vec<usize>,
    dual: Option<DualSpec>,
    arch: Arch,
    seed: u64,
    rng: ChaCha8Rng,
    enc: Vec<Mlp>,
    dec: Vec<Mlp>,
    codebooks: Vec<Var>,
    pairs: Vec<(u32, u32)>,
}

/// He-uniform weights and zero biases, layer by layer, from our own RNG (candle's random init
/// is not seedable on the CPU).
fn mlp_vars(rng: &mut ChaCha8Rng, widths: &[usize]) -> Result<Mlp> {
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
fn forward_mlp(m: &Mlp, x: &Tensor, input_grad: bool) -> Result<Tensor> {
    Ok(x.apply_op2(m.params.as_tensor(), MlpOp::new(&m.widths, input_grad))?)
}

fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.mean_all()?)
}

/// Columns `span` of a (rows × `width`) tensor; the tensor itself when the span is all of it.
fn narrow(t: &Tensor, span: Span, width: usize) -> Result<Tensor> {
    if span == (0, width) {
        Ok(t.clone())
    } else {
        Ok(t.narrow(1, span.0, span.1)?)
    }
}

fn to_dense(m: &Mlp) -> Result<Vec<Dense>> {
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
    fn new(
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

    fn rows(&self, idx: &[usize]) -> Result<Tensor> {
        let m = self.x.gather(idx);
        Ok(Tensor::from_vec(m.data, (m.rows, m.cols), &Device::Cpu)?)
    }

    /// The concatenated latent of a batch of input rows.
    fn encode(&self, x: &Tensor) -> Result<Tensor> {
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
    fn init_codebooks(&mut self, order: &[usize]) -> Result<()> {
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

    fn snapshot(
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

    fn run(mut self, progress: &dyn Progress) -> Result<RqVae> {
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
                let t4 = std::time::Instant::now();
                parts_s[0] += (t1 - t0).as_secs_f64();
                parts_s[1] += (t2 - t1).as_secs_f64();
                parts_s[2] += (t3 - t2).as_secs_f64();
                parts_s[3] += (t4 - t3).as_secs_f64();
                step += 1;
                sum_loss += loss.to_scalar::<f32>()? as f64 * batch.len() as f64;
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

    /// Linear warm-up, then optional cosine decay to a tenth.
    fn lr_at(&self, step: usize, total: usize) -> f64 {
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
    fn step_loss(&mut self, x: &Tensor) -> Result<(Tensor, f64, Vec<Vec<u32>>, Vec<Matrix>)> {
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
    fn residual_quantize(&self, z: &Tensor) -> Result<Levels> {
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
    fn quantized_st(&self, idx: &[usize]) -> Result<Tensor> {
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
    fn contrastive_loss(&mut self, batch: usize) -> Result<Tensor> {
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
    fn reset_dead_codes(
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

/// A (rows × span width) tensor placed at `span` of a (rows × `width`) one, zeros elsewhere.
fn place(t: &Tensor, span: Span, width: usize) -> Result<Tensor> {
    if span == (0, width) {
        Ok(t.clone())
    } else {
        Ok(t.pad_with_zeros(1, span.0, width - span.0 - span.1)?)
    }
}

/// What residual quantization of one batch gives, level by level.
struct Levels {
    /// Chosen codewords (gradients reach the codebooks through these), each as wide as its
    /// level's span.
    parts: Vec<Tensor>,
    codes: Vec<Vec<u32>>,
    /// The (detached) residual entering each level.
    residuals: Vec<Matrix>,
    /// Σ_l mse(sg(r), e) + β·mse(r, sg(e)).
    cb_loss: Tensor,
}

/// Share of rows whose code tuple over `levels` another row also has.
fn collision_rate(codes: &[u16], l: usize, levels: &[usize]) -> f64 {
    let rows = codes.len() / l.max(1);
    let mut groups: HashMap<Vec<u16>, usize> = HashMap::new();
    for row in codes.chunks(l) {
        *groups
            .entry(levels.iter().map(|&j| row[j]).collect())
            .or_default() += 1;
    }
    let colliding: usize = groups.values().filter(|&&c| c > 1).sum();
    colliding as f64 / rows.max(1) as f64
}

/// Reconstruction error, pre-dedup collision rate, utilisation and entropy over all rows.
fn evaluate(m: &RqVae, x: &Matrix, epoch: usize, loss: f64) -> Result<Evaluation> {
    let codes = m.encode(x)?;
    let l = m.levels();
    let mut recon_mse = 0.0;
    for (kind, k) in m.arch.kinds.iter().enumerate() {
        let xh = m.decode_kind(&codes, kind, k.levels.len())?;
        let xs = x.columns(k.input.0, k.input.1);
        recon_mse += xs
            .data
            .iter()
            .zip(&xh.data)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / xs.data.len().max(1) as f64;
    }
    let rates: Vec<f64> = m
        .arch
        .kinds
        .iter()
        .map(|k| collision_rate(&codes, l, &k.levels))
        .collect();
    let mut utilisation = Vec::new();
    let mut entropy_bits = Vec::new();
    for (level, &k) in m.codebook_sizes().iter().enumerate() {
        let mut counts = vec![0usize; k];
        codes.chunks(l).for_each(|r| counts[r[level] as usize] += 1);
        utilisation.push(counts.iter().filter(|&&c| c > 0).count() as f64 / k as f64);
        let n = x.rows as f64;
        entropy_bits.push(
            counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = c as f64 / n;
                    -p * p.log2()
                })
                .sum(),
        );
    }
    Ok(Evaluation {
        epoch,
        loss,
        recon_mse,
        collision_rate: rates[0],
        cid_collision_rate: rates.get(1).copied(),
        utilisation,
        entropy_bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    /// `clusters` well-separated Gaussian clusters in `d` dims.
    fn clustered(n: usize, d: usize, clusters: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..d).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let mut data = Vec::with_capacity(n * d);
        for i in 0..n {
            let c = &centres[i % clusters];
            data.extend(c.iter().map(|v| v + rng.random_range(-0.15..0.15)));
        }
        Matrix::new(data, n, d)
    }

    fn cfg(sizes: &[usize], epochs: usize) -> QuantizerConfig {
        let mut c = QuantizerConfig {
            method: Method::RqVae,
            codebook_sizes: sizes.to_vec(),
            ..QuantizerConfig::default()
        };
        c.rqvae.hidden = vec![64, 32];
        c.rqvae.latent_dim = 8;
        c.rqvae.epochs = epochs;
        c.rqvae.batch_size = 256;
        c.rqvae.eval_every = 1;
        c.rqvae.patience = 1000;
        c.rqvae.warmup_steps = 10;
        c
    }

    #[test]
    fn loss_decreases_and_reload_encodes_identically() {
        let x = clustered(2000, 16, 20, 1);
        let q = RqVae::fit(&x, &cfg(&[16, 8], 15), 7, &Silent).unwrap();
        let ev = &q.saved().evaluations;
        assert!(
            ev.last().unwrap().recon_mse < ev[0].recon_mse * 0.8,
            "{ev:?}"
        );
        assert!(ev.last().unwrap().loss < ev[0].loss, "{ev:?}");
        let dir = tempfile::tempdir().unwrap();
        q.save(dir.path()).unwrap();
        let back = RqVae::load(dir.path()).unwrap();
        assert_eq!(back.encode(&x).unwrap(), q.encode(&x).unwrap());
        assert_eq!(back.fingerprint(), q.fingerprint());
        // Same seed, same model; another seed, another model.
        let again = RqVae::fit(&x, &cfg(&[16, 8], 15), 7, &Silent).unwrap();
        assert_eq!(again.fingerprint(), q.fingerprint());
        let other = RqVae::fit(&x, &cfg(&[16, 8], 15), 8, &Silent).unwrap();
        assert_ne!(other.fingerprint(), q.fingerprint());
    }

    #[test]
    fn codebooks_stay_in_use() {
        let x = clustered(20_000, 32, 64, 2);
        let q = RqVae::fit(&x, &cfg(&[64, 64, 64], 6), 3, &Silent).unwrap();
        let codes = q.encode(&x).unwrap();
        for level in 0..3 {
            let mut used = [false; 64];
            codes.chunks(3).for_each(|r| used[r[level] as usize] = true);
            let u = used.iter().filter(|&&b| b).count();
            assert!(
                u as f64 >= 0.9 * 64.0,
                "level {level}: {u} of 64 codes used"
            );
        }
    }

    #[test]
    fn prefix_masking_makes_the_first_level_a_better_description() {
        let x = clustered(3000, 16, 30, 4);
        let mut off = cfg(&[8, 8, 8], 20);
        off.rqvae.prefix_masking = PrefixMasking::None;
        let mut on = off.clone();
        on.rqvae.prefix_masking = PrefixMasking::Uniform;
        let err1 = |c: &QuantizerConfig| {
            let q = RqVae::fit(&x, c, 5, &Silent).unwrap();
            let codes = q.encode(&x).unwrap();
            q.prefix_sq_errors(&x, &codes).unwrap()[0]
        };
        let (e_off, e_on) = (err1(&off), err1(&on));
        assert!(
            e_on < e_off,
            "level-1 error with masking {e_on} vs without {e_off}"
        );
    }

    #[test]
    fn cooccurrence_pulls_paired_items_into_one_first_level_code() {
        // Content: 6 strong clusters (i mod 6); groups: 6 more, crossed with content
        // (i / 6 mod 6), each a weak offset that k-means on content alone does not split by.
        // The interactions (pairs inside a group) say which offsets matter.
        let n = 720;
        let d = 16;
        let group = |i: usize| (i / 6) % 6;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let centre = |rng: &mut ChaCha8Rng, s: f32| -> Vec<f32> {
            (0..d).map(|_| rng.random_range(-s..s)).collect()
        };
        let content: Vec<Vec<f32>> = (0..6).map(|_| centre(&mut rng, 1.0)).collect();
        let offsets: Vec<Vec<f32>> = (0..6).map(|_| centre(&mut rng, 0.25)).collect();
        let mut data = Vec::with_capacity(n * d);
        for i in 0..n {
            for k in 0..d {
                data.push(content[i % 6][k] + offsets[group(i)][k] + rng.random_range(-0.05..0.05));
            }
        }
        let x = Matrix::new(data, n, d);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut pairs = Vec::new();
        while pairs.len() < 3000 {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            if a != b && group(a) == group(b) {
                pairs.push((a.min(b) as u32, a.max(b) as u32));
            }
        }
        let mut c = cfg(&[6, 6], 60);
        c.rqvae.batch_size = 128;
        c.rqvae.contrastive_weight = 1.0;
        let shared = |pairs_used: &[(u32, u32)]| {
            let q = RqVae::fit_with_pairs(&x, &c, 5, pairs_used, &Silent).unwrap();
            let codes = q.encode(&x).unwrap();
            let same = pairs
                .iter()
                .filter(|&&(a, b)| codes[a as usize * 2] == codes[b as usize * 2])
                .count();
            same as f64 / pairs.len() as f64
        };
        let (off, on) = (shared(&[]), shared(&pairs));
        eprintln!("pairs sharing level 1: {on:.3} with the contrastive loss, {off:.3} without");
        assert!(
            on > off + 0.3,
            "pairs sharing level 1: {on:.3} with the loss, {off:.3} without"
        );
    }
}
