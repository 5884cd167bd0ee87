//! The quantizer section (`[quantizer]`): method, codebooks, and RQ-VAE/GenSAR training.

use crate::device::DeviceKind;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// MiniOneRec's default: 3 levels of 256 codes.
pub const DEFAULT_CODEBOOK_SIZES: [usize; 3] = [256, 256, 256];
/// Train on at most this many rows by default (docs/methods.md §2).
pub const DEFAULT_TRAIN_SAMPLE: usize = 1_000_000;
/// Codes are stored as UInt16, and the largest code must stay representable.
pub const MAX_CODEBOOK_SIZE: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Method {
    /// Residual k-means (OneRec / MiniOneRec).
    #[default]
    RqKmeans,
    /// Residual-quantized VAE (TIGER), with PLUM's progressive prefix masking.
    RqVae,
    /// GenSAR dual quantization: a semantic ID and a collaborative ID with a shared prefix.
    Gensar,
}

impl Method {
    /// The spelling in config files and artefacts (`rq-kmeans`, `rq-vae`, `gensar`).
    pub fn name(self) -> String {
        crate::names::name(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizerConfig {
    pub method: Method,
    /// K_l per level; may shrink with depth (PLUM's multi-resolution codebooks).
    pub codebook_sizes: Vec<usize>,
    /// Train on a seeded random sample of at most this many rows (0 = all rows).
    pub train_sample: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub balanced: bool,
    /// RQ-VAE training (`method = "rq-vae"`; GenSAR trains with the same settings).
    pub rqvae: RqVaeConfig,
    /// GenSAR's level split (`method = "gensar"`).
    pub gensar: GensarConfig,
    /// Where training and encoding run: `cpu` keeps the tuned CPU kernels; `cuda`/`metal`
    /// run the device-generic candle path (docs/architecture.md, "Devices").
    pub device: DeviceKind,
}

/// GenSAR (docs/methods.md §5): codebook levels shared by both IDs, then levels of the semantic ID
/// and of the collaborative ID. `codebook_sizes` lists K for all of them in that order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GensarConfig {
    pub shared_levels: usize,
    pub semantic_levels: usize,
    pub collab_levels: usize,
}

impl Default for GensarConfig {
    fn default() -> Self {
        GensarConfig {
            shared_levels: 2,
            semantic_levels: 2,
            collab_levels: 2,
        }
    }
}

impl GensarConfig {
    pub fn levels(&self) -> usize {
        self.shared_levels + self.semantic_levels + self.collab_levels
    }
}

impl QuantizerConfig {
    /// For GenSAR, a single size (`--codebook-sizes 256`), or the untouched default
    /// 256,256,256, stands for that size at every level; other lists are kept as they are (and
    /// must then name every level). Other methods keep the list as is.
    pub fn broadcast_sizes(&mut self) {
        if self.broadcastable() {
            self.codebook_sizes = vec![self.codebook_sizes[0]; self.gensar.levels()];
        }
    }

    fn broadcastable(&self) -> bool {
        let s = &self.codebook_sizes;
        self.method == Method::Gensar
            && s.len() != self.gensar.levels()
            && (s.len() == 1 || s[..] == DEFAULT_CODEBOOK_SIZES)
    }
}

/// How training picks the prefix each example reconstructs from (PLUM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PrefixMasking {
    /// Always all L levels.
    #[default]
    None,
    /// Per example, m uniform in 1..=L (all L with probability `full_prefix_prob`).
    Uniform,
}

/// RQ-VAE (TIGER) architecture and training; docs/methods.md §3–4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RqVaeConfig {
    /// Encoder hidden widths (the decoder mirrors them).
    pub hidden: Vec<usize>,
    pub latent_dim: usize,
    /// Maximum epochs; training stops earlier when the loss plateaus.
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Commitment weight β.
    pub beta: f64,
    /// Linear learning-rate warm-up, in optimiser steps.
    pub warmup_steps: usize,
    /// Cosine decay of the learning rate to a tenth over the maximum epochs.
    pub cosine_decay: bool,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
    /// Evaluate (and keep the best checkpoint) every this many epochs.
    pub eval_every: usize,
    /// Stop after this many evaluations without a better reconstruction error.
    pub patience: usize,
    pub prefix_masking: PrefixMasking,
    /// With uniform masking: probability that an example uses all L levels anyway.
    pub full_prefix_prob: f64,
    /// λ of the co-occurrence contrastive loss (used when interactions are given).
    pub contrastive_weight: f64,
    /// τ of the InfoNCE softmax over cosine similarities.
    pub temperature: f64,
    /// Items within this many positions of each other in a history form a pair.
    pub window: usize,
    /// Keep at most this many pairs per item (0 = all).
    pub max_pairs_per_item: usize,
}

impl Default for RqVaeConfig {
    fn default() -> Self {
        RqVaeConfig {
            hidden: vec![512, 256, 128],
            latent_dim: 32,
            epochs: 200,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 1024,
            beta: 0.25,
            warmup_steps: 100,
            cosine_decay: true,
            grad_clip: 1.0,
            eval_every: 5,
            patience: 10,
            prefix_masking: PrefixMasking::None,
            full_prefix_prob: 0.0,
            contrastive_weight: 0.1,
            temperature: 0.07,
            window: 5,
            max_pairs_per_item: 0,
        }
    }
}

