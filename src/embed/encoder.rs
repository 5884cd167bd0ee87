//! A loaded text encoder: tokenizer + model + pooling, from a hub id or a directory.

use crate::device::{self, EmbedDType};
use crate::embed::config::EmbedConfig;
use crate::embed::layers::pooling::{self, Pooling};
use crate::embed::loading::hub::{self, ModelFiles};
use crate::embed::loading::weights::Weights;
use crate::embed::models::bert::Bert;
use crate::embed::models::qwen3::{self, ForwardTimes, Qwen3, Qwen3Config};
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// Qwen3-Embedding appends this token to every text and pools its state.
pub(crate) const QWEN3_END_TOKEN: &str = "<|endoftext|>";

enum Arch {
    Qwen3(Qwen3),
    Bert(Bert),
}

/// What was loaded, recorded in `embeddings.parquet` metadata and reports.
#[derive(Debug, Clone, Serialize)]
pub struct EncoderInfo {
    pub model: String,
    pub architecture: String,
    pub hidden_size: usize,
    pub dim: usize,
    pub pooling: Pooling,
    pub max_length: usize,
    pub dtype: EmbedDType,
    pub device: device::DeviceKind,
    pub instruction: Option<String>,
}

pub struct Encoder {
    arch: Arch,
    tokenizer: Tokenizer,
    /// Appended to every text when the tokenizer's post-processor does not (Qwen3 only).
    end_token: Option<u32>,
    pub info: EncoderInfo,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        cause: e,
    })
}

/// The pooling a sentence-transformers folder declares (`1_Pooling/config.json`).
fn declared_pooling(files: &ModelFiles) -> Result<Option<Pooling>> {
    let Some(p) = files.optional("1_Pooling/config.json") else {
        return Ok(None);
    };
    let v = read_json(&p)?;
    let on = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
    Ok(if on("pooling_mode_lasttoken") {
        Some(Pooling::Last)
    } else if on("pooling_mode_cls_token") {
        Some(Pooling::Cls)
    } else if on("pooling_mode_mean_tokens") {
        Some(Pooling::Mean)
    } else {
        None
    })
}

impl Encoder {
    pub fn load(cfg: &EmbedConfig) -> Result<Encoder> {
        let files = hub::resolve(&cfg.model, &cfg.revision)?;
        Self::from_files(&files, cfg)
    }

