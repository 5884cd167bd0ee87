//! Tier 1: next-item prediction with no neural training (minutes on a CPU).
//!
//! Leave-one-out by time: each user's last item is the test target, the one before it the
//! item the prediction starts from; every earlier consecutive pair (the one into the
//! second-last item included) is a training transition. The model generates the next ID token
//! by token from transition counts: the probability of code x after prefix g, given the
//! previous item p, interpolates the counts conditioned on p's ID prefix of length m, from the
//! full ID down to no conditioning (m = 0, popularity), and finally a uniform choice among g's
//! children in the trie:
//!
//!   P_m(x | p, g) = (N(p[..m] → g·x) + α·P_{m−1}(x | p, g)) / (N(p[..m] → g) + α)
//!
//! Only real items can come out (every step is a trie edge), and the score is computed exactly
//! for every item. A hit is the right *item*: items that share an ID share its probability, and
//! their order is decided by popularity, so collisions cannot inflate the figures. The same
//! engine over each item's own row as a one-level ID gives the item-id Markov baseline
//! (m ≤ 1) and the popularity baseline (m = 0).

use super::cold::{Cold, ColdRanking};
use super::table::CodeTable;
use super::trie::Trie;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// Smoothing weight α of every back-off step.
pub(crate) const ALPHA: f64 = 1.0;
/// Cut-offs of the ranking metrics.
pub(crate) const CUTOFFS: [usize; 2] = [5, 10];

/// Recall and NDCG at each cut-off, averaged over test users.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    #[serde(rename = "recall@5")]
    pub recall_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "ndcg@5")]
    pub ndcg_5: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct T1 {
    /// Users with at least 3 interactions (the others cannot be split).
    pub users: usize,
    pub train_transitions: usize,
    /// The prefix-backoff model over the table's IDs.
    pub sid: Ranking,
    /// The same model when the previous item is known only by its ID prefix of length m =
    /// 0..=levels: how much of the next-item signal each prefix length carries (m = 0 uses no
    /// context: code popularity down the trie; random codes gain little until m makes the ID
    /// unique).
    pub by_context: Vec<ContextRanking>,
    /// Baselines on raw item ids.
    pub item_markov: Ranking,
    pub popularity: Ranking,
    /// With `--cold-items`: the users' next new items, ranked among the new items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold: Option<ColdRanking>,
}

/// [`Ranking`] of the back-off model that conditions on at most `context_len` levels of the
/// previous item's ID.
#[derive(Debug, Clone, Serialize)]
pub struct ContextRanking {
    pub context_len: usize,
    #[serde(flatten)]
    pub ranking: Ranking,
}

/// A leave-one-out split: per user, (the item before the last, the last).
struct Split {
    transitions: Vec<(u32, u32)>,
    tests: Vec<(u32, u32)>,
}

fn split(histories: &[Vec<u32>]) -> Split {
    let mut transitions = Vec::new();
    let mut tests = Vec::new();
    for h in histories.iter().filter(|h| h.len() >= 3) {
        let n = h.len();
        transitions.extend(h[..n - 1].windows(2).map(|w| (w[0], w[1])));
        tests.push((h[n - 2], h[n - 1]));
    }
    Split { transitions, tests }
}

/// Transition counts out of one context (a previous item's ID prefix of some length): into
/// each target node, and into each target's parent node (their sum over the children).
#[derive(Default)]
struct Context {
    next: HashMap<u32, u32>,
    ctx: HashMap<u32, u32>,
}

/// The counts of every context, by (context length m, context node); m = 0 (no conditioning)
/// is the same for every previous item, so its step probabilities are computed once.
struct Counts {
    max_context: usize,
    contexts: HashMap<(u8, u32), Context>,
    /// P_0(node | parent) for every non-root node.
    base: Vec<f64>,
}

impl Counts {
    fn new(trie: &Trie, transitions: &[(u32, u32)], max_context: usize) -> Counts {
        let mut contexts: HashMap<(u8, u32), Context> = HashMap::new();
        for &(p, q) in transitions {
            for m in 0..=max_context {
                let c = contexts
                    .entry((m as u8, trie.node[m][p as usize]))
                    .or_default();
                for j in 0..trie.levels {
                    *c.ctx.entry(trie.node[j][q as usize]).or_insert(0) += 1;
                    *c.next.entry(trie.node[j + 1][q as usize]).or_insert(0) += 1;
                }
            }
        }
        let mut base = vec![0f64; trie.children.len()];
        let root = contexts.get(&(0, 0));
        for (parent, kids) in trie.children.iter().enumerate() {
            for &c in kids {
                base[c as usize] = backoff(root, parent as u32, c, 1.0 / kids.len() as f64);
            }
        }
        Counts {
            max_context,
            contexts,
            base,
        }
    }

