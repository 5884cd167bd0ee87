//! Collision resolution: give every item a distinct final ID (METHODS.md §7).

use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::io::item_ids::ItemIds;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Final IDs and what it took to make them unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// Row-major, `width` codes per item.
    pub codes: Vec<u16>,
    pub width: usize,
    /// Whether the last column is a suffix level (rank within a collision group).
    pub suffix_level: bool,
    /// Size of each item's collision group before resolution (1 = no collision).
    pub group_size: Vec<u32>,
    /// Items whose last-level code `reassign` changed.
    pub moved: usize,
    /// Items `reassign` could not move because their prefix had no free code.
    pub unresolved: usize,
}

/// Items sorted by (code tuple, item id), and the [start, end) ranges of equal tuples.
pub fn sorted_groups(
    codes: &[u16],
    width: usize,
    ids: &ItemIds,
) -> (Vec<usize>, Vec<(usize, usize)>) {
    let n = ids.len();
    let row = |i: usize| &codes[i * width..(i + 1) * width];
    let mut order: Vec<usize> = (0..n).collect();
    order.par_sort_unstable_by(|&a, &b| row(a).cmp(row(b)).then_with(|| ids.cmp(a, b)));
    let mut bounds = Vec::new();
    let mut s = 0;
    for t in 1..=n {
        if t == n || row(order[t]) != row(order[s]) {
            bounds.push((s, t));
            s = t;
        }
    }
    (order, bounds)
}

/// Largest value a suffix code can take.
const MAX_SUFFIX: usize = u16::MAX as usize;

/// Append a suffix level: each item's rank within its group, ordered by item id (TIGER).
fn add_suffix(codes: &[u16], width: usize, ids: &ItemIds) -> Result<Vec<u16>> {
    let (order, bounds) = sorted_groups(codes, width, ids);
    let w2 = width + 1;
    let mut out = vec![0u16; ids.len() * w2];
    for &(s, e) in &bounds {
        if e - s > MAX_SUFFIX + 1 {
            return Err(Error::Config(format!(
                "{} items share one code tuple, more than a UInt16 suffix level can number; \
                 use larger or more codebooks",
                e - s
            )));
        }
        for (rank, &i) in order[s..e].iter().enumerate() {
            out[i * w2..i * w2 + width].copy_from_slice(&codes[i * width..(i + 1) * width]);
            out[i * w2 + width] = rank as u16;
        }
    }
    Ok(out)
}

fn group_sizes(codes: &[u16], width: usize, ids: &ItemIds) -> Vec<u32> {
    let (order, bounds) = sorted_groups(codes, width, ids);
    let mut g = vec![0u32; ids.len()];
    for &(s, e) in &bounds {
        for &i in &order[s..e] {
            g[i] = (e - s) as u32;
        }
    }
    g
}

/// Resolve collisions among `codes` (rows × `levels`).
///
/// `last_level_distances(items)` must return, for those items, the squared distance of what
/// their last level quantizes to each of the `last_k` last-level codes (rows × `last_k`); it is
/// only called for `reassign`, and only for items that collide.
pub fn resolve(
    codes: &[u16],
    levels: usize,
    ids: &ItemIds,
    strategy: Dedup,
    last_k: usize,
    last_level_distances: impl FnOnce(&[usize]) -> Result<Vec<f32>>,
) -> Result<Resolution> {
    let group_size = group_sizes(codes, levels, ids);
    match strategy {
        Dedup::None => Ok(Resolution {
            codes: codes.to_vec(),
            width: levels,
            suffix_level: false,
            group_size,
            moved: 0,
            unresolved: 0,
        }),
        Dedup::Suffix => Ok(Resolution {
            codes: add_suffix(codes, levels, ids)?,
            width: levels + 1,
            suffix_level: true,
            group_size,
            moved: 0,
            unresolved: 0,
        }),
        Dedup::Reassign => reassign(codes, levels, ids, last_k, group_size, last_level_distances),
    }
}