    pub(crate) fn from_files(files: &ModelFiles, cfg: &EmbedConfig) -> Result<Encoder> {
        let config = read_json(&files.config)?;
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let dtype = cfg.dtype.unwrap_or(EmbedDType::default_for(cfg.device));
        let dev = device::open(cfg.device)?;
        let parse_err = |e: serde_json::Error| {
            Error::artifact(
                &files.config,
                format!("not a valid {model_type} config: {e}"),
            )
        };
        let declared = declared_pooling(files)?;
        let (arch, default_pooling, hidden) = match model_type.as_str() {
            "qwen3" => {
                let c: Qwen3Config = serde_json::from_value(config).map_err(parse_err)?;
                c.check(&files.config)?;
                let vb = Weights::open(&files.weights, Some("embed_tokens.weight"))?
                    .into_var_builder(dtype.candle(), &dev);
                let m = Qwen3::load(c, vb, &dev, dtype.candle()).map_err(Error::weights)?;
                let h = m.hidden_size();
                (Arch::Qwen3(m), Pooling::Last, h)
            }
            "bert" => {
                let c: candle_transformers::models::bert::Config =
                    serde_json::from_value(config).map_err(parse_err)?;
                let h = c.hidden_size;
                let m = Bert::load(&files.config, c, &files.weights, &dev, dtype.candle())?;
                (Arch::Bert(m), Pooling::Mean, h)
            }
            other => {
                return Err(Error::artifact(
                    &files.config,
                    format!(
                        "unsupported architecture (model_type `{other}`); sidtool embeds with \
                         qwen3 (Qwen3-Embedding) and bert (BGE, MiniLM, GTE) models"
                    ),
                ));
            }
        };
        let pooling = cfg.pooling.or(declared).unwrap_or(default_pooling);
        if matches!(arch, Arch::Qwen3(_)) && pooling == Pooling::Cls {
            return Err(Error::Config(
                "--pooling cls does not suit a causal model (its first token sees nothing \
                 else); use last or mean with Qwen3"
                    .into(),
            ));
        }
        if let Some(d) = cfg.dim
            && d > hidden
        {
            return Err(Error::Config(format!(
                "--dim {d} exceeds the model's hidden size {hidden}"
            )));
        }
        // BERT has learned positions: longer inputs than it was trained for cannot be embedded.
        let max_length = match &arch {
            Arch::Bert(m) => {
                // sentence-transformers cuts at max_seq_length (e.g. 256 for MiniLM).
                let st = match files.optional("sentence_bert_config.json") {
                    Some(p) => read_json(&p)?
                        .get("max_seq_length")
                        .and_then(|v| v.as_u64())
                        .map(|v| v as usize),
                    None => None,
                };
                cfg.max_length
                    .min(m.config.max_position_embeddings)
                    .min(st.unwrap_or(usize::MAX))
            }
            Arch::Qwen3(m) => {
                if let Some(p) = m.config().max_position_embeddings
                    && cfg.max_length > p
                {
                    tracing::warn!(
                        "--max-length {} exceeds the model's max_position_embeddings ({p}); \
                         longer texts are embedded, but the model was not trained on them",
                        cfg.max_length
                    );
                }
                cfg.max_length
            }
        };
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
            Error::artifact(&files.tokenizer, format!("cannot load tokenizer: {e}"))
        })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| Error::artifact(&files.tokenizer, e.to_string()))?;
        tokenizer.with_padding(None);
        let end_token = match arch {
            Arch::Qwen3(_) => Some(tokenizer.token_to_id(QWEN3_END_TOKEN).ok_or_else(|| {
                Error::artifact(
                    &files.tokenizer,
                    format!("has no `{QWEN3_END_TOKEN}` token, which Qwen3-Embedding appends"),
                )
            })?),
            Arch::Bert(_) => None,
        };
        let info = EncoderInfo {
            model: files.source.clone(),
            architecture: model_type,
            hidden_size: hidden,
            dim: cfg.dim.unwrap_or(hidden),
            pooling,
            max_length,
            dtype,
            device: cfg.device,
            instruction: cfg.instruction.clone(),
        };
        Ok(Encoder {
            arch,
            tokenizer,
            end_token,
            info,
        })
    }

    /// Token ids of each text: the instruction prefix applied, truncated to `max_length`
    /// including the end token. Runs in parallel.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        Ok(self.tokenize_counted(texts)?.0)
    }

    /// [`Encoder::tokenize`], and how many texts were cut to `max_length`.
    pub(crate) fn tokenize_counted(&self, texts: &[String]) -> Result<(Vec<Vec<u32>>, usize)> {
        let inputs: Vec<String> = match &self.info.instruction {
            Some(ins) => texts
                .iter()
                .map(|t| format!("Instruct: {ins}\nQuery:{t}"))
                .collect(),
            None => texts.to_vec(),
        };
        let enc = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| Error::Model(format!("tokenization failed: {e}")))?;
        let max = self.info.max_length;
        let mut truncated = 0;
        let ids = enc
            .into_iter()
            .map(|e| {
                let mut ids = e.get_ids().to_vec();
                let mut cut = !e.get_overflowing().is_empty();
                if let Some(end) = self.end_token
                    && ids.last() != Some(&end)
                {
                    cut |= ids.len() > max - 1;
                    ids.truncate(max - 1);
                    ids.push(end);
                }
                truncated += usize::from(cut);
                ids
            })
            .collect();
        Ok((ids, truncated))
    }

    /// Final vectors (pooled, L2-normalised, Matryoshka-truncated) of token sequences.
    pub(crate) fn embed_tokens(
        &self,
        seqs: &[&[u32]],
        times: Option<&mut ForwardTimes>,
    ) -> Result<Vec<Vec<f32>>> {
        if seqs.iter().any(|s| s.is_empty()) {
            return Err(Error::Config(
                "an empty token sequence reached the encoder (the tokenizer added no special \
                 tokens)"
                    .into(),
            ));
        }
        let pooled = match &self.arch {
            Arch::Qwen3(m) => {
                let out = match self.info.pooling {
                    Pooling::Mean => qwen3::Output::Mean,
                    _ => qwen3::Output::Last,
                };
                m.forward(seqs, out, times)?
            }
            Arch::Bert(m) => m.forward(seqs, self.info.pooling)?,
        };
        Ok(pooled
            .into_iter()
            .map(|v| pooling::finish(v, Some(self.info.dim), true))
            .collect())
    }

    /// Convenience: tokenize and embed, in the given order, as one batch.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts)?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        self.embed_tokens(&refs, None)
    }

    /// Matmul FLOPs of a forward over `tokens` tokens in rows of `t` (Qwen3 only).
    pub(crate) fn flops(&self, tokens: usize, t: usize) -> Option<f64> {
        match &self.arch {
            Arch::Qwen3(m) => Some(m.flops(tokens, t)),
            Arch::Bert(_) => None,
        }
    }

    /// Switch Qwen3's fused CPU kernels off (candle ops everywhere) or back on; for checking
    /// the two paths against each other. No effect on other architectures or devices.
    pub fn set_fused_cpu_kernels(&mut self, on: bool) {
        if let Arch::Qwen3(m) = &mut self.arch {
            m.fused_cpu = on
                && self.info.device == device::DeviceKind::Cpu
                && self.info.dtype == EmbedDType::F32;
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}