impl Default for QuantizerConfig {
    fn default() -> Self {
        QuantizerConfig {
            method: Method::RqKmeans,
            codebook_sizes: DEFAULT_CODEBOOK_SIZES.to_vec(),
            train_sample: DEFAULT_TRAIN_SAMPLE,
            max_iter: super::kmeans::DEFAULT_MAX_ITER,
            tol: super::kmeans::DEFAULT_TOL,
            balanced: true,
            rqvae: RqVaeConfig::default(),
            gensar: GensarConfig::default(),
            device: DeviceKind::Cpu,
        }
    }
}

impl QuantizerConfig {
    /// Check everything that can be checked without data.
    pub fn validate(&self) -> Result<()> {
        let q = self;
        if q.codebook_sizes.is_empty() {
            return Err(Error::Config(
                "codebook_sizes needs at least one level".into(),
            ));
        }
        for (l, &k) in q.codebook_sizes.iter().enumerate() {
            if k == 0 {
                return Err(Error::Config(format!(
                    "codebook size of level {} is 0",
                    l + 1
                )));
            }
            if k > MAX_CODEBOOK_SIZE {
                return Err(Error::Config(format!(
                    "codebook size {k} at level {} exceeds {MAX_CODEBOOK_SIZE}: codes are stored as UInt16",
                    l + 1
                )));
            }
        }
        let v = &q.rqvae;
        // NaN and infinity pass the range checks below one way or another (NaN compares false,
        // `inf` is > 0) and then turn every weight into NaN; refuse them by name.
        for (name, x) in [
            ("lr", v.lr),
            ("beta", v.beta),
            ("weight_decay", v.weight_decay),
            ("grad_clip", v.grad_clip),
            ("temperature", v.temperature),
            ("contrastive_weight", v.contrastive_weight),
            ("full_prefix_prob", v.full_prefix_prob),
            ("tol", q.tol),
        ] {
            if !x.is_finite() {
                let key = if name == "tol" {
                    "tol".to_string()
                } else {
                    format!("rqvae {name}")
                };
                return Err(Error::Config(format!(
                    "{key} must be a finite number, got {x}"
                )));
            }
        }
        if v.weight_decay < 0.0 || v.grad_clip < 0.0 {
            return Err(Error::Config(
                "rqvae weight_decay and grad_clip must be ≥ 0 (grad_clip 0 = off)".into(),
            ));
        }
        if v.latent_dim == 0 || v.batch_size == 0 || v.epochs == 0 || v.eval_every == 0 {
            return Err(Error::Config(
                "rqvae latent_dim, batch_size, epochs and eval_every must be ≥ 1".into(),
            ));
        }
        if v.temperature.is_nan()
            || v.temperature <= 0.0
            || v.contrastive_weight < 0.0
            || v.window == 0
        {
            return Err(Error::Config(
                "rqvae temperature must be > 0, contrastive_weight ≥ 0 and window ≥ 1".into(),
            ));
        }
        if v.hidden.contains(&0) {
            return Err(Error::Config("rqvae hidden widths must be ≥ 1".into()));
        }
        if v.lr.is_nan()
            || v.lr <= 0.0
            || !(0.0..=1.0).contains(&v.full_prefix_prob)
            || v.beta < 0.0
        {
            return Err(Error::Config(
                "rqvae lr must be > 0, beta ≥ 0 and full_prefix_prob in [0, 1]".into(),
            ));
        }
        if q.method == Method::Gensar {
            let g = &q.gensar;
            if g.semantic_levels == 0 || g.collab_levels == 0 {
                return Err(Error::Config(
                    "gensar needs semantic_levels ≥ 1 and collab_levels ≥ 1".into(),
                ));
            }
            if q.codebook_sizes.len() != g.levels() && !q.broadcastable() {
                return Err(Error::Config(format!(
                    "gensar has {} shared + {} semantic + {} collaborative levels, so codebook_sizes needs {} sizes (or one size for every level), not {}",
                    g.shared_levels,
                    g.semantic_levels,
                    g.collab_levels,
                    g.levels(),
                    q.codebook_sizes.len()
                )));
            }
        }
        if q.tol.is_nan() || q.tol < 0.0 {
            return Err(Error::Config(format!("tol must be ≥ 0, got {}", q.tol)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Setter = fn(&mut QuantizerConfig, f64);

    #[test]
    fn non_finite_training_settings_are_refused_by_name() {
        let set: [(&str, Setter); 8] = [
            ("lr", |c, x| c.rqvae.lr = x),
            ("beta", |c, x| c.rqvae.beta = x),
            ("weight_decay", |c, x| c.rqvae.weight_decay = x),
            ("grad_clip", |c, x| c.rqvae.grad_clip = x),
            ("temperature", |c, x| c.rqvae.temperature = x),
            ("contrastive_weight", |c, x| c.rqvae.contrastive_weight = x),
            ("full_prefix_prob", |c, x| c.rqvae.full_prefix_prob = x),
            ("tol", |c, x| c.tol = x),
        ];
        for (name, f) in set {
            for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
                let mut c = QuantizerConfig::default();
                f(&mut c, bad);
                let e = c.validate().unwrap_err().to_string();
                assert!(
                    e.contains(name) && e.contains("finite"),
                    "{name}={bad}: {e}"
                );
            }
        }
        assert!(QuantizerConfig::default().validate().is_ok());
        let mut c = QuantizerConfig::default();
        c.rqvae.lr = 1e30; // huge but finite: training has to catch that one
        assert!(c.validate().is_ok());
    }
}
