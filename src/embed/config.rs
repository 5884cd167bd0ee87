//! The embedding section (`[embed]`): model, pooling, text template, batching, device.

use crate::device::{DeviceKind, EmbedDType};
use crate::embed::layers::pooling::Pooling;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The embedding stage (`sidtool embed`, and `build` on items without vectors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// A hub id (resolved through the Hugging Face cache) or a local model directory.
    pub model: String,
    /// Hub revision: branch, tag or 40-hex commit.
    pub revision: String,
    /// `last`, `mean` or `cls`; unset = the model's own (sentence-transformers config, else
    /// `last` for Qwen3 and `mean` for BERT).
    pub pooling: Option<Pooling>,
    /// Matryoshka truncation to the first `dim` components (then re-normalised).
    pub dim: Option<usize>,
    /// Item text template over item columns; unset = docs/methods.md §1 default.
    pub template: Option<String>,
    /// Qwen3-Embedding query instruction: text becomes `Instruct: {instruction}\nQuery:{text}`.
    pub instruction: Option<String>,
    /// Tokens per text, counting the appended end token.
    pub max_length: usize,
    /// Padded tokens per forward batch (batch rows × longest row); unset = 4096 on the CPU
    /// (more only adds padding and cache misses there) and 65 536 on a GPU, which needs large
    /// batches to be busy.
    pub batch_tokens: Option<usize>,
    pub device: DeviceKind,
    /// Unset = f32 on CPU, bf16 on a GPU.
    pub dtype: Option<EmbedDType>,
    /// Items per resumable unit (one part of the temporary output).
    pub window_rows: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            model: super::DEFAULT_MODEL.into(),
            revision: "main".into(),
            pooling: None,
            dim: None,
            template: None,
            instruction: None,
            max_length: super::DEFAULT_MAX_LENGTH,
            batch_tokens: None,
            device: DeviceKind::Cpu,
            dtype: None,
            window_rows: super::DEFAULT_WINDOW_ROWS,
        }
    }
}

impl EmbedConfig {
    /// The token budget per forward batch: the configured one, else the device's default.
    pub fn batch_tokens(&self) -> usize {
        self.batch_tokens.unwrap_or(match self.device {
            DeviceKind::Cpu => super::DEFAULT_BATCH_TOKENS,
            _ => super::DEFAULT_GPU_BATCH_TOKENS,
        })
    }

    /// Check everything that can be checked without a model or data.
    pub fn validate(&self) -> Result<()> {
        let e = self;
        if e.max_length < 2 {
            return Err(Error::Config(format!(
                "max_length must be ≥ 2 (one text token plus the end token), got {}",
                e.max_length
            )));
        }
        if e.batch_tokens == Some(0) || e.window_rows == 0 {
            return Err(Error::Config(
                "batch_tokens and window_rows must be ≥ 1".into(),
            ));
        }
        if e.dim == Some(0) {
            return Err(Error::Config("dim must be ≥ 1".into()));
        }
        if let Some(t) = &e.template {
            super::template::Template::parse(t)?;
        }
        Ok(())
    }
}
