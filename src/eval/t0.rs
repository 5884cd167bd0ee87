//! Tier 0: training-free measures of a code table (seconds). How evenly the codes are used,
//! how many items an ID stands for, and whether items that share an ID prefix are alike:
//! close in embedding space, consumed by the same users, of the same category.

use super::table::CodeTable;
use crate::gemm::sgemm;
use crate::matrix::Matrix;
use rand::SeedableRng;
use rand::seq::index::sample;
use serde::Serialize;
use std::collections::HashMap;

/// Neighbours per query in the embedding-space check.
pub(crate) const KNN_K: usize = 10;
/// Queries of the embedding-space check (a seeded sample when there are more items).
pub(crate) const KNN_QUERIES: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct LevelUsage {
    /// 1-based.
    pub level: usize,
    /// Distinct codes used at this level.
    pub distinct: usize,
    /// K of the level when the table records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codebook_size: Option<usize>,
    /// `distinct / codebook_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilisation: Option<f64>,
    /// Entropy of the level's code distribution over items, in bits.
    pub entropy_bits: f64,
    /// 2^entropy: the number of equally used codes with the same entropy.
    pub perplexity: f64,
}

/// How many items each full ID stands for.
#[derive(Debug, Clone, Serialize)]
pub struct Buckets {
    pub distinct_ids: usize,
    /// Gini coefficient of items per ID (0: every ID holds as many items).
    pub gini: f64,
    /// Entropy of the ID distribution over log2(items): 1 when every item has its own ID.
    pub entropy_ratio: f64,
    pub max_items_per_id: usize,
    /// Items per ID that 99% of items are at or below.
    pub p99_items_per_id: usize,
    /// Share of items whose ID no other item has.
    pub unique_item_rate: f64,
}

/// One measure per prefix length l = 1..=width.
#[derive(Debug, Clone, Serialize)]
pub struct ByPrefix {
    pub prefix_len: usize,
    /// Distinct prefixes of this length.
    pub distinct: usize,
    /// Pairs of items that share a prefix of this length.
    pub pairs: u64,
    /// The measure over those pairs divided by its mean over all pairs (1: no better than
    /// chance; larger: items sharing the prefix are alike). None without such pairs.
    pub lift: Option<f64>,
}

/// Embedding neighbours and codes: of each query's `k` nearest items (cosine), the share that
/// shares its prefix of each length, next to the share for random pairs.
#[derive(Debug, Clone, Serialize)]
pub struct Neighbours {
    pub k: usize,
    pub queries: usize,
    /// Per prefix length 1..=width.
    pub share: Vec<f64>,
    pub random_share: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct T0 {
    pub items: usize,
    pub levels: Vec<LevelUsage>,
    pub buckets: Buckets,
    /// Mean common users of item pairs sharing a prefix, over the all-pairs mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub co_consumption: Option<Vec<ByPrefix>>,
    /// Share of same-category pairs among pairs sharing a prefix, over the all-pairs share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Vec<ByPrefix>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<Neighbours>,
}

/// What T0 can use besides the table; every part optional.
#[derive(Default)]
pub struct Side<'a> {
    /// Per user, the table rows of the items they consumed (any order, repeats allowed).
    pub histories: Option<&'a [Vec<u32>]>,
    /// Per table row, the item's category.
    pub categories: Option<&'a [Option<String>]>,
    /// Per table row, the item's vector.
    pub embeddings: Option<&'a Matrix>,
    pub seed: u64,
}

pub fn evaluate(t: &CodeTable, side: &Side) -> T0 {
    T0 {
        items: t.len(),
        levels: levels(t),
        buckets: buckets(t),
        co_consumption: side.histories.map(|h| co_consumption(t, h)),
        category: side.categories.map(|c| category(t, c)),
        neighbours: side.embeddings.map(|e| neighbours(t, e, side.seed)),
    }
}

