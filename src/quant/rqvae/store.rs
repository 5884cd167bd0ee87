//! What a trained RQ-VAE records about itself in `config.json`: its shape, its training
//! settings and every evaluation.

use crate::quant::config::{Method, RqVaeConfig};
use crate::quant::gensar::DualSpec;
use serde::{Deserialize, Serialize};

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
    pub(super) fn collisions(&self) -> f64 {
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
