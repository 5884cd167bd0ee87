//! Collision and codebook statistics (docs/methods.md §7), as JSON and as a table for humans.

use crate::ids::dedup::sorted_groups;
use crate::ids::tokens::TokenFormat;
use crate::item_id::ItemIds;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Statistics of one table of code tuples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodeStats {
    pub n_items: u64,
    /// Codes per item in this table.
    pub levels: usize,
    pub distinct_ids: u64,
    /// 1 − distinct/N.
    pub collision_rate: f64,
    /// Items whose tuple is shared with at least one other item.
    pub items_in_collisions: u64,
    /// Group = the items sharing one tuple; these are over groups (distinct tuples).
    pub max_group_size: u64,
    pub mean_group_size: f64,
    pub p99_group_size: u64,
    /// Group size → number of groups of that size.
    pub group_size_histogram: BTreeMap<u64, u64>,
    pub per_level: Vec<LevelStats>,
    /// For each prefix depth d (1..levels−1): how many distinct children a prefix has.
    pub prefix_fanout: Vec<FanoutStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelStats {
    pub level: usize,
    pub letter: String,
    /// K for quantizer levels; for a suffix level, the largest rank + 1.
    pub codebook_size: u64,
    pub codes_used: u64,
    pub utilisation: f64,
    /// Entropy of the code distribution in bits, and its perplexity 2^H.
    pub entropy_bits: f64,
    pub perplexity: f64,
    pub dead_codes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FanoutStats {
    pub depth: usize,
    pub distinct_prefixes: u64,
    pub mean_children: f64,
    pub max_children: u64,
}

/// The whole stats.json: the SID's section at the top level (the only ID of single-ID
/// methods), and for GenSAR a `cid` section of the same shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub sidtool_version: String,
    pub method: Option<String>,
    pub dedup: String,
    #[serde(flatten)]
    pub sid: IdStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<IdStats>,
    /// GenSAR: items that had no collaborative vector (no interactions) and were coded from a
    /// zero vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_without_collab_vector: Option<u64>,
}

/// Statistics of one ID kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdStats {
    /// K_l of this ID's quantizer levels.
    pub codebook_sizes: Vec<usize>,
    /// The quantizer's codes, before collision resolution.
    pub before: CodeStats,
    /// The final IDs.
    pub after: CodeStats,
    pub resolution: ResolutionStats,
    /// Σ‖x − x̂_m‖² / Σ‖x‖² for prefix lengths m = 1..L (absent when no vectors were given);
    /// for GenSAR's IDs x is that ID's own input (semantic or collaborative vector).
    pub relative_reconstruction_error: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResolutionStats {
    pub suffix_level: bool,
    pub moved_items: u64,
    pub unresolved_by_reassign: u64,
    /// Rows taken unchanged from `assign --existing`.
    pub existing_items: u64,
    /// Of those, how many are not in the catalogue being assigned (kept, never removed).
    pub existing_not_in_input: u64,
}

/// Compute [`CodeStats`] of `codes` (rows × `width`); `sizes[l]` is K_l where known.
pub(crate) fn code_stats(codes: &[u16], width: usize, ids: &ItemIds, sizes: &[usize]) -> CodeStats {
    let n = ids.len();
    let (order, bounds) = sorted_groups(codes, width, ids);
    let mut groups: Vec<u64> = bounds.iter().map(|&(s, e)| (e - s) as u64).collect();
    let mut hist = BTreeMap::new();
    for &g in &groups {
        *hist.entry(g).or_insert(0u64) += 1;
    }
    groups.sort_unstable();
    let distinct = groups.len() as u64;
    let p99 = if groups.is_empty() {
        0
    } else {
        groups[((groups.len() as f64 * 0.99).ceil() as usize).clamp(1, groups.len()) - 1]
    };
    let per_level = (0..width)
        .map(|l| {
            let max_code = (0..n)
                .map(|i| codes[i * width + l] as usize)
                .max()
                .unwrap_or(0);
            let k = sizes
                .get(l)
                .copied()
                .unwrap_or(max_code + 1)
                .max(max_code + 1);
            let mut count = vec![0u64; k];
            for i in 0..n {
                count[codes[i * width + l] as usize] += 1;
            }
            let used = count.iter().filter(|&&c| c > 0).count() as u64;
            let h: f64 = -count
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = c as f64 / n as f64;
                    p * p.log2()
                })
                .sum::<f64>()
                + 0.0; // −0.0 (one code used) prints as "-0.000"
            LevelStats {
                level: l + 1,
                letter: TokenFormat::letter(l).to_string(),
                codebook_size: k as u64,
                codes_used: used,
                utilisation: used as f64 / k as f64,
                entropy_bits: h,
                perplexity: h.exp2(),
                dead_codes: k as u64 - used,
            }
        })
        .collect();
    // Prefix fan-out from the sorted order: prefixes of each depth are contiguous.
    let prefix_fanout = (1..width)
        .map(|depth| {
            let key = |i: usize| &codes[i * width..i * width + depth];
            let child = |i: usize| &codes[i * width..i * width + depth + 1];
            let (mut prefixes, mut max_children, mut children_total) = (0u64, 0u64, 0u64);
            let mut t = 0;
            while t < n {
                let mut u = t;
                let mut children = 0u64;
                while u < n && key(order[u]) == key(order[t]) {
                    if u == t || child(order[u]) != child(order[u - 1]) {
                        children += 1;
                    }
                    u += 1;
                }
                prefixes += 1;
                children_total += children;
                max_children = max_children.max(children);
                t = u;
            }
            FanoutStats {
                depth,
                distinct_prefixes: prefixes,
                mean_children: children_total as f64 / prefixes.max(1) as f64,
                max_children,
            }
        })
        .collect();
    CodeStats {
        n_items: n as u64,
        levels: width,
        distinct_ids: distinct,
        collision_rate: if n == 0 {
            0.0
        } else {
            1.0 - distinct as f64 / n as f64
        },
        items_in_collisions: groups.iter().filter(|&&g| g > 1).sum(),
        max_group_size: groups.last().copied().unwrap_or(0),
        mean_group_size: if distinct == 0 {
            0.0
        } else {
            n as f64 / distinct as f64
        },
        p99_group_size: p99,
        group_size_histogram: hist,
        per_level,
        prefix_fanout,
    }
}

