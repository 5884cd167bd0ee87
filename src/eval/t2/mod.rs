//! Tier 2: a small generative recommender trained on the table's IDs (minutes on a CPU).
//!
//! A decoder-only transformer ([`model`]) reads each user's last items (at most
//! `max_history`) as SID tokens, one token per (level, code), and is trained with teacher
//! forcing to generate the next item's tokens ([`data`], [`train`]), for a fixed budget of
//! epochs or steps. It is then decoded with a constrained beam search over the trie of the
//! table's IDs ([`beam`], [`decode`]), so only real IDs come out, and scored with
//! Recall/NDCG@{5,10} on T1's leave-one-out split. Everything is drawn from `--seed`; on one
//! CPU the figures are the same for the same seed.
//!
//! This ranks tokenizers against each other at a budget a CPU can afford; it is not a
//! reproduction of TIGER or of any published number (docs/methods.md §9).

pub(crate) mod beam;
pub(crate) mod data;
pub(crate) mod decode;
pub(crate) mod model;
pub(crate) mod train;
pub(crate) mod vocab;

use super::cold::{Cold, ColdRanking};
use super::t1::{Ranking, expected_ranking, ranking};
use super::table::CodeTable;
use super::trie::Trie;
use crate::device::DeviceKind;
use crate::error::{Error, Result};
use crate::progress::Progress;
use serde::Serialize;

