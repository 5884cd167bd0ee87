//! Qwen3 as a batched sentence encoder.
//!
//! candle-transformers' `qwen3::Model` is written for generation: it keeps a KV cache that grows
//! with every call and takes no padding mask, so a second batch would attend to the first one's
//! keys. This forward is stateless. Batches are right-padded: in a causal decoder a real token
//! only ever attends to earlier positions, which are all real, so padding never changes a real
//! token's state and every row keeps positions 0..len, exactly as when embedded alone.
//! Pad positions compute throw-away values that pooling ignores.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

mod attention;
mod config;
mod fused;
mod layer;
mod mlp;

use attention::Positions;
pub use config::{Qwen3Config, RopeParameters};
use layer::Layer;

/// A loaded Qwen3 encoder.
pub struct Qwen3 {
    cfg: Qwen3Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    eps: f32,
    inv_freq: Vec<f32>,
    device: Device,
    dtype: DType,
    /// Run attention and SwiGLU with the fused CPU kernels (CPU + f32; tests turn it off to
    /// check both paths against each other).
    pub fused_cpu: bool,
}

/// Which positions' states the caller wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// State of each row's last real token.
    Last,
    /// Masked mean over each row's real tokens.
    Mean,
}

/// Per-stage wall time of a forward, for `sidtool bench embed`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardTimes {
    pub projections: f64,
    pub attention: f64,
    pub mlp: f64,
    pub other: f64,
}

impl Qwen3 {
    /// Load the weights by their Hugging Face names (`vb` at the model root: `embed_tokens`,
    /// `layers.{i}`, `norm`), block by block.
    pub fn load(cfg: Qwen3Config, vb: VarBuilder, device: &Device, dtype: DType) -> Result<Self> {
        let h = cfg.hidden_size;
        let hd = cfg.head_dim();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("layers").pp(i), &cfg))
            .collect::<Result<Vec<_>>>()?;
        // transformers computes the RoPE angles in f32 whatever the model dtype; so do we.
        let inv_freq = (0..hd)
            .step_by(2)
            .map(|i| (1.0 / cfg.rope_theta().powf(i as f64 / hd as f64)) as f32)
            .collect();
        Ok(Qwen3 {
            embed: vb.get((cfg.vocab_size, h), "embed_tokens.weight")?,
            norm: vb.get(h, "norm.weight")?,
            eps: cfg.rms_norm_eps as f32,
            layers,
            inv_freq,
            device: device.clone(),
            dtype,
            fused_cpu: device.is_cpu() && dtype == DType::F32,
            cfg,
        })
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Matmul FLOPs of one forward over `tokens` tokens in rows of length `t`, counted the way
    /// the benchmark reports them (2 per multiply-add; projections plus attention).
    pub(crate) fn flops(&self, tokens: usize, t: usize) -> f64 {
        let c = &self.cfg;
        let (h, hd) = (c.hidden_size as f64, c.head_dim() as f64);
        let (nh, nkv) = (c.num_attention_heads as f64, c.num_key_value_heads as f64);
        let per_token_proj =
            h * (nh + 2.0 * nkv) * hd + nh * hd * h + 3.0 * h * c.intermediate_size as f64;
        let per_token_attn = 2.0 * nh * hd * t as f64;
        2.0 * tokens as f64 * (per_token_proj + per_token_attn) * c.num_hidden_layers as f64
    }

    /// cos and sin tables for positions 0..t, (t, head_dim/2) row-major.
    fn rope_vecs(&self, t: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in 0..t {
            for &f in &self.inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        (cos, sin)
    }

    /// cos and sin tables for positions 0..t as tensors, shape (t, head_dim/2).
    fn rope_tables(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (cos, sin) = self.rope_vecs(t);
        let cos = Tensor::from_vec(cos, (t, half), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (t, half), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// Pooled final-norm states, one f32 row per sequence. Rows are right-padded internally.
    pub fn forward(
        &self,
        seqs: &[&[u32]],
        output: Output,
        times: Option<&mut ForwardTimes>,
    ) -> Result<Vec<Vec<f32>>> {
        let b = seqs.len();
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if b == 0 || t == 0 {
            return Ok(seqs
                .iter()
                .map(|_| vec![0.0; self.cfg.hidden_size])
                .collect());
        }
        let mut dummy = ForwardTimes::default();
        let times = times.unwrap_or(&mut dummy);
        if self.fused_cpu {
            return self.forward_fused(seqs, t, output, times);
        }
        let mut clock = Timer::new(&self.device);
        let c = &self.cfg;
        let h = c.hidden_size;
        let mut ids = Vec::with_capacity(b * t);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(0u32, t - s.len()));
        }
        let ids = Tensor::from_vec(ids, b * t, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?; // (b·t, h)
        let (cos, sin) = self.rope_tables(t)?;
        let pos = Positions {
            cos,
            sin,
            mask: causal_mask(t, &self.device, self.dtype)?,
        };
        times.other += clock.lap()?;
        for layer in &self.layers {
            x = layer.forward(x, (b, t), &pos, &mut clock, times)?;
        }
        let pooled = match output {
            Output::Last => {
                let idx = crate::embed::layers::pooling::last_token_rows(seqs, t);
                let idx = Tensor::from_vec(idx, b, &self.device)?;
                candle_nn::ops::rms_norm(&x.index_select(&idx, 0)?, &self.norm, self.eps)?
                    .to_dtype(DType::F32)?
            }
            Output::Mean => {
                let normed = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?
                    .to_dtype(DType::F32)?
                    .reshape((b, t, h))?;
                let mut m = Vec::with_capacity(b * t);
                for s in seqs {
                    let w = 1.0 / s.len() as f32;
                    m.extend((0..t).map(|p| if p < s.len() { w } else { 0.0 }));
                }
                let m = Tensor::from_vec(m, (b, t, 1), &self.device)?;
                normed.broadcast_mul(&m)?.sum(1)?
            }
        };
        let rows = pooled.to_vec2::<f32>()?;
        times.other += clock.lap()?;
        Ok(rows)
    }
}

/// (1, 1, 1, t, t) additive mask: 0 on and below the diagonal, the dtype's most negative
/// finite value above it (finite, so a row can never turn into NaN).
fn causal_mask(t: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let neg = match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.38e38,
        _ => f32::MIN,
    };
    let m: Vec<f32> = (0..t * t)
        .map(|i| if i % t > i / t { neg } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(m, (1, 1, 1, t, t), device)?.to_dtype(dtype)?)
}

/// Wall-clock laps; on an accelerator it synchronises first so a lap covers the work done.
pub(super) struct Timer {
    device: Device,
    last: std::time::Instant,
}

impl Timer {
    pub(super) fn new(device: &Device) -> Self {
        Timer {
            device: device.clone(),
            last: std::time::Instant::now(),
        }
    }

    pub(super) fn lap(&mut self) -> Result<f64> {
        self.device.synchronize()?;
        let now = std::time::Instant::now();
        let s = (now - self.last).as_secs_f64();
        self.last = now;
        Ok(s)
    }
}
