//! The trie of a table's IDs, shared by the next-item tiers: T1 walks it to score every ID,
//! T2's beam search only follows its edges, so neither can produce an ID no item has.

use std::collections::HashMap;

/// Node 0 is the root; `node[l][i]` is item i's prefix of length l.
pub(crate) struct Trie {
    pub(crate) node: Vec<Vec<u32>>,
    pub(crate) children: Vec<Vec<u32>>,
    /// The code on the edge into each node (the root's is unused).
    pub(crate) code: Vec<u32>,
    /// Items at each leaf (full ID).
    pub(crate) items_at: HashMap<u32, Vec<u32>>,
    pub(crate) levels: usize,
}

impl Trie {
    /// The trie of `n` items with `width` codes each, row-major.
    pub(crate) fn new(codes: &[u32], width: usize, n: usize) -> Trie {
        let mut node = vec![vec![0u32; n]];
        let mut children: Vec<Vec<u32>> = vec![Vec::new()];
        let mut code = vec![0u32];
        for l in 1..=width {
            let mut index: HashMap<(u32, u32), u32> = HashMap::new();
            let mut here = Vec::with_capacity(n);
            for i in 0..n {
                let parent = node[l - 1][i];
                let key = (parent, codes[i * width + l - 1]);
                let id = *index.entry(key).or_insert_with(|| {
                    let id = children.len() as u32;
                    children.push(Vec::new());
                    code.push(key.1);
                    children[parent as usize].push(id);
                    id
                });
                here.push(id);
            }
            node.push(here);
        }
        let mut items_at: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, &leaf) in node[width].iter().enumerate() {
            items_at.entry(leaf).or_default().push(i as u32);
        }
        Trie {
            node,
            children,
            code,
            items_at,
            levels: width,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_share_nodes_and_edges_keep_their_codes() {
        // Items: (0, 5), (0, 7), (1, 5), (0, 5) — the last collides with the first.
        let t = Trie::new(&[0, 5, 0, 7, 1, 5, 0, 5], 2, 4);
        assert_eq!(t.children[0].len(), 2, "two first codes");
        assert_eq!(t.node[1][0], t.node[1][1]);
        assert_ne!(t.node[1][0], t.node[1][2]);
        let leaf = t.node[2][0];
        assert_eq!(t.items_at[&leaf], vec![0, 3]);
        assert_eq!(t.code[leaf as usize], 5);
        assert_eq!(t.code[t.node[1][2] as usize], 1);
    }
}