/// The model and its budget (`sidtool eval --t2 …`).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Width of the token embeddings and hidden states.
    pub dim: usize,
    pub layers: usize,
    /// Attention heads; `dim` must be a multiple.
    pub heads: usize,
    /// Items of history a prediction sees (the most recent ones).
    pub max_history: usize,
    /// Passes over the training windows; `steps`, when set, replaces it.
    pub epochs: usize,
    /// Optimiser steps (batches), whatever the number of windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Training windows per batch.
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    /// Beam width of the constrained decoding; at least 10, the largest cut-off.
    pub beam: usize,
    #[serde(skip)]
    pub device: DeviceKind,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dim: 128,
            layers: 2,
            heads: 4,
            max_history: 20,
            epochs: 1,
            steps: None,
            batch_size: 64,
            lr: 2e-3,
            beam: 20,
            device: DeviceKind::Cpu,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("t2: {m}")));
        if self.dim == 0 || self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return bad(format!(
                "dimension {} must be a positive multiple of the {} heads",
                self.dim, self.heads
            ));
        }
        if self.layers == 0 || self.max_history == 0 || self.batch_size == 0 {
            return bad("layers, history and batch size must be at least 1".into());
        }
        if self.steps.unwrap_or(self.epochs) == 0 {
            return bad("the budget is zero (epochs or steps)".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if self.beam < super::t1::CUTOFFS[1] {
            return bad(format!(
                "beam {} is narrower than the largest cut-off, {}",
                self.beam,
                super::t1::CUTOFFS[1]
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct T2 {
    /// Test users (at least 3 interactions, as T1).
    pub users: usize,
    /// Training windows of at most max_history + 1 items, and their next-item targets.
    pub train_windows: usize,
    pub train_targets: usize,
    pub steps: usize,
    pub parameters: usize,
    /// Mean cross-entropy per SID token: over the first and the last 50 training steps, and
    /// of every user's validation item (the second-last) given the items before it.
    pub first_loss: f64,
    pub train_loss: f64,
    pub valid_loss: f64,
    /// The test item (the last) ranked by the constrained beam search.
    pub sid: Ranking,
    /// With `--cold-items`: the users' next new items, ranked among the new items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold: Option<ColdRanking>,
    pub config: Config,
}

/// Users decoded per batch: their beams' cached keys and values are the memory that counts.
const DECODE_USERS: usize = 32;

/// T2 for `t`, with per-user histories of table rows in time order (without the new items
/// when `cold` is given: then the users' next new items are also ranked among the new items).
pub fn evaluate(
    t: &CodeTable,
    histories: &[Vec<u32>],
    cold: Option<&Cold>,
    cfg: &Config,
    seed: u64,
    progress: &dyn Progress,
) -> Result<T2> {
    cfg.validate()?;
    let device = crate::device::open(cfg.device)?;
    let s = data::split(histories, cfg.max_history);
    let windows = data::windows(&s.train, cfg.max_history);
    if windows.is_empty() {
        return Err(Error::Config(
            "t2: no user has two training items (4 interactions) to learn from".into(),
        ));
    }
    let vocab = vocab::Vocab::new(t);
    let mcfg = model::Config {
        vocab: vocab.size,
        dim: cfg.dim,
        layers: cfg.layers,
        heads: cfg.heads,
        positions: (cfg.max_history + 1) * t.width,
    };
    let (net, vars) = model::init(&mcfg, seed, &device)?;
    let parameters = vars.iter().map(|v| v.elem_count()).sum();
    let log = train::train(
        &net, vars, &s.train, &windows, &vocab, cfg, seed, &device, progress,
    )?;
    let valid_loss = train::held_out_loss(&net, &s.valid, &vocab, cfg.batch_size, &device)?;
    // Items that share an ID are ordered by training popularity, as in T1.
    let mut popularity = vec![0u32; t.len()];
    for h in histories.iter().filter(|h| h.len() >= 3) {
        for &i in &h[..h.len() - 1] {
            popularity[i as usize] += 1;
        }
    }
    // With new items held out, the warm targets are decoded among the warm items only.
    let warm: Vec<usize> = (0..t.len())
        .filter(|&i| cold.is_none_or(|c| !c.is_new[i]))
        .collect();
    let warm_popularity: Vec<u32> = warm.iter().map(|&i| popularity[i]).collect();
    let ranks = decode_among(
        &net,
        &vocab,
        t,
        &warm,
        &s.test,
        cfg,
        &device,
        progress,
        |trie, l, target| beam::rank(trie, l, &warm_popularity, target),
    )?;
    let ranks: Vec<usize> = ranks.into_iter().map(|r| r.unwrap_or(usize::MAX)).collect();
    let cold = cold
        .map(|c| {
            let rows: Vec<usize> = (0..t.len()).filter(|&i| c.is_new[i]).collect();
            let queries: Vec<data::Query> = c
                .queries
                .iter()
                .map(|(h, target)| data::Query {
                    history: h[h.len().saturating_sub(cfg.max_history)..].to_vec(),
                    target: *target,
                })
                .collect();
            // No new item has a training popularity: items sharing an ID are equals.
            let r = decode_among(
                &net,
                &vocab,
                t,
                &rows,
                &queries,
                cfg,
                &device,
                progress,
                beam::ahead_and_tied,
            )?;
            Ok::<_, Error>(ColdRanking::new(c, expected_ranking(&r)))
        })
        .transpose()?;
    Ok(T2 {
        users: s.test.len(),
        train_windows: windows.len(),
        train_targets: windows.iter().map(|w| w.len as usize - 1).sum(),
        steps: log.steps,
        parameters,
        first_loss: log.first_loss,
        train_loss: log.last_loss,
        valid_loss,
        sid: ranking(&ranks),
        cold,
        config: cfg.clone(),
    })
}

/// Decode `queries` (targets are table rows) with the beam search constrained to the trie of
/// the IDs of table rows `rows` alone, and `rank(trie, decoded IDs, target)` each, with items
/// and the target as positions in `rows` (which must hold every target).
#[allow(clippy::too_many_arguments)]
fn decode_among<R>(
    net: &model::Model,
    vocab: &vocab::Vocab,
    t: &CodeTable,
    rows: &[usize],
    queries: &[data::Query],
    cfg: &Config,
    device: &candle_core::Device,
    progress: &dyn Progress,
    rank: impl Fn(&Trie, &[(u32, f64)], u32) -> R,
) -> Result<Vec<R>> {
    let mut index = vec![u32::MAX; t.len()];
    for (k, &i) in rows.iter().enumerate() {
        index[i] = k as u32;
    }
    let codes: Vec<u32> = rows.iter().flat_map(|&i| t.row(i)).copied().collect();
    let trie = Trie::new(&codes, t.width, rows.len());
    let queries: Vec<data::Query> = queries
        .iter()
        .map(|q| {
            debug_assert_ne!(
                index[q.target as usize],
                u32::MAX,
                "a target among the rows"
            );
            data::Query {
                history: q.history.clone(),
                target: index[q.target as usize],
            }
        })
        .collect();
    decode::ranks(
        net,
        vocab,
        &trie,
        &queries,
        |leaves, target| rank(&trie, leaves, target),
        cfg.beam,
        DECODE_USERS,
        device,
        progress,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_id::ItemIds;
    use crate::progress::Silent;

    /// 40 items on a cycle (each user walks i → i + 1 from a seeded start), coded by
    /// (i / 8, i % 8) or by codes that are a seeded shuffle of those.
    fn toy(shuffled: bool) -> (CodeTable, Vec<Vec<u32>>) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let n = 40u32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut perm: Vec<u32> = (0..n).collect();
        if shuffled {
            perm.shuffle(&mut rng);
        }
        let codes = (0..n)
            .flat_map(|i| [perm[i as usize] / 8, perm[i as usize] % 8])
            .collect();
        let t = CodeTable {
            path: "toy".into(),
            ids: ItemIds::Int((0..n as i64).collect()),
            codes,
            width: 2,
            codebook_sizes: None,
        };
        let histories = (0..120u32)
            .map(|u| (0..12).map(|k| (u * 7 + k) % n).collect())
            .collect();
        (t, histories)
    }

    fn small() -> Config {
        Config {
            dim: 32,
            layers: 1,
            heads: 2,
            max_history: 5,
            steps: Some(120),
            batch_size: 16,
            lr: 5e-3,
            beam: 10,
            ..Config::default()
        }
    }

    #[test]
    fn a_sequential_pattern_is_learned_and_the_same_seed_gives_the_same_figures() {
        let (t, h) = toy(false);
        let a = evaluate(&t, &h, None, &small(), 1, &Silent).unwrap();
        assert_eq!(a.users, 120);
        assert!(
            a.train_loss < 0.5 * a.first_loss,
            "loss goes down: {} → {}",
            a.first_loss,
            a.train_loss
        );
        // The next item is determined by the previous one; popularity is flat (1/40 per item).
        assert!(a.sid.recall_5 > 0.9, "{:?}", a.sid);
        eprintln!("{}", serde_json::to_string(&a).unwrap());
        // Uniform guessing over the 13 tokens costs ln 13 = 2.56 per token.
        assert!(a.valid_loss < 1.0, "{}", a.valid_loss);
        let b = evaluate(&t, &h, None, &small(), 1, &Silent).unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        let c = evaluate(&t, &h, None, &small(), 2, &Silent).unwrap();
        assert_ne!(a.first_loss, c.first_loss, "another seed, another run");
    }

    #[test]
    fn a_zero_budget_or_a_narrow_beam_is_refused() {
        let (t, h) = toy(false);
        for bad in [
            Config {
                steps: Some(0),
                ..small()
            },
            Config { beam: 5, ..small() },
            Config {
                dim: 30,
                heads: 4,
                ..small()
            },
        ] {
            assert!(evaluate(&t, &h, None, &bad, 1, &Silent).is_err());
        }
    }
}