fn c2(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn entropy_bits(counts: impl Iterator<Item = usize>, total: usize) -> f64 {
    let n = total as f64;
    counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn levels(t: &CodeTable) -> Vec<LevelUsage> {
    (0..t.width)
        .map(|l| {
            let mut counts: HashMap<u32, usize> = HashMap::new();
            for i in 0..t.len() {
                *counts.entry(t.row(i)[l]).or_default() += 1;
            }
            let h = entropy_bits(counts.values().copied(), t.len());
            let k = t.codebook_sizes.as_ref().and_then(|s| s.get(l).copied());
            LevelUsage {
                level: l + 1,
                distinct: counts.len(),
                codebook_size: k,
                utilisation: k.map(|k| counts.len() as f64 / k as f64),
                entropy_bits: h,
                perplexity: h.exp2(),
            }
        })
        .collect()
}

/// Items per distinct prefix of length `len`, and each item's group.
fn groups(t: &CodeTable, len: usize) -> (Vec<usize>, Vec<u32>) {
    let mut index: HashMap<&[u32], u32> = HashMap::new();
    let mut sizes = Vec::new();
    let mut of = Vec::with_capacity(t.len());
    for i in 0..t.len() {
        let next = index.len() as u32;
        let g = *index.entry(&t.row(i)[..len]).or_insert(next);
        if g as usize == sizes.len() {
            sizes.push(0);
        }
        sizes[g as usize] += 1;
        of.push(g);
    }
    (sizes, of)
}

fn buckets(t: &CodeTable) -> Buckets {
    let n = t.len();
    let (mut sizes, _) = groups(t, t.width);
    sizes.sort_unstable();
    let total: usize = sizes.iter().sum();
    let m = sizes.len() as f64;
    let weighted: f64 = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| (i + 1) as f64 * s as f64)
        .sum();
    let gini = if total == 0 {
        0.0
    } else {
        2.0 * weighted / (m * total as f64) - (m + 1.0) / m
    };
    let h = entropy_bits(sizes.iter().copied(), n);
    // Items in ascending order of their ID's size: the item at the 99th percentile.
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
    let mut seen = 0;
    let mut p99 = 0;
    for &s in &sizes {
        seen += s;
        if seen >= rank {
            p99 = s;
            break;
        }
    }
    Buckets {
        distinct_ids: sizes.len(),
        gini: gini.max(0.0),
        entropy_ratio: if n > 1 { h / (n as f64).log2() } else { 1.0 },
        max_items_per_id: sizes.last().copied().unwrap_or(0),
        p99_items_per_id: p99,
        unique_item_rate: sizes.iter().filter(|&&s| s == 1).count() as f64 / n.max(1) as f64,
    }
}

/// Per prefix length: Σ_groups Σ_users C(items of the user in the group, 2) over the pairs
/// sharing the prefix, relative to Σ_users C(items of the user, 2) over all pairs. Exact, in
/// one pass over the histories per level.
fn co_consumption(t: &CodeTable, histories: &[Vec<u32>]) -> Vec<ByPrefix> {
    let distinct: Vec<Vec<u32>> = histories
        .iter()
        .map(|h| {
            let mut v = h.clone();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let all_pairs = c2(t.len() as u64);
    let all_common: u64 = distinct.iter().map(|d| c2(d.len() as u64)).sum();
    let base = all_common as f64 / all_pairs.max(1) as f64;
    (1..=t.width)
        .map(|len| {
            let (sizes, of) = groups(t, len);
            let pairs: u64 = sizes.iter().map(|&s| c2(s as u64)).sum();
            let mut common = 0u64;
            let mut per: HashMap<u32, u64> = HashMap::new();
            for d in &distinct {
                per.clear();
                for &i in d {
                    *per.entry(of[i as usize]).or_default() += 1;
                }
                common += per.values().map(|&c| c2(c)).sum::<u64>();
            }
            ByPrefix {
                prefix_len: len,
                distinct: sizes.len(),
                pairs,
                lift: (pairs > 0 && base > 0.0).then(|| common as f64 / pairs as f64 / base),
            }
        })
        .collect()
}

/// Same-category share among pairs sharing a prefix over the share among all pairs, both over
/// items that have a category.
fn category(t: &CodeTable, cats: &[Option<String>]) -> Vec<ByPrefix> {
    let mut names: HashMap<&str, u32> = HashMap::new();
    let cat: Vec<Option<u32>> = cats
        .iter()
        .map(|c| {
            c.as_deref().map(|s| {
                let next = names.len() as u32;
                *names.entry(s).or_insert(next)
            })
        })
        .collect();
    let count_pairs = |key: &dyn Fn(usize) -> u64| -> (u64, u64) {
        let mut group: HashMap<u64, u64> = HashMap::new();
        let mut same: HashMap<(u64, u32), u64> = HashMap::new();
        for (i, c) in cat.iter().enumerate() {
            if let Some(c) = c {
                *group.entry(key(i)).or_default() += 1;
                *same.entry((key(i), *c)).or_default() += 1;
            }
        }
        (
            group.values().map(|&n| c2(n)).sum(),
            same.values().map(|&n| c2(n)).sum(),
        )
    };
    let (all, all_same) = count_pairs(&|_| 0);
    let base = all_same as f64 / all.max(1) as f64;
    (1..=t.width)
        .map(|len| {
            let (sizes, of) = groups(t, len);
            let (pairs, same) = count_pairs(&|i| of[i] as u64);
            ByPrefix {
                prefix_len: len,
                distinct: sizes.len(),
                pairs,
                lift: (pairs > 0 && base > 0.0).then(|| same as f64 / pairs as f64 / base),
            }
        })
        .collect()
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn neighbours(t: &CodeTable, e: &Matrix, seed: u64) -> Neighbours {
    let n = t.len();
    let k = KNN_K.min(n.saturating_sub(1));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let queries: Vec<usize> = if n > KNN_QUERIES {
        let mut q = sample(&mut rng, n, KNN_QUERIES).into_vec();
        q.sort_unstable();
        q
    } else {
        (0..n).collect()
    };
    let mut unit = e.clone();
    for i in 0..unit.rows {
        let r = unit.row_mut(i);
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            r.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let q = unit.gather(&queries);
    let mut sims = vec![0f32; q.rows * n];
    sgemm(
        &q.data, q.rows, q.cols, &unit.data, n, true, &mut sims, false,
    );
    let mut hits = vec![0u64; t.width + 1];
    for (qi, &i) in queries.iter().enumerate() {
        let row = &sims[qi * n..(qi + 1) * n];
        if k == 0 {
            continue;
        }
        let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        // Highest similarity first; ties by row, so the result does not depend on the sort.
        order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &j in &order[..k] {
            hits[common_prefix(t.row(i), t.row(j))] += 1;
        }
    }
    let total = (queries.len() * k).max(1) as f64;
    // Share of neighbours with a common prefix of at least l: a suffix sum over exact lengths.
    let share = (1..=t.width)
        .map(|l| hits[l..].iter().sum::<u64>() as f64 / total)
        .collect();
    let all = c2(n as u64).max(1) as f64;
    let random_share = (1..=t.width)
        .map(|l| {
            let (sizes, _) = groups(t, l);
            sizes.iter().map(|&s| c2(s as u64)).sum::<u64>() as f64 / all
        })
        .collect();
    Neighbours {
        k,
        queries: queries.len(),
        share,
        random_share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_id::ItemIds;

    fn table(codes: &[&[u32]]) -> CodeTable {
        CodeTable {
            path: "t.parquet".into(),
            ids: ItemIds::Int((0..codes.len() as i64).collect()),
            codes: codes.iter().flat_map(|c| c.iter().copied()).collect(),
            width: codes[0].len(),
            codebook_sizes: Some(vec![4, 4]),
        }
    }

    #[test]
    fn buckets_of_unique_and_colliding_ids() {
        let u = buckets(&table(&[&[0, 0], &[0, 1], &[1, 0], &[1, 1]]));
        assert_eq!((u.distinct_ids, u.max_items_per_id), (4, 1));
        assert!(u.gini.abs() < 1e-12 && (u.entropy_ratio - 1.0).abs() < 1e-12);
        assert_eq!(u.unique_item_rate, 1.0);
        // One ID holds 3 of 4 items: sizes [1, 3], Gini = 2·(1·1 + 2·3)/(2·4) − 3/2 = 0.25.
        let c = buckets(&table(&[&[0, 0], &[0, 0], &[0, 0], &[1, 1]]));
        assert_eq!(
            (c.distinct_ids, c.max_items_per_id, c.p99_items_per_id),
            (2, 3, 3)
        );
        assert!((c.gini - 0.25).abs() < 1e-12);
        assert_eq!(c.unique_item_rate, 0.25);
        let lv = levels(&table(&[&[0, 0], &[0, 1], &[1, 0], &[1, 1]]));
        assert_eq!(lv[0].distinct, 2);
        assert!((lv[0].entropy_bits - 1.0).abs() < 1e-12 && (lv[0].perplexity - 2.0).abs() < 1e-12);
        assert_eq!(lv[0].utilisation, Some(0.5));
    }

    /// Against a naive all-pairs count.
    #[test]
    fn co_consumption_lift_matches_pair_counting() {
        let t = table(&[&[0, 0], &[0, 1], &[1, 0], &[1, 1], &[0, 0]]);
        let h: Vec<Vec<u32>> = vec![vec![0, 1, 1], vec![0, 4], vec![2, 3, 0], vec![3]];
        let got = co_consumption(&t, &h);
        let users = |a: u32, b: u32| {
            h.iter()
                .filter(|u| u.contains(&a) && u.contains(&b))
                .count()
        };
        let mut all = (0.0, 0.0);
        let mut by = [(0.0, 0.0); 3];
        for a in 0..5u32 {
            for b in a + 1..5 {
                let c = users(a, b) as f64;
                all.0 += c;
                all.1 += 1.0;
                let p = common_prefix(t.row(a as usize), t.row(b as usize));
                for v in &mut by[1..=p] {
                    v.0 += c;
                    v.1 += 1.0;
                }
            }
        }
        for l in 1..=2 {
            let want = (by[l].0 / by[l].1) / (all.0 / all.1);
            assert!((got[l - 1].lift.unwrap() - want).abs() < 1e-12, "level {l}");
            assert_eq!(got[l - 1].pairs, by[l].1 as u64);
        }
    }

    #[test]
    fn category_lift_and_neighbours() {
        let t = table(&[&[0, 0], &[0, 1], &[1, 0], &[1, 1]]);
        let cats = vec![
            Some("a".into()),
            Some("a".into()),
            Some("b".into()),
            Some("b".into()),
        ];
        // Pairs sharing the first code are always same-category: 1 / (2 of 6 pairs).
        let c = category(&t, &cats);
        assert!((c[0].lift.unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(c[1].lift, None, "no two items share a full ID");
        let e = Matrix::new(vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9], 4, 2);
        let n = neighbours(&t, &e, 1);
        assert_eq!(n.k, 3);
        // Each item's nearest neighbour shares its first code; of 3 neighbours, 1 does.
        assert!((n.share[0] - 1.0 / 3.0).abs() < 1e-12);
    }
}
