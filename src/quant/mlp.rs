//! A whole MLP `h₀ = x, h_l = ReLU(h_{l−1} W_lᵀ + b_l), y = h_{L−1} W_Lᵀ + b_L` as one candle
//! custom op, for RQ-VAE and GenSAR training. All weights and biases live in one flat
//! parameter tensor. The forward pass keeps its hidden activations in the op until the op
//! (with the graph) is dropped, so a graph may be differentiated more than once.
//!
//! Composed from candle ops, a layer is a matmul on a transposed view, a broadcast add and a
//! ReLU, each single-threaded outside the matmul. One custom op per layer fixed that, but
//! candle's backward still creates a zero tensor and adds to it for every gradient it stores,
//! and the op copied each incoming gradient: on the benchmark that was about a third
//! of an epoch outside the GEMMs. As one op, the hidden activations and their gradients never
//! leave it; candle sees one input, one parameter tensor and one output per MLP. The GEMMs go
//! through [`sgemm_ex`] (all cores); the input gradient is skipped when nothing needs it (a
//! layer fed straight from data).

use crate::gemm::{sgemm_ex, sgemm_new};
use crate::quant::cpu_data::{slice, with_data};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Rows per block of the bias-gradient sum.
const BIAS_BLOCK_ROWS: usize = 64;
/// Values per parallel task of the ReLU mask (a task per value costs more than the mask).
const MASK_CHUNK: usize = 16 * 1024;

/// Where layer `l`'s weight (out × in, row-major) and bias start in the flat parameters.
fn offsets(widths: &[usize]) -> Vec<(usize, usize)> {
    let mut at = 0;
    widths
        .windows(2)
        .map(|w| {
            let (inp, out) = (w[0], w[1]);
            let o = (at, at + out * inp);
            at += out * inp + out;
            o
        })
        .collect()
}

/// Number of parameters of an MLP with these layer widths (in → … → out).
pub(crate) fn param_count(widths: &[usize]) -> usize {
    widths.windows(2).map(|w| w[1] * w[0] + w[1]).sum()
}

/// Each layer's (weight, bias) slices of the flat parameters.
pub fn layers<'a>(widths: &[usize], params: &'a [f32]) -> Vec<(&'a [f32], &'a [f32])> {
    offsets(widths)
        .into_iter()
        .zip(widths.windows(2))
        .map(|((w, b), io)| (&params[w..b], &params[b..b + io[1]]))
        .collect()
}

/// The op: ReLU after every layer but the last.
pub(crate) struct MlpOp {
    widths: Vec<usize>,
    /// Compute dL/dx (false for an MLP fed straight from data: no gradient reaches x even if
    /// it is a variable).
    input_grad: bool,
    /// The hidden activations of the forward pass, for the backward.
    saved: Mutex<Vec<Vec<f32>>>,
}

impl MlpOp {
    pub fn new(widths: &[usize], input_grad: bool) -> Self {
        assert!(widths.len() >= 2, "an MLP has at least one layer");
        MlpOp {
            widths: widths.to_vec(),
            input_grad,
            saved: Mutex::new(Vec::new()),
        }
    }
}

/// `y = h Wᵀ + b`, then ReLU when asked.
fn layer_forward(h: &[f32], rows: usize, inp: usize, w: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
    let out = b.len();
    let mut y = sgemm_new(h, rows, inp, false, w, out, true);
    y.par_chunks_mut(out.max(1)).for_each(|row| {
        for (v, b) in row.iter_mut().zip(b) {
            *v += b;
            if relu && *v < 0.0 {
                *v = 0.0;
            }
        }
    });
    y
}

/// Column sums of G (rows × out), row block by row block (contiguous reads), added up in
/// block order: deterministic for any thread count.
fn column_sums(g: &[f32], out: usize, into: &mut [f32]) {
    let parts = g
        .par_chunks(BIAS_BLOCK_ROWS * out.max(1))
        .map(|block| {
            let mut acc = vec![0f32; out];
            for row in block.chunks(out.max(1)) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            acc
        })
        .collect::<Vec<_>>();
    into.fill(0.0);
    for part in parts {
        into.iter_mut().zip(&part).for_each(|(a, v)| *a += v);
    }
}

