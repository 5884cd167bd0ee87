//! Qwen3's SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.

use super::Qwen3Config;
use crate::embed::layers::linear::Linear;
use crate::error::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

pub(super) struct Mlp {
    /// gate and up projections stacked: one GEMM instead of two.
    pub(super) gate_up: Linear,
    pub(super) down: Linear,
    intermediate: usize,
}

impl Mlp {
    /// `vb` at `layers.{i}.mlp`.
    pub(super) fn load(vb: VarBuilder, cfg: &Qwen3Config) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let gate = vb.get((i, h), "gate_proj.weight")?;
        let up = vb.get((i, h), "up_proj.weight")?;
        Ok(Mlp {
            gate_up: Linear::new(Tensor::cat(&[gate, up], 0)?)?,
            down: Linear::new(vb.get((h, i), "down_proj.weight")?)?,
            intermediate: i,
        })
    }

    /// (b·t, hidden) → (b·t, hidden), as candle ops.
    pub(super) fn forward(&self, hs: &Tensor) -> Result<Tensor> {
        let i = self.intermediate;
        let gu = self.gate_up.forward(hs)?;
        let act = (candle_nn::ops::silu(&gu.narrow(1, 0, i)?)? * gu.narrow(1, i, i)?)?;
        self.down.forward(&act)
    }
}