    /// Probability of every full ID after item p, as (leaf, probability).
    fn leaves(&self, trie: &Trie, p: usize) -> Vec<(u32, f64)> {
        // The contexts of p's prefixes that saw any transition; the others leave P unchanged.
        let ctxs: Vec<&Context> = (1..=self.max_context)
            .filter_map(|m| self.contexts.get(&(m as u8, trie.node[m][p])))
            .collect();
        let mut out = Vec::new();
        let mut stack = vec![(0u32, 0usize, 1.0f64)];
        while let Some((node, depth, prob)) = stack.pop() {
            if depth == trie.levels {
                out.push((node, prob));
                continue;
            }
            for &c in &trie.children[node as usize] {
                let step = ctxs.iter().fold(self.base[c as usize], |pr, ctx| {
                    backoff(Some(ctx), node, c, pr)
                });
                stack.push((c, depth + 1, prob * step));
            }
        }
        out
    }
}

/// One back-off step: (N(ctx → child) + α·lower) / (N(ctx → parent) + α); a context that
/// never reached `parent` leaves `lower` as it is.
fn backoff(ctx: Option<&Context>, parent: u32, child: u32, lower: f64) -> f64 {
    let Some(ctx) = ctx else { return lower };
    let Some(&c) = ctx.ctx.get(&parent) else {
        return lower;
    };
    let n = ctx.next.get(&child).copied().unwrap_or(0) as f64;
    (n + ALPHA * lower) / (c as f64 + ALPHA)
}

/// 1-based rank of `target` among the `candidates` (all items when None) when items are
/// ordered by score (desc), then popularity (desc), then row.
fn rank(scores: &[f64], popularity: &[u32], target: usize, candidates: Option<&[bool]>) -> usize {
    let key = |i: usize| (scores[i], popularity[i], std::cmp::Reverse(i));
    let t = key(target);
    1 + (0..scores.len())
        .filter(|&i| {
            let k = key(i);
            candidates.is_none_or(|c| c[i])
                && (k.0 > t.0 || (k.0 == t.0 && (k.1, k.2) > (t.1, t.2)))
        })
        .count()
}

/// Among the `candidates`, how many score above `target` and how many others score the same.
pub(crate) fn ahead_and_tied(scores: &[f64], target: usize, candidates: &[bool]) -> (usize, usize) {
    let t = scores[target];
    let (mut ahead, mut tied) = (0, 0);
    for (i, &x) in scores.iter().enumerate() {
        if candidates[i] && i != target {
            if x > t {
                ahead += 1;
            } else if x == t {
                tied += 1;
            }
        }
    }
    (ahead, tied)
}

/// The expected Recall and NDCG when each query's target has `ahead` candidates above it and
/// `tied` others level with it, taken in a uniformly random order (None: a miss). Candidates
/// that nothing tells apart, such as new items that no count reaches, are then worth what a
/// uniform guess among them is worth, whatever their rows.
pub(crate) fn expected_ranking(r: &[Option<(usize, usize)>]) -> Ranking {
    let n = r.len().max(1) as f64;
    // The target's rank is uniform on ahead + 1 ..= ahead + tied + 1.
    let at = |k: usize, gain: &dyn Fn(usize) -> f64| {
        r.iter()
            .flatten()
            .map(|&(ahead, tied)| {
                let last = (ahead + tied + 1).min(k);
                (ahead + 1..=last).map(gain).sum::<f64>() / (tied + 1) as f64
            })
            .sum::<f64>()
            / n
    };
    let hit = |_: usize| 1.0;
    let dcg = |r: usize| 1.0 / ((r + 1) as f64).log2();
    Ranking {
        recall_5: at(CUTOFFS[0], &hit),
        recall_10: at(CUTOFFS[1], &hit),
        ndcg_5: at(CUTOFFS[0], &dcg),
        ndcg_10: at(CUTOFFS[1], &dcg),
    }
}

