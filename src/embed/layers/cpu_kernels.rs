//! Fused CPU kernels for the f32 encoder forward.
//!
//! Written as a chain of candle ops, one attention layer makes eight full copies of the
//! activations (narrow, reshape, transpose, contiguous, rope, scale, mask, softmax), each a
//! single pass over tens of MB, and candle's element-wise ops on the CPU use one thread. Here
//! q/k RMSNorm and RoPE are applied in place, row-parallel, and each (item, KV head) pair
//! runs its score GEMM, softmax and value GEMM on small buffers that stay in cache, reading
//! Q, K and V straight out of the projection output through strides.

use rayon::prelude::*;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attn {
    pub b: usize,
    pub t: usize,
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
    pub eps: f32,
}

fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    for (v, g) in x.iter_mut().zip(w) {
        *v = *v * r * g;
    }
}

/// Rotate-half RoPE of one head vector at the position whose tables are `cos`, `sin`.
fn rope_in_place(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (a, b) = x.split_at_mut(half);
    for i in 0..half {
        let (x0, x1) = (a[i], b[i]);
        a[i] = x0 * cos[i] - x1 * sin[i];
        b[i] = x1 * cos[i] + x0 * sin[i];
    }
}

/// Raw output pointer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its own item and heads).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Through a method, so closures capture the whole (Send) wrapper, not the raw field.
    ///
    /// # Safety
    /// `offset` must lie inside the buffer the pointer came from.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: guaranteed by the caller.
        unsafe { self.0.add(offset) }
    }
}

/// Causal self-attention of right-padded rows.
///
/// `qkv`: (b·t, (nh + 2·nkv)·hd) projection output, modified in place (q/k normalised and
/// rotated). `cos`, `sin`: (t, hd/2). `out`: (b·t, nh·hd).
pub(crate) fn attention(
    s: Attn,
    qkv: &mut [f32],
    q_norm: &[f32],
    k_norm: &[f32],
    cos: &[f32],
    sin: &[f32],
    out: &mut [f32],
) {
    let Attn {
        b,
        t,
        nh,
        nkv,
        hd,
        eps,
    } = s;
    let width = (nh + 2 * nkv) * hd;
    let half = hd / 2;
    assert_eq!(qkv.len(), b * t * width);
    assert_eq!(out.len(), b * t * nh * hd);
    qkv.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
        let p = r % t;
        let (c, sn) = (&cos[p * half..][..half], &sin[p * half..][..half]);
        for (hi, head) in row[..(nh + nkv) * hd].chunks_mut(hd).enumerate() {
            rms_norm_in_place(head, if hi < nh { q_norm } else { k_norm }, eps);
            rope_in_place(head, c, sn);
        }
    });
    let g = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let qkv: &[f32] = qkv;
    let dst = OutPtr(out.as_mut_ptr());
    (0..b * nkv).into_par_iter().for_each_init(
        || vec![0f32; t * t],
        |scores, task| {
            let (item, kvh) = (task / nkv, task % nkv);
            let base = item * t * width;
            let k = &qkv[base + (nh + kvh) * hd..];
            let v = &qkv[base + (nh + nkv + kvh) * hd..];
            for j in 0..g {
                let h = kvh * g + j;
                let q = &qkv[base + h * hd..];
                // SAFETY (both GEMMs): strides walk (t × hd) blocks of rows `width` apart,
                // inside `qkv` because every row index is < t; `scores` is t × t; the output
                // block is item's t rows, columns h·hd.. of `out`, which no other task writes.
                unsafe {
                    gemm::gemm(
                        t,
                        t,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        t as isize,
                        false,
                        q.as_ptr(),
                        1,
                        width as isize,
                        k.as_ptr(),
                        width as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (tq, row) in scores.chunks_mut(t).enumerate() {
                    let live = &mut row[..=tq];
                    let m = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    for x in live.iter_mut() {
                        *x = (*x - m).exp();
                        sum += *x;
                    }
                    let inv = 1.0 / sum;
                    live.iter_mut().for_each(|x| *x *= inv);
                    row[tq + 1..].fill(0.0);
                }
                unsafe {
                    gemm::gemm(
                        t,
                        hd,
                        t,
                        dst.at(item * t * nh * hd + h * hd),
                        1,
                        (nh * hd) as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        t as isize,
                        v.as_ptr(),
                        1,
                        width as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        },
    );
}

/// SwiGLU: `gu` rows are [gate | up] (2·i wide); out = silu(gate) · up, (rows, i).
pub(crate) fn silu_mul(gu: &[f32], i: usize, out: &mut [f32]) {
    out.par_chunks_mut(i)
        .zip(gu.par_chunks(2 * i))
        .for_each(|(o, row)| {
            let (gate, up) = row.split_at(i);
            for ((o, &g), &u) in o.iter_mut().zip(gate).zip(up) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
}

/// RMSNorm of every `w.len()`-wide row of `x` into `out`, rows in parallel.
pub(crate) fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let h = w.len();
    out.par_chunks_mut(h)
        .zip(x.par_chunks(h))
        .for_each(|(o, row)| {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / h as f32;
            let r = 1.0 / (ms + eps).sqrt();
            for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
                *o = v * r * g;
            }
        });
}

/// Add `bias` to every row of `x`.
pub(crate) fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    x.par_chunks_mut(bias.len()).for_each(|row| {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    });
}