/// The forward pass: the hidden activations (kept for the backward) and the output.
fn forward(x: &[f32], rows: usize, widths: &[usize], p: &[f32]) -> (Vec<Vec<f32>>, Vec<f32>) {
    let layers = layers(widths, p);
    let last = layers.len() - 1;
    let mut acts: Vec<Vec<f32>> = Vec::with_capacity(last);
    for (l, (w, b)) in layers.iter().enumerate() {
        let h = if l == 0 { x } else { &acts[l - 1] };
        let y = layer_forward(h, rows, widths[l], w, b, l < last);
        if l == last {
            return (acts, y);
        }
        acts.push(y);
    }
    unreachable!("the loop returns at the last layer")
}

/// The backward pass from dL/dy (`g_out`): the parameters' gradient, and the input's when
/// `input_grad`.
fn backward(
    xs: &[f32],
    rows: usize,
    widths: &[usize],
    p: &[f32],
    acts: &[Vec<f32>],
    g_out: &[f32],
    input_grad: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let mut gp = vec![0f32; param_count(widths)];
    let offs = offsets(widths);
    let layers = layers(widths, p);
    // The gradient at the current layer's output; borrowed at the top (the last layer has no
    // ReLU to mask it with), owned below.
    let mut owned: Option<Vec<f32>> = None;
    for l in (0..layers.len()).rev() {
        let (inp, out) = (widths[l], widths[l + 1]);
        let g: &[f32] = owned.as_deref().unwrap_or(g_out);
        let h_in = if l == 0 { xs } else { &acts[l - 1] };
        let (w_at, b_at) = offs[l];
        // dW = Gᵀ H: (out × rows)·(rows × in), G given as (rows × out).
        sgemm_ex(
            g,
            out,
            rows,
            true,
            h_in,
            inp,
            false,
            &mut gp[w_at..b_at],
            false,
        );
        column_sums(g, out, &mut gp[b_at..b_at + out]);
        if l == 0 && !input_grad {
            return (None, gp);
        }
        // dH = G W: (rows × out)·(out × in), then the ReLU mask of the layer that produced H.
        let mut gh = sgemm_new(g, rows, out, false, layers[l].0, inp, false);
        if l > 0 {
            gh.par_chunks_mut(MASK_CHUNK)
                .zip(acts[l - 1].par_chunks(MASK_CHUNK))
                .for_each(|(g, h)| {
                    for (g, h) in g.iter_mut().zip(h) {
                        *g = if *h > 0.0 { *g } else { 0.0 };
                    }
                });
        }
        owned = Some(gh);
    }
    (owned, gp)
}

/// Checks an op's input against its widths and returns (rows, parameter count).
fn check(widths: &[usize], x: &Layout, p: &Layout) -> candle_core::Result<usize> {
    let (rows, inp) = x.shape().dims2()?;
    let n_params = p.shape().dims1()?;
    if inp != widths[0] || n_params != param_count(widths) {
        candle_core::bail!(
            "mlp op: input {:?} and {n_params} parameters for widths {widths:?}",
            x.shape()
        );
    }
    Ok(rows)
}

/// The backward of either op, from the forward's saved activations.
fn op_backward(
    widths: &[usize],
    input_grad: bool,
    acts: &[Vec<f32>],
    x: &Tensor,
    params: &Tensor,
    g_out: &[f32],
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    if acts.len() + 2 != widths.len() {
        candle_core::bail!("mlp op: backward before the forward pass ran on the CPU");
    }
    let rows = x.dim(0)?;
    let (gx, gp) = with_data(x, |xs| {
        with_data(params, |p| {
            backward(xs, rows, widths, p, acts, g_out, input_grad)
        })
    })??;
    let gx = gx
        .map(|g| Tensor::from_vec(g, x.shape(), x.device()))
        .transpose()?;
    Ok((
        gx,
        Some(Tensor::from_vec(gp, params.shape(), params.device())?),
    ))
}

impl CustomOp2 for MlpOp {
    fn name(&self) -> &'static str {
        "sidtool-mlp"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = check(&self.widths, l1, l2)?;
        let (acts, y) = forward(slice(s1, l1)?, rows, &self.widths, slice(s2, l2)?);
        *self.saved.lock().expect("not poisoned") = acts;
        let out = *self.widths.last().expect("widths");
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let acts = self.saved.lock().expect("not poisoned");
        with_data(grad, |g| {
            op_backward(&self.widths, self.input_grad, &acts, x, params, g)
        })?
    }
}

