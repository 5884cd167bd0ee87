//! A small decoder-only transformer over SID tokens (GPT-2 layout: pre-norm blocks of causal
//! self-attention and an MLP, with ReLU as SASRec and TIGER's T5 use (GELU's tanh and powf took
//! a third of a CPU training step), learned absolute positions, an untied output layer), written
//! like candle's model files: a `Config`, `load(vb)` per block, a stateless forward. The
//! forward takes the keys and values of earlier tokens, so decoding computes a user's history
//! once and every beam only its own few tokens.

use crate::error::Result;
use candle_core::{D, DType, Device, Module, Shape, Tensor, Var};
use candle_nn::{Embedding, Init, Linear, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use std::sync::{Arc, Mutex};

/// Added to the attention score of a key a query must not see. Finite, unlike -inf, so a
/// padding query that sees no key at all gets uniform weights instead of NaNs, which would
/// reach real rows through 0·NaN in the next matrix product.
pub(crate) const MASKED: f32 = -1e9;

/// Standard deviation of every random initial weight (GPT-2's).
const INIT_STD: f64 = 0.02;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub vocab: usize,
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    /// Longest sequence of tokens (positions are learned).
    pub positions: usize,
}

/// Keys and values of the tokens seen so far, per layer: (batch, heads, tokens, head dim).
#[derive(Clone)]
pub(crate) struct Kv {
    pub k: Tensor,
    pub v: Tensor,
}

/// Layer normalisation from differentiable ops: candle_nn's `LayerNorm` takes a fused kernel
/// on contiguous input that has no backward pass.
struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(LayerNorm {
            w: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            b: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm_slow(x, &self.w, &self.b, 1e-5)?)
    }
}

fn linear(vb: VarBuilder, inp: usize, out: usize) -> Result<Linear> {
    let w = vb.get_with_hints(
        (out, inp),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
    )?;
    let b = vb.get_with_hints(out, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

struct Attention {
    qkv: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Attention {
            qkv: linear(vb.pp("qkv"), cfg.dim, 3 * cfg.dim)?,
            out: linear(vb.pp("out"), cfg.dim, cfg.dim)?,
            heads: cfg.heads,
            head_dim: cfg.dim / cfg.heads,
        })
    }

    /// x: (b, t, dim); mask: additive, broadcastable to (b, heads, t, past + t). `past` has
    /// either b rows, or fewer rows u that b is a multiple of: rows `r·b/u..(r+1)·b/u` of x
    /// (a user's beams) all follow past row r (the user's history), which is then read in
    /// place instead of being copied for every beam. The keys and values returned are those of
    /// past and new tokens together, or, for grouped rows, of the new tokens only.
    fn forward(&self, x: &Tensor, mask: &Tensor, past: Option<&Kv>) -> Result<(Tensor, Kv)> {
        let (b, t, dim) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * dim, dim)?
                .reshape((b, t, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, mut k, mut v) = (split(0)?, split(1)?, split(2)?);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        if let Some(p) = past.filter(|p| p.k.dim(0).is_ok_and(|u| u != b)) {
            let y = self.grouped(&q, &k, &v, p, mask, scale)?;
            let y = y.transpose(1, 2)?.contiguous()?.reshape((b, t, dim))?;
            return Ok((self.out.forward(&y)?, Kv { k, v }));
        }
        if let Some(p) = past {
            k = Tensor::cat(&[&p.k, &k], 2)?;
            v = Tensor::cat(&[&p.v, &v], 2)?;
        }
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(mask)?;
        let w = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = w
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, dim))?;
        Ok((self.out.forward(&y)?, Kv { k, v }))
    }

    /// Attention of n = u·g rows of few new tokens (q, k, v: (n, heads, t, head dim)) over
    /// their group's past (u rows) and their own tokens: one product per (user, head) for the
    /// past, element-wise products for the few new tokens, instead of a small matrix product
    /// per beam and head, whose fixed cost dominated decoding.
    fn grouped(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        past: &Kv,
        mask: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        let (n, h, t, d) = q.dims4()?;
        let (u, _, tp, _) = past.k.dims4()?;
        let g = n / u;
        // (n, h, t, ·) ⇄ (u, h, g·t, ·): a user's beams side by side.
        let to_users = |x: &Tensor, w: usize| -> Result<Tensor> {
            Ok(x.reshape((u, g, h, t, w))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((u, h, g * t, w))?)
        };
        let to_rows = |x: &Tensor, w: usize| -> Result<Tensor> {
            Ok(x.reshape((u, h, g, t, w))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, h, t, w))?)
        };
        let s_past = to_rows(&to_users(q, d)?.matmul(&past.k.t()?.contiguous()?)?, tp)?;
        let s_new = q
            .unsqueeze(3)?
            .broadcast_mul(&k.unsqueeze(2)?)?
            .sum(D::Minus1)?;
        let scores = (Tensor::cat(&[&s_past, &s_new], 3)? * scale)?.broadcast_add(mask)?;
        let w = candle_nn::ops::softmax_last_dim(&scores)?;
        let y_past = to_rows(
            &to_users(&w.narrow(3, 0, tp)?.contiguous()?, tp)?.matmul(&past.v)?,
            d,
        )?;
        let y_new = w
            .narrow(3, tp, t)?
            .unsqueeze(4)?
            .broadcast_mul(&v.unsqueeze(2)?)?
            .sum(3)?;
        Ok((y_past + y_new)?)
    }
}

