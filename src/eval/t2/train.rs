//! Training for a fixed budget: AdamW over shuffled training windows (the order drawn from the
//! seed, so a run is reproducible), a linear warm-up then a linear decay of the learning rate to
//! zero at the last step, which suits budgets too short to converge.

use super::Config;
use super::data::{self, Window};
use super::model::{self, Model};
use super::vocab::Vocab;
use crate::error::Result;
use crate::progress::Progress;
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Mean cross-entropy per target token of a batch, each target scored over its level's codes.
pub(crate) fn loss(model: &Model, b: &data::Batch, vocab: &Vocab) -> Result<Tensor> {
    let (rows, t) = b.tokens.dims2()?;
    let mask = model::causal_mask(t, b.tokens.device())?;
    let (h, _) = model.forward(&b.tokens, &b.positions, &mask, None)?;
    let h = h.reshape((rows * t, ()))?;
    let mut total: Option<Tensor> = None;
    for (level, (at, targets)) in b.by_level.iter().enumerate() {
        if at.dim(0)? == 0 {
            continue;
        }
        let logits = model.logits(&h.index_select(at, 0)?, vocab.level_range(level))?;
        let picked = model::log_softmax(&logits)?
            .gather(&targets.unsqueeze(1)?, 1)?
            .sum_all()?;
        total = Some(match total {
            Some(x) => (x + picked)?,
            None => picked,
        });
    }
    let total =
        total.ok_or_else(|| crate::error::Error::Config("t2: a batch without targets".into()))?;
    Ok((total.neg()? / b.target_tokens as f64)?)
}

/// What training did.
pub(crate) struct Log {
    pub steps: usize,
    /// Mean loss of the first and of the last (up to) 50 steps.
    pub first_loss: f64,
    pub last_loss: f64,
}

/// Steps the budget allows: `cfg.steps`, or `cfg.epochs` passes over the windows.
pub(crate) fn budget(cfg: &Config, windows: usize) -> usize {
    cfg.steps
        .unwrap_or(cfg.epochs * windows.div_ceil(cfg.batch_size))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn train(
    model: &Model,
    vars: Vec<Var>,
    train: &[Vec<u32>],
    windows: &[Window],
    vocab: &Vocab,
    cfg: &Config,
    seed: u64,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Log> {
    let steps = budget(cfg, windows.len());
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: cfg.lr,
            ..Default::default()
        },
    )?;
    let warmup = (steps / 20).clamp(1, 200);
    // A stream of its own, so the order does not depend on how many values the initialisation
    // drew.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7432_7472_6169_6e00);
    let mut order: Vec<usize> = Vec::new();
    let mut losses = Vec::with_capacity(steps);
    progress.start("t2 training", Some(steps as u64));
    for step in 0..steps {
        if order.len() < cfg.batch_size {
            // The rest of this epoch first, then a fresh shuffle of the next.
            let mut next: Vec<usize> = (0..windows.len()).collect();
            next.shuffle(&mut rng);
            order.extend(next);
        }
        let picked: Vec<usize> = order.drain(..cfg.batch_size.min(order.len())).collect();
        let seqs: Vec<(&[u32], usize)> = picked
            .iter()
            .map(|&k| {
                let w = windows[k];
                let s = w.start as usize;
                (&train[w.user as usize][s..s + w.len as usize], 1)
            })
            .collect();
        let b = data::batch(&seqs, vocab, device)?;
        let lr = if step < warmup {
            cfg.lr * (step + 1) as f64 / warmup as f64
        } else {
            cfg.lr * (steps - step) as f64 / (steps - warmup + 1) as f64
        };
        opt.set_learning_rate(lr);
        let l = loss(model, &b, vocab)?;
        opt.backward_step(&l)?;
        let v = l.to_scalar::<f32>()? as f64;
        losses.push(v);
        progress.advance(1);
        if step % 20 == 0 {
            progress.note(&format!("loss {v:.3}"));
        }
    }
    progress.finish();
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let k = losses.len().min(50);
    Ok(Log {
        steps,
        first_loss: mean(&losses[..k]),
        last_loss: mean(&losses[losses.len() - k..]),
    })
}

/// Mean cross-entropy per target token of the queries' targets, given their histories (no
/// training; batches of `batch_size`).
pub(crate) fn held_out_loss(
    model: &Model,
    queries: &[data::Query],
    vocab: &Vocab,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let (mut sum, mut n) = (0f64, 0usize);
    let seqs: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| q.history.iter().copied().chain([q.target]).collect())
        .collect();
    for chunk in seqs.chunks(batch_size) {
        let s: Vec<(&[u32], usize)> = chunk.iter().map(|v| (&v[..], v.len() - 1)).collect();
        let b = data::batch(&s, vocab, device)?;
        let l = loss(model, &b, vocab)?.to_scalar::<f32>()? as f64;
        sum += l * b.target_tokens as f64;
        n += b.target_tokens;
    }
    Ok(sum / n.max(1) as f64)
}
