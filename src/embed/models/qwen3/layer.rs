//! One Qwen3 decoder layer: pre-norm attention and pre-norm SwiGLU, each added to the
//! residual stream.

use super::attention::{Attention, Positions};
use super::mlp::Mlp;
use super::{ForwardTimes, Qwen3Config, Timer};
use crate::error::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

pub(super) struct Layer {
    pub(super) input_norm: Tensor,
    pub(super) attn: Attention,
    pub(super) post_norm: Tensor,
    pub(super) mlp: Mlp,
    eps: f32,
}

impl Layer {
    /// `vb` at `layers.{i}`.
    pub(super) fn load(vb: VarBuilder, cfg: &Qwen3Config) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Layer {
            input_norm: vb.get(h, "input_layernorm.weight")?,
            attn: Attention::load(vb.pp("self_attn"), cfg)?,
            post_norm: vb.get(h, "post_attention_layernorm.weight")?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
            eps: cfg.rms_norm_eps as f32,
        })
    }

    /// The residual stream x (b·t, hidden) after this layer, as candle ops; each part's time
    /// goes to its share of `times`.
    pub(super) fn forward(
        &self,
        x: Tensor,
        (b, t): (usize, usize),
        pos: &Positions,
        clock: &mut Timer,
        times: &mut ForwardTimes,
    ) -> Result<Tensor> {
        let hs = candle_nn::ops::rms_norm(&x, &self.input_norm, self.eps)?;
        let qkv = self.attn.project(&hs)?;
        times.projections += clock.lap()?;
        let attn = self.attn.attend(&qkv, b, t, pos)?;
        times.attention += clock.lap()?;
        let x = (x + self.attn.o.forward(&attn)?)?;
        times.projections += clock.lap()?;
        let hs = candle_nn::ops::rms_norm(&x, &self.post_norm, self.eps)?;
        let x = (x + self.mlp.forward(&hs)?)?;
        times.mlp += clock.lap()?;
        Ok(x)
    }
}
