//! The transformer's token vocabulary: one token per (level, code) that some item uses, and a
//! padding token. Codes are renumbered densely per level, so a foreign table with large or
//! sparse code values still gets a small embedding table.

use crate::eval::table::CodeTable;
use std::collections::BTreeMap;

pub(crate) struct Vocab {
    /// Per level, raw code → token id.
    tokens: Vec<BTreeMap<u32, u32>>,
    /// Tokens of every item, `levels` per item, row-major.
    pub(crate) items: Vec<u32>,
    pub(crate) levels: usize,
    /// Never a target; its embedding is only ever seen behind the attention mask.
    pub(crate) pad: u32,
    pub(crate) size: usize,
}

impl Vocab {
    pub(crate) fn new(t: &CodeTable) -> Vocab {
        let levels = t.width;
        let mut tokens: Vec<BTreeMap<u32, u32>> = vec![BTreeMap::new(); levels];
        for i in 0..t.len() {
            for (l, &c) in t.row(i).iter().enumerate() {
                tokens[l].insert(c, 0);
            }
        }
        // Ids in (level, code) order: the same table always gives the same vocabulary.
        let mut next = 0u32;
        for level in &mut tokens {
            for id in level.values_mut() {
                *id = next;
                next += 1;
            }
        }
        let items = (0..t.len())
            .flat_map(|i| t.row(i).iter().enumerate().map(|(l, c)| tokens[l][c]))
            .collect::<Vec<u32>>();
        Vocab {
            tokens,
            items,
            levels,
            pad: next,
            size: next as usize + 1,
        }
    }

    /// The token of `code` at `level`; the code must be one a table item uses.
    pub(crate) fn token(&self, level: usize, code: u32) -> u32 {
        self.tokens[level][&code]
    }

    /// The tokens of `level` are `start..start + len`: (start, len).
    pub(crate) fn level_range(&self, level: usize) -> (u32, usize) {
        let start: usize = self.tokens[..level].iter().map(|t| t.len()).sum();
        (start as u32, self.tokens[level].len())
    }

    /// The tokens of item `i`.
    pub(crate) fn item(&self, i: u32) -> &[u32] {
        let l = self.levels;
        &self.items[i as usize * l..(i as usize + 1) * l]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_id::ItemIds;

    #[test]
    fn tokens_are_dense_per_level_and_distinct_across_levels() {
        let t = CodeTable {
            path: "t".into(),
            ids: ItemIds::Int(vec![1, 2, 3]),
            codes: vec![1000, 7, 5, 7, 1000, 9],
            width: 2,
            codebook_sizes: None,
        };
        let v = Vocab::new(&t);
        // Level 0 uses {5, 1000}, level 1 uses {7, 9}: four tokens and the pad.
        assert_eq!(v.size, 5);
        assert_eq!(v.item(0), &[1, 2]);
        assert_eq!(v.item(1), &[0, 2]);
        assert_eq!(v.item(2), &[1, 3]);
        assert_eq!(v.token(1, 9), 3);
        assert_eq!(v.pad, 4);
        assert_eq!(v.level_range(1), (2, 2));
    }
}
