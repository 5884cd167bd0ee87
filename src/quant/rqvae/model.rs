//! A trained RQ-VAE (or GenSAR dual quantizer): encode, decode, save and load.

use super::arch::*;
use super::dense::*;
use super::store::*;
use super::trainer::*;
use crate::error::{Error, Result};
use crate::matrix::Matrix;
use crate::progress::Progress;
use crate::quant::config::{Method, QuantizerConfig};
use crate::quant::distance::Codebook;
use crate::quant::gensar::DualSpec;
use crate::quant::kind::IdKind;
use crate::quant::{Quantizer, store};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// A trained RQ-VAE (or GenSAR dual quantizer).
#[derive(Clone)]
pub struct RqVae {
    pub(super) config: RqVaeSaved,
    pub(super) arch: Arch,
    /// One MLP per encoder, one per decoder.
    pub(super) enc: Vec<Vec<Dense>>,
    pub(super) dec: Vec<Vec<Dense>>,
    pub(super) codebooks: Vec<Codebook>,
}

impl RqVae {
    pub fn saved(&self) -> &RqVaeSaved {
        &self.config
    }

    /// Train with co-occurring row pairs of `x` for PLUM's contrastive alignment (symmetric
    /// InfoNCE over the quantized latents, in-batch negatives, weight `contrastive_weight`).
    pub(crate) fn fit_with_pairs(
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
        Self::fit_on(x, cfg, dual, seed, pairs, progress, Backend::of(cfg)?)
    }

    /// [`RqVae::fit_arch`] on a chosen backend: the tuned CPU path, or the device-generic
    /// path on any candle device (the tests force it onto candle's CPU backend).
    pub(crate) fn fit_on(
        x: &Matrix,
        cfg: &QuantizerConfig,
        dual: Option<DualSpec>,
        seed: u64,
        pairs: &[(u32, u32)],
        progress: &dyn Progress,
        backend: Backend,
    ) -> Result<Self> {
        let mut t = Trainer::new(x, cfg, dual, seed, backend)?;
        t.pairs = pairs.to_vec();
        t.run(progress)
    }

    /// Concatenated latents of `x`.
    pub(super) fn latent(&self, x: &Matrix) -> Matrix {
        let parts: Vec<Matrix> = self
            .enc
            .iter()
            .zip(&self.arch.enc_in)
            .map(|(e, &(o, w))| mlp(e, &x.columns(o, w)))
            .collect();
        Matrix::hcat(&parts.iter().collect::<Vec<_>>())
    }

    /// Codes of latents: level by level, the nearest codeword to the residual of its span.
    pub(super) fn quantize(&self, z: &Matrix) -> Result<Vec<u16>> {
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
    pub(super) fn latent_of_codes(&self, codes: &[u16], levels: &[usize]) -> Result<Matrix> {
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
    pub(super) fn decode_latent(&self, z: &Matrix, kind: usize) -> Matrix {
        let k = &self.arch.kinds[kind];
        mlp(&self.dec[kind], &z.columns(k.latent.0, k.latent.1))
    }

    /// Reconstruction of ID kind `kind`'s input columns from the first `depth` codes of that
    /// ID (`codes` holds all levels, rows × L).
    pub(crate) fn decode_kind(&self, codes: &[u16], kind: usize, depth: usize) -> Result<Matrix> {
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

    fn encode_on(&self, x: &Matrix, device: &Device) -> Result<Vec<u16>> {
        if device.is_cpu() {
            self.encode(x)
        } else {
            self.encode_generic(x, device)
        }
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
        crate::quant::save_to(dir, &self.config, &t)
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
