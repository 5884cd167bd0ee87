//! The new-item (cold-start) split: a seeded share of the items is held out of training as if
//! it entered the catalogue after it, and each user's last new item is ranked among the new
//! items from the warm items the user had before it.
//!
//! This is what semantic IDs are for and what the leave-one-out split of warm items cannot
//! show: an item nobody has interacted with can still be generated, because its ID shares
//! prefixes with items the model has learned. Random codes give such an item nothing to borrow,
//! so they should score near the uniform floor here however well they do on warm items.
//!
//! Which items are new depends only on the item id and the seed (a hash of the id's text), not
//! on a table's row order or id type, so every table scored with one seed is scored on the same
//! split, whatever tool wrote it.

use super::t1::{CUTOFFS, Ranking};
use super::table::CodeTable;
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// The split of one table's items and the users' histories.
pub struct Cold {
    pub share: f64,
    /// Per table row: held out as new.
    pub is_new: Vec<bool>,
    /// The number of new items (the candidates every query is ranked among).
    pub new_items: usize,
    /// Per user, the history without the new items: what T1 and T2 train and test on.
    pub warm: Vec<Vec<u32>>,
    /// Per user with a new item after at least one warm item: the warm items before the
    /// user's last new item (oldest first) and that item.
    pub queries: Vec<(Vec<u32>, u32)>,
}

/// How well the user's next new item is ranked among the new items.
#[derive(Debug, Clone, Serialize)]
pub struct ColdRanking {
    /// The share of items drawn as new (`--cold-items`).
    pub share: f64,
    /// New items: the candidates.
    pub new_items: usize,
    /// Users with a new item after a warm one: the queries.
    pub users: usize,
    /// The table's IDs.
    pub sid: Ranking,
    /// A uniform guess among the new items (exact expectation): the floor that IDs which say
    /// nothing about an item, such as random codes, stay near.
    pub uniform: Ranking,
    /// With `--embeddings` (tier 1): the new items ranked by the cosine of their vector with
    /// the mean of the user's last [`CONTENT_HISTORY`] warm items' vectors, no IDs involved:
    /// what the item vectors the IDs were made from say on their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Ranking>,
}

/// Warm items of history the content baseline averages (T2's default history).
pub const CONTENT_HISTORY: usize = 20;

impl ColdRanking {
    pub(crate) fn new(c: &Cold, sid: Ranking) -> ColdRanking {
        ColdRanking {
            share: c.share,
            new_items: c.new_items,
            users: c.queries.len(),
            sid,
            uniform: uniform(c.new_items),
            content: None,
        }
    }
}

/// For each query, the new items the content baseline (see [`ColdRanking::content`]) puts
/// above the target and those level with it.
pub(crate) fn content_ranks(
    c: &Cold,
    vectors: &crate::matrix::Matrix,
) -> Vec<Option<(usize, usize)>> {
    use rayon::prelude::*;
    let unit = |v: &[f32]| {
        let n = crate::matrix::dot(v, v).sqrt();
        v.iter()
            .map(|x| if n > 0.0 { x / n } else { 0.0 })
            .collect::<Vec<f32>>()
    };
    let new: Vec<(usize, Vec<f32>)> = (0..c.is_new.len())
        .filter(|&i| c.is_new[i])
        .map(|i| (i, unit(vectors.row(i))))
        .collect();
    c.queries
        .par_iter()
        .map(|(h, target)| {
            let recent = &h[h.len().saturating_sub(CONTENT_HISTORY)..];
            let mut mean = vec![0f32; vectors.cols];
            for &i in recent {
                for (m, x) in mean.iter_mut().zip(unit(vectors.row(i as usize))) {
                    *m += x;
                }
            }
            let score = |v: &[f32]| crate::matrix::dot(&mean, v);
            let (t, want) = new
                .iter()
                .find(|(i, _)| *i == *target as usize)
                .map(|(i, v)| (*i, score(v)))
                .expect("the target is new");
            let (mut ahead, mut tied) = (0, 0);
            for (i, v) in &new {
                let s = score(v);
                if *i != t && s > want {
                    ahead += 1;
                } else if *i != t && s == want {
                    tied += 1;
                }
            }
            Some((ahead, tied))
        })
        .collect()
}

impl Cold {
    /// Draw the new items of `t` with `seed` and split `histories` (per user, table rows in
    /// time order).
    pub fn split(t: &CodeTable, histories: &[Vec<u32>], share: f64, seed: u64) -> Result<Cold> {
        validate(share)?;
        let is_new: Vec<bool> = (0..t.len())
            .map(|i| is_drawn(&id_text(t, i), share, seed))
            .collect();
        let new_items = is_new.iter().filter(|&&c| c).count();
        let warm_of = |h: &[u32]| -> Vec<u32> {
            h.iter().copied().filter(|&i| !is_new[i as usize]).collect()
        };
        let mut warm = Vec::with_capacity(histories.len());
        let mut queries = Vec::new();
        for h in histories {
            let last_new = h
                .iter()
                .rposition(|&i| is_new[i as usize])
                .filter(|&k| h[..k].iter().any(|&i| !is_new[i as usize]));
            match last_new {
                // Nothing the user did from the query on is trained on: the items right after
                // a new one tend to resemble it, and would tell the model where it was.
                Some(k) => {
                    let before = warm_of(&h[..k]);
                    warm.push(before.clone());
                    queries.push((before, h[k]));
                }
                None => warm.push(warm_of(h)),
            }
        }
        if queries.is_empty() {
            return Err(Error::Config(format!(
                "--cold-items {share}: {new_items} of {} items were drawn as new and no user has one \
                 after a warm item; nothing to rank (try a larger share)",
                t.len()
            )));
        }
        Ok(Cold {
            share,
            is_new,
            new_items,
            warm,
            queries,
        })
    }
}

