//! T2's samples, on the same leave-one-out split as T1 (users with at least 3 items; the last
//! item is the test target, the one before it the validation target, the earlier ones the
//! training sequence), and their batches as tensors.
//!
//! Training uses windows of at most `max_history + 1` consecutive training items, read as one
//! token sequence; every item but the window's first is a target (teacher forcing: each of its
//! tokens is predicted from all tokens before it), so one causal forward trains up to
//! `max_history` next-item predictions, each from the at most `max_history` items before it.
//! Consecutive windows overlap by one item, so every training item after a user's first is a
//! target exactly once per epoch.

use super::model::MASKED;
use super::vocab::Vocab;
use crate::error::Result;
use candle_core::{Device, Tensor};

/// A next-item query: the user's last items (at most `max_history`) and the item that
/// followed them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub history: Vec<u32>,
    pub target: u32,
}

pub(crate) struct Split {
    /// Per user with at least 3 items, the training items in time order.
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<Query>,
    pub test: Vec<Query>,
}

pub(crate) fn split(histories: &[Vec<u32>], max_history: usize) -> Split {
    let query = |h: &[u32], target: u32| Query {
        history: h[h.len().saturating_sub(max_history)..].to_vec(),
        target,
    };
    let mut s = Split {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
    };
    for h in histories.iter().filter(|h| h.len() >= 3) {
        let n = h.len();
        s.train.push(h[..n - 2].to_vec());
        s.valid.push(query(&h[..n - 2], h[n - 2]));
        s.test.push(query(&h[..n - 1], h[n - 1]));
    }
    s
}

/// Items `start..start + len` of training sequence `user`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub user: u32,
    pub start: u32,
    pub len: u32,
}

/// Every training window, in user order (the training loop shuffles them).
pub(crate) fn windows(train: &[Vec<u32>], max_history: usize) -> Vec<Window> {
    let w = max_history + 1;
    let mut out = Vec::new();
    for (u, seq) in train.iter().enumerate() {
        let mut start = 0;
        while start + 1 < seq.len() {
            let len = w.min(seq.len() - start);
            out.push(Window {
                user: u as u32,
                start: start as u32,
                len: len as u32,
            });
            start += w - 1;
        }
    }
    out
}

/// A batch of item sequences as tensors, right-padded: tokens and positions (b, t) u32; and
/// per level, the flat indices (into b·t) of the positions whose next token is a target of
/// that level, with those targets as indices into the level's codes.
pub(crate) struct Batch {
    pub tokens: Tensor,
    pub positions: Tensor,
    pub by_level: Vec<(Tensor, Tensor)>,
    pub target_tokens: usize,
}

/// The batch of `seqs`, each an item sequence whose items from `first_target` on are targets.
pub(crate) fn batch(seqs: &[(&[u32], usize)], vocab: &Vocab, device: &Device) -> Result<Batch> {
    let l = vocab.levels;
    let t = seqs.iter().map(|s| s.0.len() * l).max().unwrap_or(0);
    let b = seqs.len();
    let mut tokens = vec![vocab.pad; b * t];
    let mut at: Vec<Vec<u32>> = vec![Vec::new(); l];
    let mut targets: Vec<Vec<u32>> = vec![Vec::new(); l];
    for (r, (items, first_target)) in seqs.iter().enumerate() {
        let row: Vec<u32> = items.iter().flat_map(|&i| vocab.item(i)).copied().collect();
        tokens[r * t..r * t + row.len()].copy_from_slice(&row);
        // Position p predicts token p + 1, of level (p + 1) mod l.
        for p in (first_target * l).max(1) - 1..row.len() - 1 {
            let level = (p + 1) % l;
            at[level].push((r * t + p) as u32);
            targets[level].push(row[p + 1] - vocab.level_range(level).0);
        }
    }
    let target_tokens = at.iter().map(|a| a.len()).sum();
    let positions: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
    let by_level = at
        .into_iter()
        .zip(targets)
        .map(|(a, y)| {
            let n = a.len();
            Ok((
                Tensor::from_vec(a, n, device)?,
                Tensor::from_vec(y, n, device)?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(Batch {
        tokens: Tensor::from_vec(tokens, (b, t), device)?,
        positions: Tensor::from_vec(positions, (b, t), device)?,
        by_level,
        target_tokens,
    })
}

/// Histories left-padded so that every row's next token has the same index: tokens and
/// positions (b, t) (a row's positions count from its first real token, as in training) and
/// the additive mask (b, 1, t, t): causal, and no query sees padding.
pub(crate) struct Prompt {
    pub tokens: Tensor,
    pub positions: Tensor,
    pub mask: Tensor,
    /// Per row, the position of its next token, and whether each of the t keys is padding.
    pub next_position: Vec<u32>,
    pub pad: Vec<Vec<bool>>,
}

pub(crate) fn prompt(histories: &[&[u32]], vocab: &Vocab, device: &Device) -> Result<Prompt> {
    let l = vocab.levels;
    let t = histories.iter().map(|h| h.len() * l).max().unwrap_or(0);
    let b = histories.len();
    let mut tokens = vec![vocab.pad; b * t];
    let mut positions = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t * t];
    let mut pad = Vec::with_capacity(b);
    let mut next_position = Vec::with_capacity(b);
    for (r, h) in histories.iter().enumerate() {
        let real = h.len() * l;
        let off = t - real;
        for (k, tok) in h.iter().flat_map(|&i| vocab.item(i)).enumerate() {
            tokens[r * t + off + k] = *tok;
            positions[r * t + off + k] = k as u32;
        }
        for q in 0..t {
            for k in 0..t {
                if k > q || k < off {
                    mask[(r * t + q) * t + k] = MASKED;
                }
            }
        }
        pad.push((0..t).map(|k| k < off).collect());
        next_position.push(real as u32);
    }
    Ok(Prompt {
        tokens: Tensor::from_vec(tokens, (b, t), device)?,
        positions: Tensor::from_vec(positions, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, 1, t, t), device)?,
        next_position,
        pad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_t1s_and_windows_cover_every_target_once() {
        let h = vec![vec![1, 2], vec![0, 1, 2, 3, 4, 5, 6], vec![3, 4, 5]];
        let s = split(&h, 2);
        assert_eq!(s.train, vec![vec![0, 1, 2, 3, 4], vec![3]]);
        assert_eq!(
            s.test[0],
            Query {
                history: vec![4, 5],
                target: 6
            }
        );
        assert_eq!(s.valid[0].history, vec![3, 4]);
        assert_eq!(s.valid[1].target, 4);
        let w = windows(&s.train, 2);
        // Items 1..5 of user 0 are targets once each: windows 0..3 (targets 1, 2), 2..5 (3, 4).
        let want = [(0, 0, 3), (0, 2, 3)];
        assert_eq!(w.len(), want.len());
        for (w, (u, s, l)) in w.iter().zip(want) {
            assert_eq!((w.user, w.start, w.len), (u, s, l));
        }
    }
}
