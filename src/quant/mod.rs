//! Quantizers: turn vectors into per-level codes. Every method implements [`Quantizer`], so
//! `assign` and `stats` work the same whichever method trained the model.

pub mod adamw;
pub mod config;
pub mod cpu_data;
pub mod distance;
pub mod gensar;
pub mod kind;
pub mod kmeans;
pub mod mlp;
pub mod rq_kmeans;
pub mod rqvae;
pub mod store;

use crate::error::{Error, Result};
use crate::matrix::{Matrix, sq_dist};
use crate::progress::Progress;
use crate::quant::config::{Method, QuantizerConfig};
use std::path::Path;

/// A trained model mapping D-dimensional vectors to L codes (one per level).
///
/// Codes are laid out row-major: row i's codes are `codes[i*L..(i+1)*L]`.
pub trait Quantizer: Send + Sync {
    fn method(&self) -> Method;
    /// Input vector dimension D.
    fn dim(&self) -> usize;
    /// K_l for every level l.
    fn codebook_sizes(&self) -> &[usize];
    fn levels(&self) -> usize {
        self.codebook_sizes().len()
    }

    /// Train on the rows of `x`.
    fn fit(x: &Matrix, cfg: &QuantizerConfig, seed: u64, progress: &dyn Progress) -> Result<Self>
    where
        Self: Sized;

    /// Codes of every row of `x` (rows × L).
    fn encode(&self, x: &Matrix) -> Result<Vec<u16>>;

    /// [`Quantizer::encode`] on `device`: the tuned CPU path on `Device::Cpu`, the
    /// device-generic candle path elsewhere; the same codes either way.
    fn encode_on(&self, x: &Matrix, device: &candle_core::Device) -> Result<Vec<u16>> {
        if device.is_cpu() {
            self.encode(x)
        } else {
            Err(Error::Config(format!(
                "{} cannot encode on {device:?} yet; use --device cpu",
                self.method().name()
            )))
        }
    }

    /// Reconstruction from the first `depth` codes of each row (`codes` is rows × L). For dual
    /// quantizers the levels count in storage order (shared, semantic, collaborative), so only
    /// the full depth is a meaningful reconstruction; [`Quantizer::decode_id`] gives one ID's
    /// prefixes.
    fn decode_prefix(&self, codes: &[u16], depth: usize) -> Result<Matrix>;

    /// GenSAR's level split, for quantizers that make two IDs (SID and CID).
    fn dual(&self) -> Option<&gensar::DualSpec> {
        None
    }

    /// Reconstruction of one ID's part of the input from the first `depth` codes of that ID
    /// (`codes` holds all L codes per row). Single-ID quantizers only have SIDs, which
    /// reconstruct the whole input.
    fn decode_id(&self, codes: &[u16], kind: gensar::IdKind, depth: usize) -> Result<Matrix> {
        match kind {
            gensar::IdKind::Sid => self.decode_prefix(codes, depth),
            gensar::IdKind::Cid => Err(Error::Config(format!(
                "{} makes no CIDs",
                self.method().name()
            ))),
        }
    }

    /// Reconstruction from all L codes.
    fn decode(&self, codes: &[u16]) -> Result<Matrix> {
        self.decode_prefix(codes, self.levels())
    }

    /// For each row, the squared distance from what level `level` quantizes (given the row's
    /// codes at the levels before it) to every code of that level: what `--dedup reassign`
    /// needs to move an item to its next-best last-level code.
    fn level_distances(&self, x: &Matrix, codes: &[u16], level: usize) -> Result<Vec<f32>>;

    /// Sum over rows of ‖x − x̂_m‖² for every prefix length m = 1..=L.
    fn prefix_sq_errors(&self, x: &Matrix, codes: &[u16]) -> Result<Vec<f64>> {
        (1..=self.levels())
            .map(|m| {
                let xh = self.decode_prefix(codes, m)?;
                Ok((0..x.rows)
                    .map(|i| sq_dist(x.row(i), xh.row(i)) as f64)
                    .sum())
            })
            .collect()
    }

    /// A hash of everything that determines the codes (shape and parameters), recorded in
    /// every SID table so that a table is never extended or scored with another model whose
    /// codes mean something else.
    fn fingerprint(&self) -> String;

    /// Write `config.json` and `model.safetensors` into `dir` (replacing it atomically).
    fn save(&self, dir: &Path) -> Result<()>;

