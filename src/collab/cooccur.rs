//! Co-occurrence pairs: items that appear within `window` positions of each other in a user's
//! time-ordered history. They are the positives of PLUM's contrastive alignment.

use crate::io::interactions::{Event, OwnedId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;

/// Pairs over the items of `index` (item id → row), and what was dropped.
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    /// (a, b) with a < b, each once.
    pub pairs: Vec<(u32, u32)>,
    /// Interactions whose item is not among the items being trained on.
    pub unknown_events: u64,
    pub users: usize,
    /// Pairs removed by the per-item cap.
    pub capped: u64,
}

/// Build the pairs. `max_per_item` > 0 keeps at most that many pairs per item (a seeded random
/// choice), so a handful of very popular items cannot dominate the loss.
pub fn pairs(
    events: &[Event],
    index: &HashMap<OwnedId, u32>,
    window: usize,
    max_per_item: usize,
    seed: u64,
) -> Pairs {
    let mut by_user: HashMap<u32, Vec<(i64, u64, u32)>> = HashMap::new();
    let mut unknown = 0u64;
    for e in events {
        match index.get(&e.item) {
            Some(&i) => by_user.entry(e.user).or_default().push((e.time, e.row, i)),
            None => unknown += 1,
        }
    }
    let users = by_user.len();
    let mut out = Vec::new();
    let mut histories: Vec<_> = by_user.into_iter().collect();
    histories.sort_by_key(|(u, _)| *u);
    for (_, mut h) in histories {
        h.sort_unstable();
        for a in 0..h.len() {
            for b in a + 1..h.len().min(a + 1 + window) {
                let (x, y) = (h[a].2, h[b].2);
                if x != y {
                    out.push((x.min(y), x.max(y)));
                }
            }
        }
    }
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
        unknown_events: unknown,
        users,
        capped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: u32, item: i64, time: i64) -> Event {
        Event {
            user,
            item: OwnedId::Int(item),
            time,
            row: 0,
        }
    }

    #[test]
    fn window_order_dedup_and_unknown_items() {
        let index: HashMap<OwnedId, u32> = (0..5).map(|i| (OwnedId::Int(i), i as u32)).collect();
        // User 0 saw 3, 1, 2 in time order (file order differs); item 9 is unknown.
        let events = vec![
            ev(0, 2, 30),
            ev(0, 3, 10),
            ev(0, 1, 20),
            ev(0, 9, 25),
            ev(1, 1, 1),
            ev(1, 3, 2),
        ];
        let p = pairs(&events, &index, 1, 0, 0);
        // Window 1: neighbours only: 3-1, 1-2 (user 0), 1-3 again (user 1, deduplicated).
        assert_eq!(p.pairs, vec![(1, 2), (1, 3)]);
        assert_eq!(p.unknown_events, 1);
        let p = pairs(&events, &index, 5, 0, 0);
        assert_eq!(p.pairs, vec![(1, 2), (1, 3), (2, 3)]);
        // Cap: at most one pair per item.
        let p = pairs(&events, &index, 5, 1, 0);
        assert_eq!(p.pairs.len(), 1);
        assert_eq!(p.capped, 2);
    }
}
