//! Qwen3 as a batched sentence encoder.
//!
//! candle-transformers' `qwen3::Model` is written for generation: it keeps a KV cache that grows
//! with every call and takes no padding mask, so a second batch would attend to the first one's
//! keys. This forward is stateless. Batches are right-padded: in a causal decoder a real token
//! only ever attends to earlier positions, which are all real, so padding never changes a real
//! token's state and every row keeps positions 0..len, exactly as when embedded alone.
//! Pad positions compute throw-away values that pooling ignores.

use crate::embed::linear::Linear;
use crate::embed::weights::Weights;
use crate::error::Result;
use candle_core::{DType, Device, Tensor};

mod config;
mod fused;

pub use config::{Qwen3Config, RopeParameters};

struct Layer {
    input_norm: Tensor,
    /// q, k and v projections stacked into one matrix: one GEMM instead of three.
    qkv: Linear,
    qkv_bias: Option<Tensor>,
    q_norm: Tensor,
    k_norm: Tensor,
    /// The same two norms as plain f32, for the fused CPU kernel.
    q_norm_f32: Vec<f32>,
    k_norm_f32: Vec<f32>,
    o: Linear,
    post_norm: Tensor,
    /// gate and up projections stacked: one GEMM instead of two.
    gate_up: Linear,
    down: Linear,
}

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
    pub fn load(cfg: Qwen3Config, w: &Weights, device: &Device, dtype: DType) -> Result<Self> {
        let h = cfg.hidden_size;
        let hd = cfg.head_dim();
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let get = |name: &str, shape: &[usize]| w.get(name, shape, device, dtype);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("layers.{i}");
            let q = get(&format!("{p}.self_attn.q_proj.weight"), &[nh * hd, h])?;
            let k = get(&format!("{p}.self_attn.k_proj.weight"), &[nkv * hd, h])?;
            let v = get(&format!("{p}.self_attn.v_proj.weight"), &[nkv * hd, h])?;
            let qkv_bias = if cfg.attention_bias {
                let qb = get(&format!("{p}.self_attn.q_proj.bias"), &[nh * hd])?;
                let kb = get(&format!("{p}.self_attn.k_proj.bias"), &[nkv * hd])?;
                let vb = get(&format!("{p}.self_attn.v_proj.bias"), &[nkv * hd])?;
                Some(Tensor::cat(&[qb, kb, vb], 0)?)
            } else {
                None
            };
            let gate = get(
                &format!("{p}.mlp.gate_proj.weight"),
                &[cfg.intermediate_size, h],
            )?;
            let up = get(
                &format!("{p}.mlp.up_proj.weight"),
                &[cfg.intermediate_size, h],
            )?;
            let q_norm = get(&format!("{p}.self_attn.q_norm.weight"), &[hd])?;
            let k_norm = get(&format!("{p}.self_attn.k_norm.weight"), &[hd])?;
            layers.push(Layer {
                q_norm_f32: q_norm.to_dtype(DType::F32)?.to_vec1()?,
                k_norm_f32: k_norm.to_dtype(DType::F32)?.to_vec1()?,
                q_norm,
                k_norm,
                input_norm: get(&format!("{p}.input_layernorm.weight"), &[h])?,
                qkv: Linear::new(Tensor::cat(&[q, k, v], 0)?)?,
                qkv_bias,
                o: Linear::new(get(&format!("{p}.self_attn.o_proj.weight"), &[h, nh * hd])?)?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                gate_up: Linear::new(Tensor::cat(&[gate, up], 0)?)?,
                down: Linear::new(get(
                    &format!("{p}.mlp.down_proj.weight"),
                    &[h, cfg.intermediate_size],
                )?)?,
            });
        }
        // transformers computes the RoPE angles in f32 whatever the model dtype; so do we.
        let inv_freq = (0..hd)
            .step_by(2)
            .map(|i| (1.0 / cfg.rope_theta().powf(i as f64 / hd as f64)) as f32)
            .collect();
        Ok(Qwen3 {
            embed: get("embed_tokens.weight", &[cfg.vocab_size, h])?,
            norm: get("norm.weight", &[h])?,
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

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Matmul FLOPs of one forward over `tokens` tokens in rows of length `t`, counted the way
    /// the benchmark reports them (2 per multiply-add; projections plus attention).
    pub fn flops(&self, tokens: usize, t: usize) -> f64 {
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
        let mask = causal_mask(t, &self.device, self.dtype)?;
        times.other += clock.lap()?;
        for layer in &self.layers {
            let hs = candle_nn::ops::rms_norm(&x, &layer.input_norm, self.eps)?;
            let mut qkv = layer.qkv.forward(&hs)?;
            if let Some(bias) = &layer.qkv_bias {
                qkv = qkv.broadcast_add(bias)?;
            }
            times.projections += clock.lap()?;
            let attn = self.attend(&qkv, layer, b, t, &cos, &sin, &mask)?;
            times.attention += clock.lap()?;
            x = (x + layer.o.forward(&attn)?)?;
            times.projections += clock.lap()?;
            let hs = candle_nn::ops::rms_norm(&x, &layer.post_norm, self.eps)?;
            let gu = layer.gate_up.forward(&hs)?;
            let i = c.intermediate_size;
            let act = (candle_nn::ops::silu(&gu.narrow(1, 0, i)?)? * gu.narrow(1, i, i)?)?;
            x = (x + layer.down.forward(&act)?)?;
            times.mlp += clock.lap()?;
        }
        let pooled = match output {
            Output::Last => {
                let idx = crate::embed::pooling::last_token_rows(seqs, t);
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

impl Qwen3 {
    /// Attention as candle ops: any device and dtype.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        qkv: &Tensor,
        layer: &Layer,
        b: usize,
        t: usize,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let hd = c.head_dim();
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let g = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let heads = |start: usize, n: usize| -> Result<Tensor> {
            Ok(qkv.narrow(1, start * hd, n * hd)?.reshape((b, t, n, hd))?)
        };
        let q = candle_nn::ops::rms_norm(&heads(0, nh)?, &layer.q_norm, self.eps)?
            .transpose(1, 2)?
            .contiguous()?;
        let k = candle_nn::ops::rms_norm(&heads(nh, nkv)?, &layer.k_norm, self.eps)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = heads(nh + nkv, nkv)?.transpose(1, 2)?.contiguous()?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        // Grouped-query attention without copying K and V: query heads that share a KV
        // head are stacked along the row axis, (b, nkv, g·t, hd).
        let q = q.reshape((b, nkv, g * t, hd))?;
        let scores = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, nkv, g, t, t))?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, nkv, g * t, t))?;
        Ok(probs
            .matmul(&v)?
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b * t, nh * hd))?)
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
struct Timer {
    device: Device,
    last: std::time::Instant,
}

impl Timer {
    fn new(device: &Device) -> Self {
        Timer {
            device: device.clone(),
            last: std::time::Instant::now(),
        }
    }

    fn lap(&mut self) -> Result<f64> {
        self.device.synchronize()?;
        let now = std::time::Instant::now();
        let s = (now - self.last).as_secs_f64();
        self.last = now;
        Ok(s)
    }
}