fn reassign(
    codes: &[u16],
    levels: usize,
    ids: &ItemIds,
    last_k: usize,
    group_size: Vec<u32>,
    last_level_distances: impl FnOnce(&[usize]) -> Result<Vec<f32>>,
) -> Result<Resolution> {
    let mut out = codes.to_vec();
    let need: Vec<usize> = (0..ids.len()).filter(|&i| group_size[i] > 1).collect();
    if need.is_empty() {
        return Ok(Resolution {
            codes: out,
            width: levels,
            suffix_level: false,
            group_size,
            moved: 0,
            unresolved: 0,
        });
    }
    let dist = last_level_distances(&need)?;
    let row_of: HashMap<usize, usize> = need.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let d = |i: usize, code: usize| dist[row_of[&i] * last_k + code];
    let (order, bounds) = sorted_groups(codes, levels, ids);
    let prefix = |i: usize| &codes[i * levels..i * levels + levels - 1];
    let (mut moved, mut unresolved) = (0, 0);
    // Items sharing a prefix are contiguous in `order`: walk one prefix block at a time.
    let mut g = 0;
    while g < bounds.len() {
        let block_start = g;
        let p = prefix(order[bounds[g].0]);
        while g < bounds.len() && prefix(order[bounds[g].0]) == p {
            g += 1;
        }
        let groups = &bounds[block_start..g];
        if groups.iter().all(|&(s, e)| e - s == 1) {
            continue;
        }
        let mut used = vec![false; last_k];
        for &(s, _) in groups {
            used[codes[order[s] * levels + levels - 1] as usize] = true;
        }
        for &(s, e) in groups.iter().filter(|&&(s, e)| e - s > 1) {
            let members = &order[s..e];
            let code = codes[members[0] * levels + levels - 1] as usize;
            // The member closest to the shared code keeps it; the rest move, in id order.
            let keeper = *members
                .iter()
                .min_by(|&&a, &&b| {
                    d(a, code)
                        .total_cmp(&d(b, code))
                        .then_with(|| ids.cmp(a, b))
                })
                .unwrap();
            for &i in members.iter().filter(|&&i| i != keeper) {
                let free = (0..last_k).filter(|&c| !used[c]).min_by(|&a, &b| {
                    d(i, a)
                        .partial_cmp(&d(i, b))
                        .unwrap_or(Ordering::Equal)
                        .then(a.cmp(&b))
                });
                match free {
                    Some(c) => {
                        used[c] = true;
                        out[i * levels + levels - 1] = c as u16;
                        moved += 1;
                    }
                    None => unresolved += 1,
                }
            }
        }
    }
    if unresolved == 0 {
        return Ok(Resolution {
            codes: out,
            width: levels,
            suffix_level: false,
            group_size,
            moved,
            unresolved,
        });
    }
    // Some prefixes were full: fall back to a suffix level so IDs are still unique.
    let codes = add_suffix(&out, levels, ids)?;
    Ok(Resolution {
        codes,
        width: levels + 1,
        suffix_level: true,
        group_size,
        moved,
        unresolved,
    })
}

/// Number of items whose final ID is shared with another item (0 after suffix or reassign).
pub fn duplicate_ids(codes: &[u16], width: usize, ids: &ItemIds) -> usize {
    let (_, bounds) = sorted_groups(codes, width, ids);
    bounds
        .iter()
        .filter(|&&(s, e)| e - s > 1)
        .map(|&(s, e)| e - s)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dist(_: &[usize]) -> Result<Vec<f32>> {
        panic!("distances not needed")
    }

    #[test]
    fn suffix_ranks_by_item_id() {
        let ids = ItemIds::Str(vec!["b".into(), "a".into(), "c".into(), "z".into()]);
        let codes = vec![1, 2, 1, 2, 3, 3, 1, 2];
        let r = resolve(&codes, 2, &ids, Dedup::Suffix, 4, no_dist).unwrap();
        assert_eq!(r.codes, vec![1, 2, 1, 1, 2, 0, 3, 3, 0, 1, 2, 2]);
        assert_eq!(r.group_size, vec![3, 3, 1, 3]);
        assert_eq!(duplicate_ids(&r.codes, 3, &ids), 0);
    }

    #[test]
    fn reassign_moves_to_nearest_free_code_and_falls_back_when_full() {
        let ids = ItemIds::Int(vec![10, 11, 12, 13]);
        // Items 0..3 share (0, 1); item 3 sits on (0, 2). Last level has 4 codes.
        let codes = vec![0, 1, 0, 1, 0, 1, 0, 2];
        let dist = |need: &[usize]| -> Result<Vec<f32>> {
            assert_eq!(need, &[0, 1, 2]);
            Ok(vec![
                0.5, 0.1, 0.2, 0.9, // item 0: keeps code 1 (closest to it)
                0.3, 0.2, 0.1, 0.4, // item 1: code 2 is taken, so 0
                0.9, 0.3, 0.4, 0.2, // item 2: code 3
            ])
        };
        let r = resolve(&codes, 2, &ids, Dedup::Reassign, 4, dist).unwrap();
        assert_eq!(r.codes, vec![0, 1, 0, 0, 0, 3, 0, 2]);
        assert_eq!((r.moved, r.unresolved, r.width), (2, 0, 2));

        // Only 3 last-level codes: one mover finds code 0, the other finds the prefix full.
        let dist2 = |need: &[usize]| Ok(vec![0.0; need.len() * 3]);
        let r = resolve(&codes, 2, &ids, Dedup::Reassign, 3, dist2).unwrap();
        assert!(r.suffix_level);
        assert_eq!((r.moved, r.unresolved, r.width), (1, 1, 3));
        assert_eq!(duplicate_ids(&r.codes, r.width, &ids), 0);
    }
}