    /// Read a model written by [`Quantizer::save`].
    fn load(dir: &Path) -> Result<Self>
    where
        Self: Sized;
}

/// Train a quantizer of the configured method. `pairs` are co-occurring rows of `x` (from
/// interactions); only RQ-VAE uses them.
pub fn train(
    x: &Matrix,
    cfg: &QuantizerConfig,
    seed: u64,
    pairs: &[(u32, u32)],
    progress: &dyn Progress,
) -> Result<Box<dyn Quantizer>> {
    match cfg.method {
        Method::RqKmeans => {
            if !pairs.is_empty() {
                tracing::warn!("rq-kmeans does not use interactions; they are ignored");
            }
            Ok(Box::new(rq_kmeans::RqKMeans::fit(x, cfg, seed, progress)?))
        }
        Method::RqVae => Ok(Box::new(rqvae::RqVae::fit_with_pairs(
            x, cfg, seed, pairs, progress,
        )?)),
        Method::Gensar => Err(Error::Config(
            "gensar trains on semantic and collaborative vectors together: use quant::train_dual"
                .into(),
        )),
    }
}

/// Train GenSAR on rows [s | u] whose first `semantic_dim` columns are the semantic vector.
pub(crate) fn train_dual(
    x: &Matrix,
    semantic_dim: usize,
    cfg: &QuantizerConfig,
    seed: u64,
    pairs: &[(u32, u32)],
    progress: &dyn Progress,
) -> Result<Box<dyn Quantizer>> {
    let mut cfg = cfg.clone();
    cfg.broadcast_sizes();
    let spec = gensar::DualSpec::new(semantic_dim, &cfg.gensar);
    Ok(Box::new(rqvae::RqVae::fit_arch(
        x,
        &cfg,
        Some(spec),
        seed,
        pairs,
        progress,
    )?))
}

/// [`store::save`], with its failures named by the file the user asked for: the safetensors
/// writer reports a full disk as a bare tensor error, and the I/O errors name temporary paths.
pub(crate) fn save_to(
    dir: &Path,
    config: &impl serde::Serialize,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
) -> Result<()> {
    store::save(dir, config, tensors).map_err(|e| match e {
        crate::error::Error::Tensor(cause) => {
            crate::error::Error::write(&dir.join(store::WEIGHTS_FILE), strip_tensor_prefix(cause))
        }
        crate::error::Error::Io { path, cause } => {
            let file = path.file_name().filter(|n| {
                *n == std::ffi::OsStr::new(store::CONFIG_FILE)
                    || *n == std::ffi::OsStr::new(store::WEIGHTS_FILE)
            });
            crate::error::Error::write(&file.map_or(dir.to_path_buf(), |f| dir.join(f)), cause)
        }
        other => other,
    })
}

/// candle wraps I/O errors as "I/O error: ..."; keep only what the OS said.
fn strip_tensor_prefix(e: candle_core::Error) -> String {
    let s = e.to_string();
    s.strip_prefix("I/O error: ")
        .map(str::to_string)
        .unwrap_or(s)
}

/// Load whichever quantizer `dir/config.json` describes.
pub fn load(dir: &Path) -> Result<Box<dyn Quantizer>> {
    crate::fs::inputs::note(dir);
    let header = store::read_header(dir)?;
    match header.method {
        Method::RqKmeans => Ok(Box::new(rq_kmeans::RqKMeans::load(dir)?)),
        Method::RqVae | Method::Gensar => Ok(Box::new(rqvae::RqVae::load(dir)?)),
    }
}

/// SHA-256 over f32 parameter blocks, in order, as lowercase hex.
pub(crate) fn fingerprint_of<'a>(
    method: Method,
    blocks: impl IntoIterator<Item = &'a [f32]>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(method.name().as_bytes());
    for b in blocks {
        h.update((b.len() as u64).to_le_bytes());
        for v in b {
            h.update(v.to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

/// Check that `x` has the dimension the quantizer was trained on.
pub(crate) fn check_dim(q: &dyn Quantizer, x_dim: usize, what: &Path, column: &str) -> Result<()> {
    if q.dim() != x_dim {
        return Err(Error::input(
            what,
            Some(column),
            None,
            format!(
                "vectors have {x_dim} dimensions but the quantizer was trained on {}",
                q.dim()
            ),
        ));
    }
    Ok(())
}