struct Block {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Block {
            ln1: LayerNorm::load(vb.pp("ln1"), cfg.dim)?,
            attn: Attention::load(vb.pp("attn"), cfg)?,
            ln2: LayerNorm::load(vb.pp("ln2"), cfg.dim)?,
            fc1: linear(vb.pp("fc1"), cfg.dim, 4 * cfg.dim)?,
            fc2: linear(vb.pp("fc2"), 4 * cfg.dim, cfg.dim)?,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor, past: Option<&Kv>) -> Result<(Tensor, Kv)> {
        let (a, kv) = self.attn.forward(&self.ln1.forward(x)?, mask, past)?;
        let x = (x + a)?;
        let m = self
            .fc2
            .forward(&self.fc1.forward(&self.ln2.forward(&x)?)?.relu()?)?;
        Ok(((x + m)?, kv))
    }
}

pub(crate) struct Model {
    tokens: Embedding,
    positions: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
}

impl Model {
    pub(crate) fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let emb = |name: &str, n: usize| -> Result<Embedding> {
            let w = vb.get_with_hints(
                (n, cfg.dim),
                &format!("{name}.weight"),
                Init::Randn {
                    mean: 0.0,
                    stdev: INIT_STD,
                },
            )?;
            Ok(Embedding::new(w, cfg.dim))
        };
        Ok(Model {
            tokens: emb("tokens", cfg.vocab)?,
            positions: emb("positions", cfg.positions)?,
            blocks: (0..cfg.layers)
                .map(|i| Block::load(vb.pp(format!("blocks.{i}")), cfg))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::load(vb.pp("ln_f"), cfg.dim)?,
            head: linear(vb.pp("head"), cfg.dim, cfg.vocab)?,
        })
    }

    /// Final hidden states (b, t, dim) of `tokens` (b, t) at `positions` (b, t), both u32,
    /// after the tokens whose keys and values are `past` (one per layer); and the keys and
    /// values of past and new tokens together.
    pub(crate) fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        past: Option<&[Kv]>,
    ) -> Result<(Tensor, Vec<Kv>)> {
        let mut x = (self.tokens.forward(tokens)? + self.positions.forward(positions)?)?;
        let mut kvs = Vec::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            let (y, kv) = b.forward(&x, mask, past.map(|p| &p[i]))?;
            x = y;
            kvs.push(kv);
        }
        Ok((self.ln_f.forward(&x)?, kvs))
    }

    /// Next-token logits of hidden states (n, dim) over the tokens `start..start + len`
    /// only, (n, len): a position that predicts a level-l token is only ever scored over level
    /// l's codes, in training as in the constrained decoding, which saves most of the output
    /// layer's work.
    pub(crate) fn logits(&self, hidden: &Tensor, (start, len): (u32, usize)) -> Result<Tensor> {
        let w = self.head.weight().narrow(0, start as usize, len)?;
        let b = self.head.bias().expect("made with a bias");
        let b = b.narrow(0, start as usize, len)?;
        Ok(hidden.matmul(&w.t()?)?.broadcast_add(&b)?)
    }
}

/// The additive causal mask (1, 1, t, t) of training, where right padding needs no mask of its
/// own: real tokens come before the padding and never see it.
pub(crate) fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t * t)
        .map(|k| if k % t > k / t { MASKED } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(m, (1, 1, t, t), device)?)
}

/// Parameters created in a fixed order from one seeded ChaCha8 stream, as trainable `Var`s:
/// candle's own initialisers draw from an unseeded generator on the CPU, and T2 must give the
/// same figures for the same `--seed`.
pub(crate) struct SeededVars {
    rng: Mutex<ChaCha8Rng>,
    vars: Arc<Mutex<Vec<Var>>>,
}