/// Values per block of the loss's parallel sum.
const LOSS_BLOCK: usize = 16 * 1024;

/// An MLP and its reconstruction loss `mean((mlp(x) − target)²)` as one op (RQ-VAE's decoder):
/// the (rows × D) prediction and its gradient never become candle tensors. The gradient flows
/// to the input and the parameters, not to the target (data). The sum runs over fixed blocks
/// added in order, so the loss does not depend on the thread count.
pub(crate) struct MlpLossOp {
    mlp: MlpOp,
    /// The prediction of the forward pass, for the backward.
    prediction: Mutex<Vec<f32>>,
}

impl MlpLossOp {
    pub fn new(widths: &[usize], input_grad: bool) -> Self {
        MlpLossOp {
            mlp: MlpOp::new(widths, input_grad),
            prediction: Mutex::new(Vec::new()),
        }
    }
}

impl CustomOp3 for MlpLossOp {
    fn name(&self) -> &'static str {
        "sidtool-mlp-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let widths = &self.mlp.widths;
        let rows = check(widths, l1, l2)?;
        let out = *widths.last().expect("widths");
        if l3.shape().dims2()? != (rows, out) {
            candle_core::bail!(
                "mlp loss op: target {:?}, prediction ({rows}, {out})",
                l3.shape()
            );
        }
        let (acts, y) = forward(slice(s1, l1)?, rows, widths, slice(s2, l2)?);
        let t = slice(s3, l3)?;
        let parts: Vec<f64> = y
            .par_chunks(LOSS_BLOCK)
            .zip(t.par_chunks(LOSS_BLOCK))
            .map(|(a, b)| crate::matrix::sq_dist_f64(a, b))
            .collect();
        let mean = parts.iter().sum::<f64>() / y.len().max(1) as f64;
        *self.mlp.saved.lock().expect("not poisoned") = acts;
        *self.prediction.lock().expect("not poisoned") = y;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let acts = self.mlp.saved.lock().expect("not poisoned");
        let y = self.prediction.lock().expect("not poisoned");
        // d mean((y − t)²)/dy = 2 (y − t) / n.
        let scale = 2.0 * grad.to_scalar::<f32>()? / y.len().max(1) as f32;
        let g: Vec<f32> = with_data(target, |t| {
            if t.len() != y.len() {
                candle_core::bail!("mlp loss op: backward before the forward pass ran on the CPU");
            }
            Ok(y.par_iter()
                .zip(t)
                .with_min_len(LOSS_BLOCK)
                .map(|(y, t)| scale * (y - t))
                .collect())
        })??;
        let (gx, gp) = op_backward(&self.mlp.widths, self.mlp.input_grad, &acts, x, params, &g)?;
        Ok((gx, gp, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The op's forward and gradients equal candle's own ops on the same numbers.
    #[test]
    fn matches_candle_autograd() {
        let dev = Device::Cpu;
        let widths = [3usize, 4, 5, 2];
        let x = Var::new(&[[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.75]], &dev).unwrap();
        let n = param_count(&widths);
        let p: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 13.0)
            .collect();
        let params = Var::from_tensor(&Tensor::from_vec(p.clone(), n, &dev).unwrap()).unwrap();
        let target = Tensor::new(&[[1f32, 0.0], [0.0, 2.0]], &dev).unwrap();
        // The same MLP from candle ops, on per-layer variables holding the same numbers.
        let vars: Vec<(Var, Var)> = layers(&widths, &p)
            .into_iter()
            .zip(widths.windows(2))
            .map(|((w, b), io)| {
                (
                    Var::from_tensor(&Tensor::from_slice(w, (io[1], io[0]), &dev).unwrap())
                        .unwrap(),
                    Var::from_tensor(&Tensor::from_slice(b, io[1], &dev).unwrap()).unwrap(),
                )
            })
            .collect();
        let loss = |y: &Tensor| (y - &target).unwrap().sqr().unwrap().sum_all().unwrap();
        let ours = x
            .as_tensor()
            .apply_op2(params.as_tensor(), MlpOp::new(&widths, true))
            .unwrap();
        let mut theirs = x.as_tensor().clone();
        for (l, (w, b)) in vars.iter().enumerate() {
            theirs = theirs
                .matmul(&w.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap();
            if l + 1 < vars.len() {
                theirs = theirs.relu().unwrap();
            }
        }
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let close = |a: &[f32], c: &[f32], what: &str| {
            assert_eq!(a.len(), c.len());
            for (p, q) in a.iter().zip(c) {
                assert!((p - q).abs() < 1e-5, "{what}: {a:?} vs {c:?}");
            }
        };
        close(&flat(&ours), &flat(&theirs), "output");
        assert!(
            flat(&theirs).iter().any(|v| v.abs() > 0.1),
            "a live network"
        );
        let (g1, g2) = (
            loss(&ours).backward().unwrap(),
            loss(&theirs).backward().unwrap(),
        );
        close(
            &flat(g1.get(x.as_tensor()).unwrap()),
            &flat(g2.get(x.as_tensor()).unwrap()),
            "input gradient",
        );
        // The per-layer variables' gradients in the flat layout: W₁, b₁, W₂, b₂, …
        let layer_grads = |g: &candle_core::backprop::GradStore| -> Vec<f32> {
            vars.iter()
                .flat_map(|(w, b)| {
                    let mut v = flat(g.get(w.as_tensor()).unwrap());
                    v.extend(flat(g.get(b.as_tensor()).unwrap()));
                    v
                })
                .collect()
        };
        let ours_p = flat(g1.get(params.as_tensor()).unwrap());
        close(&ours_p, &layer_grads(&g2), "parameter gradient");
        // Without the input gradient, the parameters' gradient is unchanged.
        let no_input = x
            .as_tensor()
            .apply_op2(params.as_tensor(), MlpOp::new(&widths, false))
            .unwrap();
        let g3 = loss(&no_input).backward().unwrap();
        close(
            &flat(g3.get(params.as_tensor()).unwrap()),
            &ours_p,
            "parameter gradient without input gradient",
        );
        // The MLP with its mean squared error as one op: the same loss and gradients as the
        // composition (a mean, where the loss above is a sum).
        let fused = x
            .as_tensor()
            .apply_op3(params.as_tensor(), &target, MlpLossOp::new(&widths, true))
            .unwrap();
        let mean = (&theirs - &target)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        close(&flat(&fused), &flat(&mean), "loss");
        let (g4, g5) = (fused.backward().unwrap(), mean.backward().unwrap());
        close(
            &flat(g4.get(x.as_tensor()).unwrap()),
            &flat(g5.get(x.as_tensor()).unwrap()),
            "input gradient through the loss",
        );
        let fused_p = flat(g4.get(params.as_tensor()).unwrap());
        close(
            &fused_p,
            &layer_grads(&g5),
            "parameter gradient through the loss",
        );
        // The graph can be differentiated again: the op keeps what its backward needs.
        let again = fused.backward().unwrap();
        close(
            &flat(again.get(params.as_tensor()).unwrap()),
            &fused_p,
            "second backward",
        );
        let again = loss(&ours).backward().unwrap();
        close(
            &flat(again.get(params.as_tensor()).unwrap()),
            &ours_p,
            "second backward of the plain op",
        );
    }

    /// The loss is a block-ordered sum: the same bits on one thread and on several.
    #[test]
    fn loss_does_not_depend_on_the_thread_count() {
        let dev = Device::Cpu;
        let widths = [64usize, 32, 300];
        let (rows, n) = (200, param_count(&widths));
        let det = |i: usize, m: usize| ((i * 7919 % m) as f32 - m as f32 / 2.0) / m as f32;
        let x = Tensor::from_vec(
            (0..rows * 64).map(|i| det(i, 97)).collect(),
            (rows, 64),
            &dev,
        )
        .unwrap();
        let p = Tensor::from_vec((0..n).map(|i| det(i, 89)).collect(), n, &dev).unwrap();
        let t = Tensor::from_vec(
            (0..rows * 300).map(|i| det(i, 83)).collect(),
            (rows, 300),
            &dev,
        )
        .unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    x.apply_op3(&p, &t, MlpLossOp::new(&widths, false))
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                })
        };
        assert_eq!(run(1).to_bits(), run(3).to_bits());
    }
}