pub(crate) fn validate(share: f64) -> Result<()> {
    if share > 0.0 && share < 1.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "--cold-items {share}: the share of new items must be between 0 and 1"
        )))
    }
}

/// An id as text, so that 42 and "42" are the same item to the draw.
fn id_text(t: &CodeTable, i: usize) -> String {
    key_text(t.ids.key(i))
}

fn key_text(k: crate::item_id::IdKey<'_>) -> String {
    match k {
        crate::item_id::IdKey::Int(v) => v.to_string(),
        crate::item_id::IdKey::Str(s) => s.to_string(),
    }
}

/// What [`write_warm`] kept.
#[derive(Debug, Clone, Serialize)]
pub struct Holdout {
    pub rows: u64,
    pub kept: u64,
    /// Distinct item ids drawn as new (and their rows dropped).
    pub new_items: usize,
}

/// Write `interactions` without the rows whose item `eval --cold-items share` (with `seed`)
/// draws as new, every column kept, streamed by record batch: what a tokenizer that learns
/// from interactions is built from when its IDs are to be scored on new items. The draw needs
/// only the item ids, so this needs no code table.
pub fn write_warm(interactions: &Path, out: &Path, share: f64, seed: u64) -> Result<Holdout> {
    use crate::io::interactions::{ITEM_COLUMN, USER_COLUMN};
    validate(share)?;
    crate::fs::inputs::check_output(out, crate::fs::inputs::OutputKind::File, &[interactions])?;
    let input = crate::io::embeddings::open_parquet(interactions)?;
    let schema = input.schema().clone();
    for c in [USER_COLUMN, ITEM_COLUMN] {
        if schema.column_with_name(c).is_none() {
            return Err(Error::input(
                interactions,
                Some(c),
                None,
                "no such column (interactions need user_id and item_id)",
            ));
        }
    }
    let (_, field) = schema.column_with_name(ITEM_COLUMN).expect("checked");
    if !crate::item_id::ItemIds::supported(field.data_type()) {
        return Err(Error::input(
            interactions,
            Some(ITEM_COLUMN),
            None,
            format!(
                "has type {}; ids must be Utf8, LargeUtf8, Utf8View, Int64 or Int32",
                field.data_type()
            ),
        ));
    }
    let mut writer = crate::io::parquet_out::ParquetOut::create(out, schema, Vec::new())?;
    let mut new_ids = std::collections::HashSet::new();
    let (mut rows, mut kept) = (0u64, 0u64);
    for batch in input.reader(None, None)? {
        let batch = batch.map_err(|e| Error::arrow(interactions, e))?;
        let col = batch.column_by_name(ITEM_COLUMN).expect("checked");
        if let Some(r) = crate::item_id::first_null(col.as_ref()) {
            return Err(Error::input(
                interactions,
                Some(ITEM_COLUMN),
                Some(rows + r as u64),
                "is null",
            ));
        }
        let ids = crate::item_id::IdColumn::new(col.as_ref()).expect("type checked");
        let keep: arrow_array::BooleanArray = (0..batch.num_rows())
            .map(|r| {
                let id = key_text(ids.key(r));
                let new = is_drawn(&id, share, seed);
                if new {
                    new_ids.insert(id);
                }
                Some(!new)
            })
            .collect();
        let warm = arrow_select::filter::filter_record_batch(&batch, &keep)
            .map_err(|e| Error::arrow(interactions, e))?;
        rows += batch.num_rows() as u64;
        kept += warm.num_rows() as u64;
        writer.write(&warm)?;
    }
    writer.finish()?;
    Ok(Holdout {
        rows,
        kept,
        new_items: new_ids.len(),
    })
}

/// Whether the item with id text `id` is new: a uniform draw in [0, 1) from a hash of the
/// text and the seed (FNV-1a, then SplitMix64's finaliser) below `share`. Stable across
/// versions and machines, which a std hasher does not promise.
fn is_drawn(id: &str, share: f64, seed: u64) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < share
}