impl SeededVars {
    /// A `VarBuilder` whose every parameter is drawn from `seed`, and the list the parameters
    /// are collected in (for the optimiser).
    pub(crate) fn builder(
        seed: u64,
        device: &Device,
    ) -> (VarBuilder<'static>, Arc<Mutex<Vec<Var>>>) {
        let vars = Arc::new(Mutex::new(Vec::new()));
        let backend = SeededVars {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            vars: vars.clone(),
        };
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
        (vb, vars)
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededVars {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = s.elem_count();
        let mut rng = self.rng.lock().expect("not poisoned");
        let values: Vec<f32> = match h {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => {
                let d = rand_distr::Normal::new(mean, stdev).map_err(candle_core::Error::wrap)?;
                (0..n).map(|_| d.sample(&mut *rng) as f32).collect()
            }
            Init::Uniform { lo, up } => {
                let d = rand_distr::Uniform::new(lo, up).map_err(candle_core::Error::wrap)?;
                (0..n).map(|_| d.sample(&mut *rng) as f32).collect()
            }
            other => candle_core::bail!("{name}: initialiser {other:?} is not seeded"),
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        self.vars.lock().expect("not poisoned").push(var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: parameters are created with a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// A model with fresh seeded parameters, and those parameters (`cfg.dim` a multiple of
/// `cfg.heads`, as `t2::Config::validate` checks).
pub(crate) fn init(cfg: &Config, seed: u64, device: &Device) -> Result<(Model, Vec<Var>)> {
    let (vb, vars) = SeededVars::builder(seed, device);
    let model = Model::load(vb, cfg)?;
    let vars = vars.lock().expect("not poisoned").clone();
    Ok((model, vars))
}

/// Log-probabilities over the last dimension.
pub(crate) fn log_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(x, D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (Model, Device) {
        let cfg = Config {
            vocab: 11,
            dim: 16,
            layers: 2,
            heads: 2,
            positions: 12,
        };
        let dev = Device::Cpu;
        (init(&cfg, 3, &dev).unwrap().0, dev)
    }

    fn run(m: &Model, dev: &Device, toks: &[u32]) -> Vec<Vec<f32>> {
        let t = toks.len();
        let x = Tensor::from_vec(toks.to_vec(), (1, t), dev).unwrap();
        let p = Tensor::arange(0u32, t as u32, dev)
            .unwrap()
            .reshape((1, t))
            .unwrap();
        let (h, _) = m
            .forward(&x, &p, &causal_mask(t, dev).unwrap(), None)
            .unwrap();
        h.squeeze(0).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn the_causal_mask_hides_later_tokens() {
        let (m, dev) = tiny();
        let a = run(&m, &dev, &[1, 2, 3, 4, 5, 6]);
        let b = run(&m, &dev, &[1, 2, 3, 9, 0, 10]);
        assert_eq!(
            a[..3],
            b[..3],
            "positions before the change see the same tokens"
        );
        assert_ne!(a[3], b[3], "the changed position does change");
    }

    #[test]
    fn the_same_seed_gives_the_same_parameters() {
        let (m1, dev) = tiny();
        let (m2, _) = tiny();
        let toks = [4, 1, 7];
        assert_eq!(run(&m1, &dev, &toks), run(&m2, &dev, &toks));
    }

    #[test]
    fn past_keys_and_values_give_what_the_whole_sequence_gives() {
        // Decoding feeds the history once, then each beam's tokens after it.
        let (m, dev) = tiny();
        let whole = run(&m, &dev, &[1, 2, 3, 4, 5]);
        let t = |v: Vec<u32>| {
            let n = v.len();
            Tensor::from_vec(v, (1, n), &dev).unwrap()
        };
        let (_, past) = m
            .forward(
                &t(vec![1, 2, 3]),
                &t(vec![0, 1, 2]),
                &causal_mask(3, &dev).unwrap(),
                None,
            )
            .unwrap();
        // The two new tokens see all three past ones and each other causally.
        let mask = Tensor::from_vec(
            vec![0., 0., 0., 0., MASKED, 0., 0., 0., 0., 0.],
            (1, 1, 2, 5),
            &dev,
        )
        .unwrap();
        let (h, _) = m
            .forward(&t(vec![4, 5]), &t(vec![3, 4]), &mask, Some(&past))
            .unwrap();
        let h: Vec<Vec<f32>> = h.squeeze(0).unwrap().to_vec2().unwrap();
        for (a, b) in h.iter().zip(&whole[3..]) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-5, "{x} {y}");
            }
        }
    }

    #[test]
    fn beams_grouped_by_user_read_the_history_as_copies_would() {
        let (m, dev) = tiny();
        let t = |v: Vec<u32>, shape: (usize, usize)| Tensor::from_vec(v, shape, &dev).unwrap();
        // Two users' histories of 3 tokens, then 3 beams of 2 tokens each per user.
        let (_, past) = m
            .forward(
                &t(vec![1, 2, 3, 4, 5, 6], (2, 3)),
                &t(vec![0, 1, 2, 0, 1, 2], (2, 3)),
                &causal_mask(3, &dev).unwrap(),
                None,
            )
            .unwrap();
        let new = t(vec![7, 8, 9, 7, 8, 8, 2, 3, 4, 5, 6, 7], (6, 2));
        let pos = t([3, 4].repeat(6), (6, 2));
        let mask = Tensor::from_vec(
            [0., 0., 0., 0., MASKED, 0., 0., 0., 0., 0.].repeat(6),
            (6, 1, 2, 5),
            &dev,
        )
        .unwrap();
        let (grouped, _) = m.forward(&new, &pos, &mask, Some(&past)).unwrap();
        let rows = t(vec![0, 0, 0, 1, 1, 1], (6, 1)).squeeze(1).unwrap();
        let copied: Vec<Kv> = past
            .iter()
            .map(|kv| Kv {
                k: kv.k.index_select(&rows, 0).unwrap(),
                v: kv.v.index_select(&rows, 0).unwrap(),
            })
            .collect();
        let (plain, _) = m.forward(&new, &pos, &mask, Some(&copied)).unwrap();
        let d = (grouped - plain)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "{d}");
    }
}
