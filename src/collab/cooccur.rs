//! Co-occurrence: items that appear within `window` positions of each other in a user's
//! time-ordered history. One traversal ([`Histories::window_pairs`]) feeds both the
//! deduplicated pairs of PLUM's contrastive alignment ([`pairs`]) and the counts behind the
//! PPMI embeddings ([`counts`]).

use crate::io::interactions::{Interaction, Interactions};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::collections::HashMap;

/// Histories are processed in blocks of about this many events: enough work per rayon task,
/// and a bounded buffer of pair keys per block. Fixed, so results never depend on threads.
const BLOCK_EVENTS: usize = 1 << 16;

/// Every user's items in time order (ties keep file order); users without a known item are
/// left out.
#[derive(Debug, Clone)]
pub struct Histories {
    items: Vec<u32>,
    /// History `h` is `items[starts[h]..starts[h + 1]]`.
    starts: Vec<usize>,
}

impl Histories {
    /// Group by user with a counting sort (stable: file order within a user), then sort each
    /// history by time, stably.
    pub fn new(events: &[Interaction], users: u64) -> Self {
        let users = users as usize;
        let mut start = vec![0usize; users + 1];
        for e in events {
            start[e.user as usize + 1] += 1;
        }
        for u in 0..users {
            start[u + 1] += start[u];
        }
        let mut next = start.clone();
        let mut by_user = vec![(0i64, 0u32); events.len()];
        for e in events {
            let slot = &mut next[e.user as usize];
            by_user[*slot] = (e.time, e.item);
            *slot += 1;
        }
        let mut slices = Vec::with_capacity(users);
        let mut rest = by_user.as_mut_slice();
        for u in 0..users {
            let (h, tail) = rest.split_at_mut(start[u + 1] - start[u]);
            slices.push(h);
            rest = tail;
        }
        slices
            .par_iter_mut()
            .for_each(|h| h.sort_by_key(|&(t, _)| t));
        let items = by_user.iter().map(|&(_, i)| i).collect();
        let mut starts = vec![0];
        for u in 0..users {
            if start[u + 1] > start[u] {
                starts.push(start[u + 1]);
            }
        }
        Histories { items, starts }
    }

    /// Users with at least one known item.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// History `h`'s catalogue rows, in time order.
    pub fn get(&self, h: usize) -> &[u32] {
        &self.items[self.starts[h]..self.starts[h + 1]]
    }

    /// Calls `f(x, y)` for every two positions at most `window` apart in one history whose
    /// items differ (x earlier than y): the definition of co-occurrence (docs/methods.md §4, §6).
    #[inline]
    pub(crate) fn window_pairs(history: &[u32], window: usize, mut f: impl FnMut(u32, u32)) {
        for a in 0..history.len() {
            for &y in &history[a + 1..history.len().min(a + 1 + window)] {
                let x = history[a];
                if x != y {
                    f(x, y);
                }
            }
        }
    }

    /// Consecutive ranges of histories holding about [`BLOCK_EVENTS`] events each.
    fn blocks(&self) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut from = 0;
        for h in 0..self.len() {
            if self.starts[h + 1] - self.starts[from] >= BLOCK_EVENTS {
                out.push(from..h + 1);
                from = h + 1;
            }
        }
        if from < self.len() {
            out.push(from..self.len());
        }
        out
    }

    /// Each block's co-occurring pairs as sorted `(min << 32 | max, occurrences)` runs.
    fn block_counts(&self, window: usize) -> Vec<Vec<(u64, u64)>> {
        self.blocks()
            .into_par_iter()
            .map(|range| {
                let mut keys = Vec::new();
                for h in range {
                    Self::window_pairs(self.get(h), window, |x, y| {
                        keys.push(pack(x.min(y), x.max(y)));
                    });
                }
                keys.sort_unstable();
                run_lengths(keys.into_iter().map(|k| (k, 1)))
            })
            .collect()
    }
}

#[inline]
fn pack(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline]
fn unpack(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// Sum the counts of equal adjacent keys.
fn run_lengths(sorted: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (k, c) in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == k => *n += c,
            _ => out.push((k, c)),
        }
    }
    out
}

/// Distinct co-occurring pairs of catalogue rows, and what was dropped.
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    /// (a, b) with a < b, each once.
    pub pairs: Vec<(u32, u32)>,
    /// Interactions whose item is not among the items being trained on.
    pub unknown_events: u64,
    /// Users with at least one known item.
    pub users: usize,
    /// Pairs removed by the per-item cap.
    pub capped: u64,
}

