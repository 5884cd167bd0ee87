//! The part of a Qwen3 `config.json` the encoder reads, and the checks that refuse
//! configurations it would silently get wrong.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The subset of a Qwen3 `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// transformers ≥ 5 moves θ (and any scaling) here.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    pub rope_theta: Option<f64>,
    pub rope_type: Option<String>,
}

impl Qwen3Config {
    pub(crate) fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// RoPE base, from `rope_parameters` (transformers 5) or `rope_theta` (older configs).
    pub(crate) fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(1_000_000.0)
    }

    /// Refuse configurations this forward would silently get wrong.
    pub fn check(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::artifact(path, m));
        let rope_type = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_type.clone())
            .or_else(|| {
                self.rope_scaling.as_ref().and_then(|s| {
                    s.get("rope_type")
                        .or_else(|| s.get("type"))
                        .and_then(|t| t.as_str().map(str::to_string))
                })
            });
        if let Some(t) = rope_type
            && t != "default"
        {
            return bad(format!(
                "RoPE scaling `{t}` is not supported (only the default RoPE of Qwen3-Embedding)"
            ));
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return bad(format!(
                "hidden_act `{act}` is not supported (Qwen3 uses silu)"
            ));
        }
        if self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Qwen3Config {
        serde_json::from_str(&format!(
            r#"{{"vocab_size": 8, "hidden_size": 4, "intermediate_size": 8,
                "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                "head_dim": 2, "rms_norm_eps": 1e-6 {extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn rope_theta_from_either_config_style() {
        assert_eq!(cfg(r#", "rope_theta": 10000.0"#).rope_theta(), 10000.0);
        // transformers 5 writes only rope_parameters.
        let c = cfg(r#", "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}"#);
        assert_eq!(c.rope_theta(), 5e5);
        assert!(c.check(Path::new("config.json")).is_ok());
        assert_eq!(cfg("").rope_theta(), 1_000_000.0);
    }

    #[test]
    fn unsupported_configs_are_refused() {
        let p = Path::new("config.json");
        let yarn = cfg(r#", "rope_parameters": {"rope_theta": 1e6, "rope_type": "yarn"}"#);
        assert!(yarn.check(p).unwrap_err().to_string().contains("`yarn`"));
        let old = cfg(r#", "rope_scaling": {"type": "linear", "factor": 2.0}"#);
        assert!(old.check(p).unwrap_err().to_string().contains("`linear`"));
        let gelu = cfg(r#", "hidden_act": "gelu""#);
        assert!(gelu.check(p).is_err());
        let mut heads = cfg("");
        heads.num_key_value_heads = 3;
        assert!(heads.check(p).unwrap_err().to_string().contains("multiple"));
    }
}