/// Recall and NDCG of 1-based ranks (a miss is any rank past the cut-offs).
pub(crate) fn ranking(ranks: &[usize]) -> Ranking {
    let n = ranks.len().max(1) as f64;
    let recall = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    let ndcg = |k: usize| {
        ranks
            .iter()
            .filter(|&&r| r <= k)
            .map(|&r| 1.0 / ((r + 1) as f64).log2())
            .sum::<f64>()
            / n
    };
    Ranking {
        recall_5: recall(CUTOFFS[0]),
        recall_10: recall(CUTOFFS[1]),
        ndcg_5: ndcg(CUTOFFS[0]),
        ndcg_10: ndcg(CUTOFFS[1]),
    }
}

/// The items an ID table is scored over, and how.
struct Scoring<'a> {
    codes: &'a [u32],
    width: usize,
    n: usize,
    popularity: &'a [u32],
}

/// Ranks of every test (previous item, target) under the back-off model over `codes` (width
/// per item) trained on `transitions`, among the `candidates` (all items when None).
fn ranks(
    sc: &Scoring,
    max_context: usize,
    transitions: &[(u32, u32)],
    tests: &[(u32, u32)],
    candidates: Option<&[bool]>,
) -> Vec<usize> {
    let Scoring {
        codes,
        width,
        n,
        popularity,
    } = *sc;
    scored(
        codes,
        width,
        n,
        max_context,
        transitions,
        tests,
        |scores, target| rank(scores, popularity, target, candidates),
    )
}

/// `f(every item's probability, target)` for every test (previous item, target) under the
/// back-off model over `codes` trained on `transitions`.
fn scored<R: Send>(
    codes: &[u32],
    width: usize,
    n: usize,
    max_context: usize,
    transitions: &[(u32, u32)],
    tests: &[(u32, u32)],
    f: impl Fn(&[f64], usize) -> R + Sync,
) -> Vec<R> {
    let trie = Trie::new(codes, width, n);
    let counts = Counts::new(&trie, transitions, max_context.min(width));
    tests
        .par_iter()
        .map(|&(p, target)| {
            let mut scores = vec![0f64; n];
            for (leaf, prob) in counts.leaves(&trie, p as usize) {
                for &i in &trie.items_at[&leaf] {
                    scores[i as usize] = prob;
                }
            }
            f(&scores, target as usize)
        })
        .collect()
}