/// The distinct co-occurring pairs. `max_per_item` > 0 keeps at most that many pairs per item
/// (a seeded random choice), so a handful of very popular items cannot dominate the loss.
pub fn pairs(inter: &Interactions, window: usize, max_per_item: usize, seed: u64) -> Pairs {
    let h = Histories::new(&inter.events, inter.users);
    let mut out: Vec<(u32, u32)> = h
        .block_counts(window)
        .into_iter()
        .flatten()
        .map(|(k, _)| unpack(k))
        .collect();
    out.sort_unstable();
    out.dedup();
    let mut capped = 0;
    if max_per_item > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        out.shuffle(&mut rng);
        let mut count: HashMap<u32, usize> = HashMap::new();
        let before = out.len();
        out.retain(|&(a, b)| {
            let (ca, cb) = (*count.get(&a).unwrap_or(&0), *count.get(&b).unwrap_or(&0));
            if ca >= max_per_item || cb >= max_per_item {
                return false;
            }
            *count.entry(a).or_default() += 1;
            *count.entry(b).or_default() += 1;
            true
        });
        capped = (before - out.len()) as u64;
        out.sort_unstable();
    }
    Pairs {
        pairs: out,
        unknown_events: inter.unknown_events,
        users: h.len(),
        capped,
    }
}

/// How often each two different items co-occur, over all histories: `(a, b, count)` with
/// a < b, sorted. The matrix is symmetric (count(b, a) = count(a, b)) with a zero diagonal (an
/// item repeated within the window is no evidence about other items). Integer sums, so the
/// result does not depend on how work was split.
pub fn counts(h: &Histories, window: usize) -> Vec<(u32, u32, u64)> {
    // Blocks are moved in one by one, so only one copy of the keys is alive.
    let blocks = h.block_counts(window);
    let mut all = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
    for b in blocks {
        all.extend(b);
    }
    all.par_sort_unstable_by_key(|&(k, _)| k);
    let mut out: Vec<(u32, u32, u64)> = Vec::new();
    for (k, c) in all {
        let (a, b) = unpack(k);
        match out.last_mut() {
            Some(last) if (last.0, last.1) == (a, b) => last.2 += c,
            _ => out.push((a, b, c)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: u32, item: u32, time: i64) -> Interaction {
        Interaction { user, item, time }
    }

    fn inter(events: Vec<Interaction>, users: u64, unknown: u64) -> Interactions {
        Interactions {
            rows: events.len() as u64 + unknown,
            events,
            unknown_events: unknown,
            users,
            item_type: arrow_schema::DataType::Int64,
        }
    }

    #[test]
    fn window_order_dedup_and_unknown_items() {
        // User 0 saw 3, 1, 2 in time order (file order differs); one unknown item was skipped
        // by the reader.
        let i = inter(
            vec![
                ev(0, 2, 30),
                ev(0, 3, 10),
                ev(0, 1, 20),
                ev(1, 1, 1),
                ev(1, 3, 2),
            ],
            2,
            1,
        );
        let p = pairs(&i, 1, 0, 0);
        // Window 1: neighbours only: 3-1, 1-2 (user 0), 1-3 again (user 1, deduplicated).
        assert_eq!(p.pairs, vec![(1, 2), (1, 3)]);
        assert_eq!(p.unknown_events, 1);
        assert_eq!(p.users, 2);
        let p = pairs(&i, 5, 0, 0);
        assert_eq!(p.pairs, vec![(1, 2), (1, 3), (2, 3)]);
        // Cap: at most one pair per item.
        let p = pairs(&i, 5, 1, 0);
        assert_eq!(p.pairs.len(), 1);
        assert_eq!(p.capped, 2);
    }

    #[test]
    fn counts_follow_positions_ties_and_skip_self_pairs() {
        // User 0 (file order, equal times keep it): 4 5 4 6; user 2: 5 4. User 1 has no
        // known item.
        let events = vec![
            ev(0, 4, 7),
            ev(2, 5, 0),
            ev(0, 5, 7),
            ev(0, 4, 7),
            ev(2, 4, 1),
            ev(0, 6, 9),
        ];
        let h = Histories::new(&events, 3);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get(0), &[4, 5, 4, 6]);
        assert_eq!(h.get(1), &[5, 4]);
        // Window 2 over 4 5 4 6: (4,5) (4,4 skipped) (5,4) (5,6) (4,6); user 2: (5,4).
        assert_eq!(counts(&h, 2), vec![(4, 5, 3), (4, 6, 1), (5, 6, 1)]);
        assert_eq!(counts(&h, 1), vec![(4, 5, 3), (4, 6, 1)]);
    }

    #[test]
    fn blocks_cover_every_history_once() {
        // Many users so that several blocks form; counts must equal a direct traversal.
        let mut events = Vec::new();
        for u in 0..3000u32 {
            for k in 0..30u32 {
                events.push(ev(u, (u * 7 + k * k) % 97, k as i64));
            }
        }
        let h = Histories::new(&events, 3000);
        assert!(h.blocks().len() > 1);
        let mut direct: HashMap<(u32, u32), u64> = HashMap::new();
        for i in 0..h.len() {
            Histories::window_pairs(h.get(i), 3, |x, y| {
                *direct.entry((x.min(y), x.max(y))).or_default() += 1
            });
        }
        let mut direct: Vec<_> = direct.into_iter().map(|((a, b), c)| (a, b, c)).collect();
        direct.sort_unstable();
        assert_eq!(counts(&h, 3), direct);
    }
}
