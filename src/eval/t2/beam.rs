//! Constrained beam search over the trie of the table's IDs: a beam only ever follows a trie
//! edge, so every finished beam is the ID of some item. The model's scores of a node's children
//! are renormalised over those children, so the probabilities of all IDs sum to one, as in T1.

use crate::error::Result;
use crate::eval::trie::Trie;

/// A partial ID being decoded for query `query`.
#[derive(Debug, Clone)]
pub(crate) struct Beam {
    pub query: usize,
    /// The trie nodes from the first level down to `node`.
    pub path: Vec<u32>,
    pub node: u32,
    pub logp: f64,
}

/// Up to `width` full IDs (leaf, log-probability) per query, most probable first (ties: lower
/// leaf first). `scores(level, beams)` gives, for each beam, a logit per child of its node in
/// the trie's order; it is called once per level for all queries' beams together, so the model
/// runs in batches.
pub(crate) fn search<F>(
    trie: &Trie,
    queries: usize,
    width: usize,
    mut scores: F,
) -> Result<Vec<Vec<(u32, f64)>>>
where
    F: FnMut(usize, &[Beam]) -> Result<Vec<Vec<f32>>>,
{
    let mut beams: Vec<Beam> = (0..queries)
        .map(|q| Beam {
            query: q,
            path: Vec::new(),
            node: 0,
            logp: 0.0,
        })
        .collect();
    for level in 0..trie.levels {
        let logits = scores(level, &beams)?;
        let mut next: Vec<Vec<Beam>> = vec![Vec::new(); queries];
        for (b, lg) in beams.iter().zip(logits) {
            let kids = &trie.children[b.node as usize];
            debug_assert_eq!(kids.len(), lg.len());
            let max = lg.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + lg.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            for (&c, &x) in kids.iter().zip(&lg) {
                let mut path = b.path.clone();
                path.push(c);
                next[b.query].push(Beam {
                    query: b.query,
                    path,
                    node: c,
                    logp: b.logp + x as f64 - lse,
                });
            }
        }
        beams = next
            .into_iter()
            .flat_map(|mut v| {
                v.sort_by(|a, b| b.logp.total_cmp(&a.logp).then(a.node.cmp(&b.node)));
                v.truncate(width);
                v
            })
            .collect();
    }
    let mut out = vec![Vec::new(); queries];
    for b in beams {
        out[b.query].push((b.node, b.logp));
    }
    Ok(out)
}

/// 1-based rank of `target` in the items of `leaves` (in order; the items of one leaf, which
/// share its ID, by training popularity, then row), or None if it is not among them. A hit is
/// the right item, so colliding IDs cannot inflate the figures.
pub(crate) fn rank(
    trie: &Trie,
    leaves: &[(u32, f64)],
    popularity: &[u32],
    target: u32,
) -> Option<usize> {
    let mut seen = 0;
    for (leaf, _) in leaves {
        let items = &trie.items_at[leaf];
        if items.contains(&target) {
            let p = |i: u32| (std::cmp::Reverse(popularity[i as usize]), i);
            let ahead = items.iter().filter(|&&i| p(i) < p(target)).count();
            return Some(seen + ahead + 1);
        }
        seen += items.len();
    }
    None
}