/// T1 for `t`, with per-user histories of table rows in time order (without the new items
/// when `cold` is given: then the users' next new items are also ranked among the new items).
pub fn evaluate(t: &CodeTable, histories: &[Vec<u32>], cold: Option<&Cold>) -> T1 {
    let n = t.len();
    let s = split(histories);
    let mut popularity = vec![0u32; n];
    for h in histories.iter().filter(|h| h.len() >= 3) {
        for &i in &h[..h.len() - 1] {
            popularity[i as usize] += 1;
        }
    }
    let own: Vec<u32> = (0..n as u32).collect();
    let sc = |codes, width| Scoring {
        codes,
        width,
        n,
        popularity: &popularity,
    };
    let ids = sc(&t.codes, t.width);
    // With new items held out, the warm targets are ranked among the warm items only.
    let warm: Option<Vec<bool>> = cold.map(|c| c.is_new.iter().map(|&x| !x).collect());
    let among = warm.as_deref();
    let by_context: Vec<ContextRanking> = (0..=t.width)
        .map(|m| ContextRanking {
            context_len: m,
            ranking: ranking(&ranks(&ids, m, &s.transitions, &s.tests, among)),
        })
        .collect();
    let own_ids = sc(&own, 1);
    T1 {
        users: s.tests.len(),
        train_transitions: s.transitions.len(),
        sid: by_context[t.width].ranking.clone(),
        by_context,
        item_markov: ranking(&ranks(&own_ids, 1, &s.transitions, &s.tests, among)),
        popularity: ranking(&ranks(&own_ids, 0, &s.transitions, &s.tests, among)),
        cold: cold.map(|c| {
            // The same counts as the warm split's; the previous item of a query is the last
            // warm item before the new one. No new item has a count of its own, so many tie:
            // they count as a uniform guess among themselves, not in row order.
            let tests: Vec<(u32, u32)> = c
                .queries
                .iter()
                .map(|(h, target)| (*h.last().expect("a warm item"), *target))
                .collect();
            let r = scored(
                &t.codes,
                t.width,
                n,
                t.width,
                &s.transitions,
                &tests,
                |scores, target| Some(ahead_and_tied(scores, target, &c.is_new)),
            );
            ColdRanking::new(c, expected_ranking(&r))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_probabilities_sum_to_one_and_follow_counts() {
        let codes = [0, 0, 0, 1, 1, 0, 1, 1, 2, 0];
        let trie = Trie::new(&codes, 2, 5);
        let counts = Counts::new(&trie, &[(0, 3), (0, 3), (1, 2), (4, 3)], 2);
        for p in 0..5 {
            let total: f64 = counts.leaves(&trie, p).iter().map(|x| x.1).sum();
            assert!((total - 1.0).abs() < 1e-12, "from item {p}: {total}");
        }
        let best = |p: usize| {
            let l = counts.leaves(&trie, p);
            let leaf = l.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
            trie.items_at[&leaf].clone()
        };
        assert_eq!(best(0), vec![3], "0 was followed by 3 twice");
        assert_eq!(best(1), vec![2]);
    }

    /// 200 items on a cycle, users walking i → i + 1, coded (i / 10, i % 10) or by a seeded
    /// shuffle of those codes.
    fn cycle(shuffled: bool) -> (CodeTable, Vec<Vec<u32>>) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let n = 200u32;
        let mut perm: Vec<u32> = (0..n).collect();
        if shuffled {
            perm.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        }
        let t = CodeTable {
            path: "cycle".into(),
            ids: crate::item_id::ItemIds::Int((0..n as i64).collect()),
            codes: perm.iter().flat_map(|&p| [p / 10, p % 10]).collect(),
            width: 2,
            codebook_sizes: None,
        };
        let h = (0..300u32)
            .map(|u| (0..30).map(|k| (u * 7 + k) % n).collect())
            .collect();
        (t, h)
    }

    #[test]
    fn new_items_are_found_through_shared_prefixes_and_not_through_random_codes() {
        let score = |shuffled| {
            let (t, h) = cycle(shuffled);
            let c = Cold::split(&t, &h, 0.2, 1).unwrap();
            evaluate(&t, &c.warm, Some(&c)).cold.unwrap()
        };
        let (real, random) = (score(false), score(true));
        assert!((real.uniform.recall_5 - 5.0 / real.new_items as f64).abs() < 1e-12);
        // Other users walked from c − 1 (around the removed c) to c + 1, which shares c's
        // prefix unless c ends a block of 10; about two new items share each block.
        assert!(real.sid.recall_5 > 0.8, "{:?}", real.sid);
        assert!(
            random.sid.recall_5 < 2.0 * random.uniform.recall_5,
            "{:?} {:?}",
            random.sid,
            random.uniform
        );
    }

    #[test]
    fn ties_count_as_a_uniform_guess_among_the_tied() {
        // All of 20 candidates tied: the uniform floor.
        let all = expected_ranking(&[Some((0, 19))]);
        let floor = crate::eval::cold::uniform(20);
        assert!((all.recall_10 - floor.recall_10).abs() < 1e-12);
        assert!((all.ndcg_5 - floor.ndcg_5).abs() < 1e-12);
        // 3 ahead, tied with 3 others: ranks 4..=7 equally likely; a miss counts 0.
        let r = expected_ranking(&[Some((3, 3)), None]);
        assert!((r.recall_5 - 0.5 * 2.0 / 4.0).abs() < 1e-12);
        assert!((r.recall_10 - 0.5).abs() < 1e-12);
        let scores = [0.5, 0.2, 0.5, 0.9, 0.5];
        let among = [true, true, true, false, true];
        assert_eq!(ahead_and_tied(&scores, 0, &among), (0, 2));
        assert_eq!(ahead_and_tied(&scores, 1, &among), (3, 0));
    }

    #[test]
    fn a_hit_is_the_right_item_even_when_ids_collide() {
        // Items 1 and 2 share an ID: whichever the model points at, only popularity can order
        // them, so the less popular one ranks second.
        let histories = vec![vec![0, 1, 0, 2], vec![0, 1, 0, 1], vec![3, 0, 1]];
        let s = split(&histories);
        assert_eq!(s.tests, vec![(0, 2), (0, 1), (0, 1)]);
        let pop = [3, 2, 0, 1];
        let codes = [0, 0, 1, 1, 1, 1, 2, 0];
        let sc = Scoring {
            codes: &codes,
            width: 2,
            n: 4,
            popularity: &pop,
        };
        let r = ranks(&sc, 2, &s.transitions, &s.tests, None);
        assert_eq!(r, vec![2, 1, 1]);
        let m = ranking(&r);
        assert!((m.recall_5 - 1.0).abs() < 1e-12);
        let want = (1.0 / 3f64.log2() + 2.0) / 3.0;
        assert!((m.ndcg_5 - want).abs() < 1e-12);
    }
}