/// A compact human-readable summary (what `sidtool stats` and `build` print on stderr).
pub fn render(s: &Stats) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    match &s.cid {
        None => render_id(&mut o, "", &s.sid, &s.dedup),
        Some(c) => {
            render_id(&mut o, "SID (search): ", &s.sid, &s.dedup);
            o.push('\n');
            render_id(&mut o, "CID (recommendation): ", c, &s.dedup);
        }
    }
    if let Some(n) = s.items_without_collab_vector
        && n > 0
    {
        writeln!(
            o,
            "note: {n} items had no collaborative vector (no interactions, or absent from the collaborative vectors given) and were coded from zeros"
        )
        .unwrap();
    }
    o
}

fn render_id(o: &mut String, title: &str, s: &IdStats, dedup: &str) {
    use std::fmt::Write;
    let b = &s.before;
    let a = &s.after;
    writeln!(
        o,
        "{title}items {}   codebooks {:?}   dedup {dedup}",
        a.n_items, s.codebook_sizes
    )
    .unwrap();
    writeln!(o, "{:<24}{:>14}{:>14}", "", "before", "after").unwrap();
    let row = |o: &mut String, name: &str, x: String, y: String| {
        writeln!(o, "{name:<24}{x:>14}{y:>14}").unwrap()
    };
    row(o, "levels", b.levels.to_string(), a.levels.to_string());
    row(
        o,
        "distinct IDs",
        b.distinct_ids.to_string(),
        a.distinct_ids.to_string(),
    );
    row(
        o,
        "collision rate",
        format!("{:.4}", b.collision_rate),
        format!("{:.4}", a.collision_rate),
    );
    row(
        o,
        "items in collisions",
        b.items_in_collisions.to_string(),
        a.items_in_collisions.to_string(),
    );
    row(
        o,
        "max group size",
        b.max_group_size.to_string(),
        a.max_group_size.to_string(),
    );
    row(
        o,
        "mean group size",
        format!("{:.3}", b.mean_group_size),
        format!("{:.3}", a.mean_group_size),
    );
    row(
        o,
        "p99 group size",
        b.p99_group_size.to_string(),
        a.p99_group_size.to_string(),
    );
    // Levels by number, as in stats.json and every message; the letter is the token's name.
    writeln!(
        o,
        "{:<6}{:<6}{:>8}{:>8}{:>8}{:>10}{:>12}{:>8}",
        "level", "token", "K", "used", "util", "entropy", "perplexity", "dead"
    )
    .unwrap();
    for l in &a.per_level {
        writeln!(
            o,
            "{:<6}{:<6}{:>8}{:>8}{:>8.3}{:>10.3}{:>12.1}{:>8}",
            l.level,
            l.letter,
            l.codebook_size,
            l.codes_used,
            l.utilisation,
            l.entropy_bits,
            l.perplexity,
            l.dead_codes
        )
        .unwrap();
    }
    for f in &a.prefix_fanout {
        writeln!(
            o,
            "prefix depth {}: {} prefixes, {:.2} children on average, at most {}",
            f.depth, f.distinct_prefixes, f.mean_children, f.max_children
        )
        .unwrap();
    }
    if let Some(e) = &s.relative_reconstruction_error {
        let parts: Vec<String> = e
            .iter()
            .enumerate()
            .map(|(m, v)| format!("{}:{v:.4}", m + 1))
            .collect();
        writeln!(
            o,
            "relative reconstruction error by prefix length: {}",
            parts.join("  ")
        )
        .unwrap();
    }
    if let Some(e) = &s.relative_reconstruction_error
        && e.last().is_some_and(|&v| v >= 1.0)
    {
        writeln!(
            o,
            "note: reconstruction error ≥ 1 is no better than predicting zeros: the model looks \
             undertrained (raise --epochs or --lr)"
        )
        .unwrap();
    }
    if s.resolution.existing_items > 0 {
        writeln!(
            o,
            "kept {} existing IDs unchanged; added {} new items",
            s.resolution.existing_items,
            a.n_items - s.resolution.existing_items
        )
        .unwrap();
        if s.resolution.existing_not_in_input > 0 {
            writeln!(
                o,
                "note: {} of the existing items are not in this catalogue; their IDs stay reserved",
                s.resolution.existing_not_in_input
            )
            .unwrap();
        }
    }
    if s.resolution.moved_items > 0 || s.resolution.unresolved_by_reassign > 0 {
        writeln!(
            o,
            "reassign moved {} items; {} needed the suffix fallback",
            s.resolution.moved_items, s.resolution.unresolved_by_reassign
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_on_a_hand_made_table() {
        let ids = ItemIds::Int((0..6).collect());
        // tuples: (0,0) x3, (0,1), (1,0) x2
        let codes = vec![0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0];
        let s = code_stats(&codes, 2, &ids, &[4, 2]);
        assert_eq!(s.distinct_ids, 3);
        assert!((s.collision_rate - 0.5).abs() < 1e-12);
        assert_eq!(s.items_in_collisions, 5);
        assert_eq!(s.max_group_size, 3);
        assert_eq!(
            s.group_size_histogram,
            BTreeMap::from([(1, 1), (2, 1), (3, 1)])
        );
        assert_eq!(s.per_level[0].codes_used, 2);
        assert!((s.per_level[0].utilisation - 0.5).abs() < 1e-12);
        let h = -(2.0f64 / 3.0) * (2.0f64 / 3.0).log2() - (1.0f64 / 3.0) * (1.0f64 / 3.0).log2();
        assert!((s.per_level[0].entropy_bits - h).abs() < 1e-12);
        assert_eq!(s.per_level[0].dead_codes, 2);
        assert_eq!(s.prefix_fanout[0].distinct_prefixes, 2);
        assert!((s.prefix_fanout[0].mean_children - 1.5).abs() < 1e-12);
        assert_eq!(s.prefix_fanout[0].max_children, 2);
    }
}
