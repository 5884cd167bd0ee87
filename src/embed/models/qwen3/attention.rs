//! Qwen3's self-attention block: stacked q/k/v projection, per-head RMS norms of q and k,
//! rotary positions, grouped-query causal attention, output projection.

use super::Qwen3Config;
use crate::embed::layers::linear::Linear;
use crate::error::Result;
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

pub(super) struct Attention {
    /// q, k and v projections stacked into one matrix: one GEMM instead of three.
    pub(super) qkv: Linear,
    pub(super) qkv_bias: Option<Tensor>,
    q_norm: Tensor,
    k_norm: Tensor,
    /// The same two norms as plain f32, for the fused CPU kernel.
    pub(super) q_norm_f32: Vec<f32>,
    pub(super) k_norm_f32: Vec<f32>,
    pub(super) o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f64,
}

/// Positions shared by every layer of one forward: RoPE tables (t, head_dim/2) and the
/// additive causal mask.
pub(super) struct Positions {
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) mask: Tensor,
}

impl Attention {
    /// `vb` at `layers.{i}.self_attn`.
    pub(super) fn load(vb: VarBuilder, cfg: &Qwen3Config) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let q = vb.get((nh * hd, h), "q_proj.weight")?;
        let k = vb.get((nkv * hd, h), "k_proj.weight")?;
        let v = vb.get((nkv * hd, h), "v_proj.weight")?;
        let qkv_bias = if cfg.attention_bias {
            let qb = vb.get(nh * hd, "q_proj.bias")?;
            let kb = vb.get(nkv * hd, "k_proj.bias")?;
            let vb_ = vb.get(nkv * hd, "v_proj.bias")?;
            Some(Tensor::cat(&[qb, kb, vb_], 0)?)
        } else {
            None
        };
        let q_norm = vb.get(hd, "q_norm.weight")?;
        let k_norm = vb.get(hd, "k_norm.weight")?;
        Ok(Attention {
            q_norm_f32: q_norm.to_dtype(DType::F32)?.to_vec1()?,
            k_norm_f32: k_norm.to_dtype(DType::F32)?.to_vec1()?,
            q_norm,
            k_norm,
            qkv: Linear::new(Tensor::cat(&[q, k, v], 0)?)?,
            qkv_bias,
            o: Linear::new(vb.get((h, nh * hd), "o_proj.weight")?)?,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            eps: cfg.rms_norm_eps,
        })
    }

    /// The stacked q/k/v projection of normed states (b·t, hidden).
    pub(super) fn project(&self, hs: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(hs)?;
        Ok(match &self.qkv_bias {
            Some(bias) => qkv.broadcast_add(bias)?,
            None => qkv,
        })
    }

    /// Attention over projected q/k/v as candle ops (any device and dtype): (b·t, heads·hd).
    pub(super) fn attend(
        &self,
        qkv: &Tensor,
        b: usize,
        t: usize,
        pos: &Positions,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let g = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = self.eps as f32;
        let heads = |start: usize, n: usize| -> Result<Tensor> {
            Ok(qkv.narrow(1, start * hd, n * hd)?.reshape((b, t, n, hd))?)
        };
        let q = candle_nn::ops::rms_norm(&heads(0, nh)?, &self.q_norm, eps)?
            .transpose(1, 2)?
            .contiguous()?;
        let k = candle_nn::ops::rms_norm(&heads(nh, nkv)?, &self.k_norm, eps)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = heads(nh + nkv, nkv)?.transpose(1, 2)?.contiguous()?;
        let q = candle_nn::rotary_emb::rope(&q, &pos.cos, &pos.sin)?;
        let k = candle_nn::rotary_emb::rope(&k, &pos.cos, &pos.sin)?;
        // Grouped-query attention without copying K and V: query heads that share a KV
        // head are stacked along the row axis, (b, nkv, g·t, hd).
        let q = q.reshape((b, nkv, g * t, hd))?;
        let scores = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, nkv, g, t, t))?
            .broadcast_add(&pos.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, nkv, g * t, t))?;
        Ok(probs
            .matmul(&v)?
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b * t, nh * hd))?)
    }
}
