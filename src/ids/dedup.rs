//! Collision resolution: give every item a distinct final ID (docs/methods.md §7).

use crate::error::{Error, Result};
use crate::ids::config::Dedup;
use crate::item_id::ItemIds;
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
pub(crate) fn sorted_groups(
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

/// IDs handed out earlier (`assign --existing`): they never change, and new items must not
/// take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Existing<'a> {
    /// Final codes, row-major, `width` per item.
    pub codes: &'a [u16],
    pub width: usize,
}

/// Resolve collisions among `codes` (rows × `levels`), optionally against `existing` IDs.
///
/// `last_level_distances(items)` must return, for those items, the squared distance of what
/// their last level quantizes to each of the `last_k` last-level codes (rows × `last_k`); it is
/// only called for `reassign`, and only for items that collide.
pub(crate) fn resolve(
    codes: &[u16],
    levels: usize,
    ids: &ItemIds,
    strategy: Dedup,
    last_k: usize,
    existing: Option<Existing>,
    last_level_distances: impl FnOnce(&[usize]) -> Result<Vec<f32>>,
) -> Result<Resolution> {
    let n = ids.len();
    // Existing code tuples (first `levels` codes) → how many items hold them, next free suffix.
    let mut taken: HashMap<&[u16], (u32, u32)> = HashMap::new();
    if let Some(ex) = existing {
        let compatible = match strategy {
            Dedup::Suffix => ex.width == levels + 1,
            Dedup::None => ex.width == levels,
            Dedup::Reassign => ex.width == levels || ex.width == levels + 1,
        };
        if !compatible {
            return Err(Error::Config(format!(
                "the existing IDs have {} codes each, which `--dedup {}` with {levels} quantizer levels cannot extend",
                ex.width,
                strategy.name()
            )));
        }
        for row in ex.codes.chunks(ex.width) {
            let suffix = if ex.width > levels {
                row[levels] as u32 + 1
            } else {
                1
            };
            let e = taken.entry(&row[..levels]).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(suffix);
        }
    }
    let (order, bounds) = sorted_groups(codes, levels, ids);
    let row = |i: usize| &codes[i * levels..(i + 1) * levels];
    let mut group_size = vec![0u32; n];
    for &(s, e) in &bounds {
        let held = taken.get(row(order[s])).map_or(0, |t| t.0);
        for &i in &order[s..e] {
            group_size[i] = (e - s) as u32 + held;
        }
    }
    let mut out = codes.to_vec();
    let (mut moved, mut unresolved) = (0, 0);
    if strategy == Dedup::Reassign {
        (moved, unresolved) = reassign(
            codes,
            levels,
            ids,
            last_k,
            &taken,
            &order,
            &bounds,
            &mut out,
            last_level_distances,
        )?;
    }
    let fixed_width = existing.map(|e| e.width);
    let suffix = match strategy {
        Dedup::Suffix => true,
        Dedup::None => false,
        Dedup::Reassign => {
            fixed_width == Some(levels + 1) || (unresolved > 0 && fixed_width.is_none())
        }
    };
    if unresolved > 0 && !suffix {
        return Err(Error::Config(format!(
            "{unresolved} new items collide under prefixes whose last-level codes are all taken, and the \
             existing IDs have no suffix level to tell them apart; retrain with larger codebooks or \
             use --dedup suffix"
        )));
    }
    if !suffix {
        return Ok(Resolution {
            codes: out,
            width: levels,
            suffix_level: false,
            group_size,
            moved,
            unresolved,
        });
    }
    // Suffix level: rank within the group of equal tuples, ordered by item id, after the
    // ranks existing items already hold.
    let (order, bounds) = sorted_groups(&out, levels, ids);
    let w = levels + 1;
    let mut wide = vec![0u16; n * w];
    for &(s, e) in &bounds {
        let first = order[s];
        let base = taken
            .get(&out[first * levels..(first + 1) * levels])
            .map_or(0, |t| t.1) as usize;
        if base + (e - s) > MAX_SUFFIX + 1 {
            return Err(Error::Config(format!(
                "{} items share one code tuple, more than a UInt16 suffix level can number; \
                 use larger or more codebooks",
                base + e - s
            )));
        }
        for (rank, &i) in order[s..e].iter().enumerate() {
            wide[i * w..i * w + levels].copy_from_slice(&out[i * levels..(i + 1) * levels]);
            wide[i * w + levels] = (base + rank) as u16;
        }
    }
    Ok(Resolution {
        codes: wide,
        width: w,
        suffix_level: true,
        group_size,
        moved,
        unresolved,
    })
}

