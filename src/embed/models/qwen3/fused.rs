//! The CPU f32 forward of [`Qwen3`]: plain buffers, shared GEMM, fused kernels.

use super::{Output, Qwen3, Timer};
use crate::embed::layers::cpu_kernels;
use crate::embed::models::qwen3::ForwardTimes;
use crate::error::Result;
use candle_core::Tensor;

/// A CPU f32 tensor's data. The guard keeps the storage borrowed while the slice is used.
fn host(t: &Tensor) -> Result<impl std::ops::Deref<Target = candle_core::Storage> + '_> {
    let (g, layout) = t.storage_and_layout();
    assert!(
        layout.is_contiguous() && layout.start_offset() == 0,
        "weights are stored contiguous from offset 0"
    );
    Ok(g)
}

fn f32s(g: &candle_core::Storage) -> Result<&[f32]> {
    match g {
        candle_core::Storage::Cpu(c) => Ok(c.as_slice::<f32>()?),
        _ => unreachable!("the fused path only runs on CPU tensors"),
    }
}

impl Qwen3 {
    /// The CPU f32 forward: the residual stream and every intermediate live in reused plain
    /// buffers; projections are single GEMM calls (the o and down projections add straight
    /// into the residual), attention and SwiGLU are the fused kernels. No per-layer
    /// allocation and no tensor copies.
    pub(super) fn forward_fused(
        &self,
        seqs: &[&[u32]],
        t: usize,
        output: Output,
        times: &mut ForwardTimes,
    ) -> Result<Vec<Vec<f32>>> {
        use crate::gemm::sgemm;
        let mut clock = Timer::new(&self.device);
        let c = &self.cfg;
        let (b, h, hd, i) = (seqs.len(), c.hidden_size, c.head_dim(), c.intermediate_size);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let rows = b * t;
        let width = (nh + 2 * nkv) * hd;
        let mut x = vec![0f32; rows * h];
        {
            let g = host(&self.embed)?;
            let table = f32s(&g)?;
            for (r, s) in seqs.iter().enumerate() {
                for (p, &id) in s.iter().enumerate() {
                    let id = id as usize;
                    if id >= c.vocab_size {
                        return Err(crate::error::Error::Model(format!(
                            "token id {id} is outside the model's vocabulary ({}): tokenizer.json \
                             does not belong to this model",
                            c.vocab_size
                        )));
                    }
                    x[(r * t + p) * h..][..h].copy_from_slice(&table[id * h..][..h]);
                }
            }
        }
        let (cos, sin) = self.rope_vecs(t);
        let mut hs = vec![0f32; rows * h];
        let mut qkv = vec![0f32; rows * width];
        let mut attn = vec![0f32; rows * nh * hd];
        let mut gu = vec![0f32; rows * 2 * i];
        let mut act = vec![0f32; rows * i];
        let shape = cpu_kernels::Attn {
            b,
            t,
            nh,
            nkv,
            hd,
            eps: self.eps,
        };
        times.other += clock.lap()?;
        for layer in &self.layers {
            let (gn, gq, go, gp, ggu, gd) = (
                host(&layer.input_norm)?,
                host(layer.attn.qkv.weight())?,
                host(layer.attn.o.weight())?,
                host(&layer.post_norm)?,
                host(layer.mlp.gate_up.weight())?,
                host(layer.mlp.down.weight())?,
            );
            cpu_kernels::rms_norm_rows(&x, f32s(&gn)?, self.eps, &mut hs);
            sgemm(&hs, rows, h, f32s(&gq)?, width, true, &mut qkv, false);
            if let Some(bias) = &layer.attn.qkv_bias {
                let gb = host(bias)?;
                cpu_kernels::add_bias_rows(&mut qkv, f32s(&gb)?);
            }
            times.projections += clock.lap()?;
            cpu_kernels::attention(
                shape,
                &mut qkv,
                &layer.attn.q_norm_f32,
                &layer.attn.k_norm_f32,
                &cos,
                &sin,
                &mut attn,
            );
            times.attention += clock.lap()?;
            sgemm(&attn, rows, nh * hd, f32s(&go)?, h, true, &mut x, true);
            times.projections += clock.lap()?;
            cpu_kernels::rms_norm_rows(&x, f32s(&gp)?, self.eps, &mut hs);
            sgemm(&hs, rows, h, f32s(&ggu)?, 2 * i, true, &mut gu, false);
            cpu_kernels::silu_mul(&gu, i, &mut act);
            sgemm(&act, rows, i, f32s(&gd)?, h, true, &mut x, true);
            times.mlp += clock.lap()?;
        }
        let gnorm = host(&self.norm)?;
        let norm = f32s(&gnorm)?;
        let mut out = Vec::with_capacity(b);
        let mut tmp = vec![0f32; h];
        for (r, s) in seqs.iter().enumerate() {
            let mut v = vec![0f32; h];
            match output {
                Output::Last => {
                    let row = &x[(r * t + s.len() - 1) * h..][..h];
                    cpu_kernels::rms_norm_rows(row, norm, self.eps, &mut v);
                }
                Output::Mean => {
                    for p in 0..s.len() {
                        cpu_kernels::rms_norm_rows(
                            &x[(r * t + p) * h..][..h],
                            norm,
                            self.eps,
                            &mut tmp,
                        );
                        v.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
                    }
                    let inv = 1.0 / s.len() as f32;
                    v.iter_mut().for_each(|a| *a *= inv);
                }
            }
            out.push(v);
        }
        times.other += clock.lap()?;
        Ok(out)
    }
}