/// The expected Recall/NDCG of a uniformly random order of `n` candidates: the target is at
/// each rank with probability 1/n.
pub(crate) fn uniform(n: usize) -> Ranking {
    let n = n.max(1);
    let recall = |k: usize| k.min(n) as f64 / n as f64;
    let ndcg = |k: usize| {
        (1..=k.min(n))
            .map(|r| 1.0 / ((r + 1) as f64).log2())
            .sum::<f64>()
            / n as f64
    };
    Ranking {
        recall_5: recall(CUTOFFS[0]),
        recall_10: recall(CUTOFFS[1]),
        ndcg_5: ndcg(CUTOFFS[0]),
        ndcg_10: ndcg(CUTOFFS[1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_id::ItemIds;

    fn table(ids: ItemIds) -> CodeTable {
        let n = ids.len();
        CodeTable {
            path: "t".into(),
            ids,
            codes: vec![0; n],
            width: 1,
            codebook_sizes: None,
        }
    }

    /// 400 items with integer ids, and the rows seed 1 draws as new at a share of 0.2 and
    /// those it leaves warm.
    fn drawn_400() -> (CodeTable, Vec<u32>, Vec<u32>) {
        let t = table(ItemIds::Int((0..400).collect()));
        let c = Cold::split(&t, &[(0..400).collect()], 0.2, 1).unwrap();
        let (new, old) = (0..400).partition(|&i| c.is_new[i as usize]);
        (t, new, old)
    }

    #[test]
    fn the_draw_depends_on_the_id_and_the_seed_only() {
        let ints = table(ItemIds::Int((0..2000).collect()));
        let texts = table(ItemIds::Str(
            (0..2000).rev().map(|i| i.to_string()).collect(),
        ));
        let h = vec![(0..2000).collect::<Vec<u32>>()];
        let a = Cold::split(&ints, &h, 0.1, 7).unwrap();
        let b = Cold::split(&texts, &h, 0.1, 7).unwrap();
        // Row i of `texts` is item 1999 − i of `ints`.
        for i in 0..2000 {
            assert_eq!(a.is_new[i], b.is_new[1999 - i], "item {i}");
        }
        assert!((150..250).contains(&a.new_items), "{} of 2000", a.new_items);
        let c = Cold::split(&ints, &h, 0.1, 8).unwrap();
        assert_ne!(a.is_new, c.is_new, "another seed, another draw");
    }

    #[test]
    fn new_items_leave_the_training_histories_and_the_last_one_is_the_query() {
        let (t, new, old) = drawn_400();
        let h = vec![
            vec![old[0], new[0], old[1], new[1], old[2]],
            // A new item with no warm one before it is not a query.
            vec![new[2], old[3]],
            vec![old[4], old[5]],
        ];
        let c = Cold::split(&t, &h, 0.2, 1).unwrap();
        // The query's user keeps only what came before the query.
        assert_eq!(
            c.warm,
            vec![vec![old[0], old[1]], vec![old[3]], vec![old[4], old[5]]]
        );
        assert_eq!(c.queries, vec![(vec![old[0], old[1]], new[1])]);
        assert_eq!(c.new_items, new.len());
        assert!(Cold::split(&t, &h[2..], 0.2, 1).is_err(), "no query");
        assert!(Cold::split(&t, &h, 1.0, 1).is_err());
        assert!(Cold::split(&t, &h, 0.0, 1).is_err());
    }

    #[test]
    fn the_content_baseline_ranks_new_items_by_cosine_with_the_recent_history() {
        let (t, new, old) = drawn_400();
        // Item i points along axis i % 3, scaled by its row (the length must not matter).
        let v: Vec<f32> = (0..400)
            .flat_map(|i| {
                let mut r = [0f32; 3];
                r[i % 3] = 1.0 + i as f32;
                r
            })
            .collect();
        let m = crate::matrix::Matrix::new(v, 400, 3);
        let along = |xs: &[u32], axis: u32| -> Vec<u32> {
            xs.iter().copied().filter(|&i| i % 3 == axis).collect()
        };
        // A history along axis 1 then a new item along axis 1; another along axis 2.
        let a = along(&new, 1)[0];
        let mut h1: Vec<u32> = along(&old, 1)[..3].to_vec();
        h1.push(a);
        let b = along(&new, 2)[4];
        let mut h2: Vec<u32> = along(&old, 2)[..2].to_vec();
        h2.push(b);
        let c = Cold::split(&t, &[h1, h2], 0.2, 1).unwrap();
        let r = content_ranks(&c, &m);
        // Every new item along the history's axis ties at cosine 1, none is ahead.
        let n = |axis| along(&new, axis).len() - 1;
        assert_eq!(r, vec![Some((0, n(1))), Some((0, n(2)))]);
    }

    #[test]
    fn the_uniform_floor_is_the_expectation_over_ranks() {
        let u = uniform(20);
        assert!((u.recall_10 - 0.5).abs() < 1e-12);
        assert!((u.recall_5 - 0.25).abs() < 1e-12);
        let want: f64 = (1..=5).map(|r| 1.0 / ((r + 1) as f64).log2()).sum::<f64>() / 20.0;
        assert!((u.ndcg_5 - want).abs() < 1e-12);
        assert!((uniform(4).recall_5 - 1.0).abs() < 1e-12);
    }
}