/// LC-Rec-style reassignment: in each group of equal tuples the member closest to the shared
/// last-level codeword keeps it (unless an existing item holds it); the others, in id order,
/// move to the nearest last-level code that no item under the same prefix uses. Returns
/// (moved, unresolved) and writes moved codes into `out`.
#[allow(clippy::too_many_arguments)]
fn reassign(
    codes: &[u16],
    levels: usize,
    ids: &ItemIds,
    last_k: usize,
    taken: &HashMap<&[u16], (u32, u32)>,
    order: &[usize],
    bounds: &[(usize, usize)],
    out: &mut [u16],
    last_level_distances: impl FnOnce(&[usize]) -> Result<Vec<f32>>,
) -> Result<(usize, usize)> {
    let row = |i: usize| &codes[i * levels..(i + 1) * levels];
    let prefix = |i: usize| &codes[i * levels..(i + 1) * levels - 1];
    let contested: Vec<(usize, usize)> = bounds
        .iter()
        .copied()
        .filter(|&(s, e)| e - s > 1 || taken.contains_key(row(order[s])))
        .collect();
    if contested.is_empty() {
        return Ok((0, 0));
    }
    let mut need: Vec<usize> = contested
        .iter()
        .flat_map(|&(s, e)| order[s..e].iter().copied())
        .collect();
    need.sort_unstable();
    let dist = last_level_distances(&need)?;
    let row_of: HashMap<usize, usize> = need.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let d = |i: usize, code: usize| dist[row_of[&i] * last_k + code];
    // Last-level codes in use under each contested prefix: existing items' and new items'.
    let mut used: HashMap<&[u16], Vec<bool>> = contested
        .iter()
        .map(|&(s, _)| (prefix(order[s]), vec![false; last_k]))
        .collect();
    for (t, _) in taken.iter() {
        if let Some(u) = used.get_mut(&t[..levels - 1]) {
            u[t[levels - 1] as usize] = true;
        }
    }
    for &(s, _) in bounds {
        let i = order[s];
        if let Some(u) = used.get_mut(prefix(i)) {
            u[codes[i * levels + levels - 1] as usize] = true;
        }
    }
    let (mut moved, mut unresolved) = (0, 0);
    for &(s, e) in &contested {
        let members = &order[s..e];
        let code = codes[members[0] * levels + levels - 1] as usize;
        let keeper = if taken.contains_key(row(members[0])) {
            None
        } else {
            members.iter().copied().min_by(|&a, &b| {
                d(a, code)
                    .total_cmp(&d(b, code))
                    .then_with(|| ids.cmp(a, b))
            })
        };
        let u = used.get_mut(prefix(members[0])).expect("contested prefix");
        for &i in members.iter().filter(|&&i| Some(i) != keeper) {
            let free = (0..last_k).filter(|&c| !u[c]).min_by(|&a, &b| {
                d(i, a)
                    .partial_cmp(&d(i, b))
                    .unwrap_or(Ordering::Equal)
                    .then(a.cmp(&b))
            });
            match free {
                Some(c) => {
                    u[c] = true;
                    out[i * levels + levels - 1] = c as u16;
                    moved += 1;
                }
                None => unresolved += 1,
            }
        }
    }
    Ok((moved, unresolved))
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
        let r = resolve(&codes, 2, &ids, Dedup::Suffix, 4, None, no_dist).unwrap();
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
        let r = resolve(&codes, 2, &ids, Dedup::Reassign, 4, None, dist).unwrap();
        assert_eq!(r.codes, vec![0, 1, 0, 0, 0, 3, 0, 2]);
        assert_eq!((r.moved, r.unresolved, r.width), (2, 0, 2));

        // Only 3 last-level codes: one mover finds code 0, the other finds the prefix full.
        let dist2 = |need: &[usize]| Ok(vec![0.0; need.len() * 3]);
        let r = resolve(&codes, 2, &ids, Dedup::Reassign, 3, None, dist2).unwrap();
        assert!(r.suffix_level);
        assert_eq!((r.moved, r.unresolved, r.width), (1, 1, 3));
        assert_eq!(duplicate_ids(&r.codes, r.width, &ids), 0);
    }

    #[test]
    fn new_items_never_take_existing_ids() {
        // Existing: (0,1,s0) and (0,1,s1), (0,2,s0). New items: two on (0,1), one on (0,3).
        let existing = [0, 1, 0, 0, 1, 1, 0, 2, 0];
        let ex = Existing {
            codes: &existing,
            width: 3,
        };
        let ids = ItemIds::Int(vec![7, 5, 9]);
        let codes = vec![0, 1, 0, 1, 0, 3];
        let r = resolve(&codes, 2, &ids, Dedup::Suffix, 4, Some(ex), no_dist).unwrap();
        // Ranks continue after the existing ones, in id order (5 before 7).
        assert_eq!(r.codes, vec![0, 1, 3, 0, 1, 2, 0, 3, 0]);
        assert_eq!(r.group_size, vec![4, 4, 1]);

        // Reassign against existing L-token IDs: (0,1) is held, so both new items move.
        let existing = [0, 1, 0, 2];
        let ex = Existing {
            codes: &existing,
            width: 2,
        };
        let ids = ItemIds::Int(vec![1, 2]);
        let codes = vec![0, 1, 0, 1];
        let dist = |need: &[usize]| -> Result<Vec<f32>> {
            assert_eq!(need, &[0, 1]);
            Ok(vec![0.3, 0.0, 0.1, 0.2, 0.1, 0.0, 0.3, 0.2])
        };
        let r = resolve(&codes, 2, &ids, Dedup::Reassign, 4, Some(ex), dist).unwrap();
        assert_eq!(r.codes, vec![0, 3, 0, 0]);
        assert_eq!(r.moved, 2);
        // With no free code left and no suffix level to fall back on, it is an error.
        let dist = |need: &[usize]| Ok(vec![0.0; need.len() * 3]);
        let e = resolve(&codes, 2, &ids, Dedup::Reassign, 3, Some(ex), dist).unwrap_err();
        assert!(
            e.to_string().contains("retrain with larger codebooks"),
            "{e}"
        );
    }
}
