//! The trained model decoded with the constrained beam search, a batch of users at a time: a
//! user's history goes through the model once, then each beam feeds only its own tokens after
//! the history's cached keys and values.

use super::beam::{self, Beam};
use super::data::{self, Query};
use super::model::{Kv, MASKED, Model};
use super::vocab::Vocab;
use crate::error::Result;
use crate::eval::trie::Trie;
use crate::progress::Progress;
use candle_core::{Device, Tensor};

/// Per query, `rank(its decoded IDs, most probable first, its target)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ranks<R>(
    model: &Model,
    vocab: &Vocab,
    trie: &Trie,
    queries: &[Query],
    rank: impl Fn(&[(u32, f64)], u32) -> R,
    width: usize,
    batch_users: usize,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(queries.len());
    progress.start("t2 decoding", Some(queries.len() as u64));
    for chunk in queries.chunks(batch_users) {
        let histories: Vec<&[u32]> = chunk.iter().map(|q| &q.history[..]).collect();
        let p = data::prompt(&histories, vocab, device)?;
        let (h, past) = model.forward(&p.tokens, &p.positions, &p.mask, None)?;
        let t = h.dim(1)?;
        let first: Vec<Vec<f32>> = model
            .logits(&h.narrow(1, t - 1, 1)?.squeeze(1)?, vocab.level_range(0))?
            .to_vec2()?;
        let leaves = beam::search(trie, chunk.len(), width, |level, beams| {
            let logits = if level == 0 {
                beams.iter().map(|b| first[b.query].clone()).collect()
            } else {
                step(model, vocab, trie, &p, &past, level, beams, device)?
            };
            // Each beam's logits of its node's children.
            let start = vocab.level_range(level).0;
            Ok(beams
                .iter()
                .zip(logits)
                .map(|(b, lg)| {
                    trie.children[b.node as usize]
                        .iter()
                        .map(|&c| lg[(vocab.token(level, trie.code[c as usize]) - start) as usize])
                        .collect()
                })
                .collect())
        })?;
        for (q, l) in chunk.iter().zip(&leaves) {
            out.push(rank(l, q.target));
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(out)
}

/// Next-token logits of every beam at `level` ≥ 1 (over the level's codes): its `level` tokens
/// so far after its user's history. Every user gets the same number of rows (the most beams
/// any user has; a user with fewer repeats its last beam, whose extra rows are dropped), so
/// that the attention reads each history in place for all of its user's beams.
#[allow(clippy::too_many_arguments)]
fn step(
    model: &Model,
    vocab: &Vocab,
    trie: &Trie,
    p: &data::Prompt,
    past: &[Kv],
    level: usize,
    beams: &[Beam],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let t = p.pad.first().map_or(0, |r| r.len());
    let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); p.pad.len()];
    for (k, b) in beams.iter().enumerate() {
        by_user[b.query].push(k);
    }
    let g = by_user.iter().map(|v| v.len()).max().unwrap_or(0);
    let rows: Vec<usize> = by_user
        .iter()
        .flat_map(|v| (0..g).map(|j| v[j.min(v.len() - 1)]))
        .collect();
    let n = rows.len();
    let mut tokens = Vec::with_capacity(n * level);
    let mut positions = Vec::with_capacity(n * level);
    let mut mask = Vec::with_capacity(n * level * (t + level));
    for &k in &rows {
        let b = &beams[k];
        for (j, &node) in b.path.iter().enumerate() {
            tokens.push(vocab.token(j, trie.code[node as usize]));
            positions.push(p.next_position[b.query] + j as u32);
        }
        for q in 0..level {
            mask.extend(
                p.pad[b.query]
                    .iter()
                    .map(|&pad| if pad { MASKED } else { 0.0 }),
            );
            mask.extend((0..level).map(|k| if k > q { MASKED } else { 0.0 }));
        }
    }
    let (h, _) = model.forward(
        &Tensor::from_vec(tokens, (n, level), device)?,
        &Tensor::from_vec(positions, (n, level), device)?,
        &Tensor::from_vec(mask, (n, 1, level, t + level), device)?,
        Some(past),
    )?;
    let logits: Vec<Vec<f32>> = model
        .logits(
            &h.narrow(1, level - 1, 1)?.squeeze(1)?,
            vocab.level_range(level),
        )?
        .to_vec2()?;
    let mut out = vec![Vec::new(); beams.len()];
    for (r, &k) in rows.iter().enumerate().rev() {
        out[k] = logits[r].clone();
    }
    Ok(out)
}