/// How many decoded items come before `target` and how many share its ID (its equals, in
/// [`crate::eval::t1::expected_ranking`]), or None when the beam did not reach it: for
/// candidates with no popularity to order them.
pub(crate) fn ahead_and_tied(
    trie: &Trie,
    leaves: &[(u32, f64)],
    target: u32,
) -> Option<(usize, usize)> {
    let mut seen = 0;
    for (leaf, _) in leaves {
        let items = &trie.items_at[leaf];
        if items.contains(&target) {
            return Some((seen, items.len() - 1));
        }
        seen += items.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random logit for (query, path so far, child).
    fn logit(q: usize, path: &[u32], child: u32) -> f32 {
        let mut h = 1469598103934665603u64 ^ q as u64;
        for &x in path.iter().chain([&child]) {
            h = (h ^ x as u64).wrapping_mul(1099511628211);
        }
        (h % 1000) as f32 / 100.0
    }

    fn toy() -> Trie {
        // 3 levels with fan-outs that differ by node: 14 items, two of them colliding.
        let rows: [[u32; 3]; 14] = [
            [0, 0, 0],
            [0, 0, 1],
            [0, 0, 2],
            [0, 1, 0],
            [0, 2, 5],
            [1, 0, 0],
            [1, 0, 3],
            [1, 3, 1],
            [2, 0, 0],
            [2, 0, 1],
            [2, 1, 4],
            [2, 2, 2],
            [2, 2, 3],
            [2, 2, 3],
        ];
        let codes: Vec<u32> = rows.iter().flatten().copied().collect();
        Trie::new(&codes, 3, rows.len())
    }

    /// Every full ID with its exact log-probability, best first.
    fn brute_force(trie: &Trie, q: usize) -> Vec<(u32, f64)> {
        let mut out = Vec::new();
        let mut stack = vec![(0u32, Vec::new(), 0f64)];
        while let Some((node, path, lp)) = stack.pop() {
            if path.len() == trie.levels {
                out.push((node, lp));
                continue;
            }
            let kids = &trie.children[node as usize];
            let lg: Vec<f64> = kids.iter().map(|&c| logit(q, &path, c) as f64).collect();
            let lse = lg.iter().map(|x| x.exp()).sum::<f64>().ln();
            for (&c, x) in kids.iter().zip(lg) {
                let mut p = path.clone();
                p.push(c);
                stack.push((c, p, lp + x - lse));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    fn beam(trie: &Trie, queries: usize, width: usize) -> Vec<Vec<(u32, f64)>> {
        search(trie, queries, width, |_, beams| {
            Ok(beams
                .iter()
                .map(|b| {
                    let path: Vec<u32> = b.path.clone();
                    trie.children[b.node as usize]
                        .iter()
                        .map(|&c| logit(b.query, &path, c))
                        .collect()
                })
                .collect())
        })
        .unwrap()
    }

    #[test]
    fn a_wide_beam_finds_every_id_in_the_exact_order() {
        let trie = toy();
        let got = beam(&trie, 3, 100);
        for (q, got) in got.iter().enumerate() {
            let want = brute_force(&trie, q);
            assert_eq!(want.len(), 13, "13 distinct IDs");
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0, "query {q}");
                assert!((g.1 - w.1).abs() < 1e-9);
            }
            let total: f64 = got.iter().map(|x| x.1.exp()).sum();
            assert!((total - 1.0).abs() < 1e-9, "probabilities sum to one");
        }
    }

    #[test]
    fn a_narrow_beam_returns_real_ids_with_their_exact_scores() {
        let trie = toy();
        for (q, got) in beam(&trie, 3, 4).iter().enumerate() {
            let exact = brute_force(&trie, q);
            assert_eq!(got.len(), 4);
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
            for (leaf, lp) in got {
                let (_, want) = exact.iter().find(|x| x.0 == *leaf).expect("a real ID");
                assert!((lp - want).abs() < 1e-9);
            }
            // Greedy decoding is a beam of one; a wider beam can only find better IDs.
            let greedy = beam(&trie, 3, 1)[q][0];
            assert!(got[0].1 >= greedy.1 - 1e-12);
        }
    }

    #[test]
    fn items_sharing_an_id_are_ranked_by_popularity() {
        let trie = toy();
        let leaf = |i: usize| trie.node[3][i];
        // Items 12 and 13 share an ID; 13 is more popular.
        let mut pop = vec![0u32; 14];
        pop[13] = 5;
        let leaves = [(leaf(0), -0.1), (leaf(12), -0.2)];
        assert_eq!(rank(&trie, &leaves, &pop, 0), Some(1));
        assert_eq!(rank(&trie, &leaves, &pop, 13), Some(2));
        assert_eq!(rank(&trie, &leaves, &pop, 12), Some(3));
        assert_eq!(rank(&trie, &leaves, &pop, 5), None);
    }
}
