//! The constrained-decoding trie over final IDs: for every valid prefix, which codes (and
//! token ids) may come next; at full length, which item the ID names.

use crate::error::Result;
use crate::item_id::ItemIds;
use crate::vocab::extend::{IdView, VocabReport};
use serde::Serialize;
use std::collections::BTreeMap;

/// One trie node: a prefix and what may follow it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub depth: usize,
    pub prefix_codes: Vec<u16>,
    pub allowed_next_codes: Vec<u16>,
    pub allowed_next_token_ids: Vec<u32>,
    /// Row of the item at a full-length prefix (the first, when items share the ID).
    pub item_row: Option<usize>,
    /// Rows of every item holding this full-length ID, in row order: one, unless the table
    /// has shared IDs (`[vocab] allow_duplicates`). Empty at shorter prefixes.
    pub item_rows: Vec<usize>,
}

/// All prefixes of one ID column's final IDs (depth 0 = the root), in lexicographic order.
pub fn build(view: &IdView, vocab: Option<&VocabReport>) -> Vec<Node> {
    let w = view.width;
    let mut next: BTreeMap<Vec<u16>, std::collections::BTreeSet<u16>> = BTreeMap::new();
    let mut leaf: BTreeMap<Vec<u16>, Vec<usize>> = BTreeMap::new();
    for (row, codes) in view.codes.chunks(w).enumerate() {
        for d in 0..w {
            next.entry(codes[..d].to_vec())
                .or_default()
                .insert(codes[d]);
        }
        leaf.entry(codes.to_vec()).or_default().push(row);
    }
    let lookup = vocab.map(VocabReport::lookup);
    let token = |level: usize, code: u16| {
        lookup
            .as_ref()
            .map_or(u32::MAX, |t| t.id(view.kind, level, code))
    };
    let mut out: Vec<Node> = next
        .into_iter()
        .map(|(prefix, codes)| {
            let d = prefix.len();
            let codes: Vec<u16> = codes.into_iter().collect();
            Node {
                depth: d,
                allowed_next_token_ids: codes.iter().map(|&c| token(d, c)).collect(),
                allowed_next_codes: codes,
                prefix_codes: prefix,
                item_row: None,
                item_rows: Vec::new(),
            }
        })
        .collect();
    out.extend(leaf.into_iter().map(|(prefix, rows)| Node {
        depth: w,
        prefix_codes: prefix,
        allowed_next_codes: Vec::new(),
        allowed_next_token_ids: Vec::new(),
        item_row: Some(rows[0]),
        item_rows: rows,
    }));
    out.sort_by(|a, b| {
        a.depth
            .cmp(&b.depth)
            .then(a.prefix_codes.cmp(&b.prefix_codes))
    });
    out
}

/// `trie.json`: keys are the comma-joined token ids generated so far ("" at the root);
/// `next` gives the allowed next token ids, `items` the item a complete ID names.
pub(crate) fn to_json(
    nodes: &[Node],
    ids: &ItemIds,
    vocab: &VocabReport,
    kind: crate::quant::kind::IdKind,
) -> Result<serde_json::Value> {
    let lookup = vocab.lookup();
    let key = |n: &Node| -> String {
        n.prefix_codes
            .iter()
            .enumerate()
            .map(|(l, &c)| lookup.id(kind, l, c).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut next = serde_json::Map::new();
    let mut items = serde_json::Map::new();
    let item = |r: usize| match ids {
        ItemIds::Int(v) => serde_json::Value::from(v[r]),
        ItemIds::Str(v) => serde_json::Value::from(v[r].clone()),
    };
    // With shared IDs every value is a list, so readers meet one type throughout the file.
    let lists = shared(nodes);
    for n in nodes {
        match n.item_row {
            Some(r) => {
                let v = if lists {
                    serde_json::Value::from(
                        n.item_rows.iter().map(|&r| item(r)).collect::<Vec<_>>(),
                    )
                } else {
                    item(r)
                };
                items.insert(key(n), v);
            }
            None => {
                next.insert(
                    key(n),
                    serde_json::Value::from(n.allowed_next_token_ids.clone()),
                );
            }
        }
    }
    Ok(serde_json::json!({
        "levels": nodes.iter().map(|n| n.depth).max().unwrap_or(0),
        "begin_token_id": vocab.markers.first().map(|m| m.id),
        "end_token_id": vocab.markers.get(1).map(|m| m.id),
        "next": next,
        "items": items,
    }))
}

/// Whether some full-length ID is held by more than one item.
fn shared(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| n.item_rows.len() > 1)
}

/// `trie.parquet`: one row per node (see schemas/trie.md).
pub(crate) fn write_parquet(nodes: &[Node], ids: &ItemIds, dest: &std::path::Path) -> Result<()> {
    use arrow_array::builder::{ListBuilder, UInt16Builder, UInt32Builder};
    use arrow_array::{ArrayRef, RecordBatch, UInt16Array};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let mut fields = vec![
        Field::new("depth", DataType::UInt16, false),
        Field::new("prefix_codes", list(DataType::UInt16), false),
        Field::new("allowed_next_codes", list(DataType::UInt16), false),
        Field::new("allowed_next_token_ids", list(DataType::UInt32), false),
        Field::new("item_id", ids.data_type(), true),
    ];
    // Only tables with shared IDs get the list of every item per leaf; other tries keep
    // exactly the columns (and bytes) they always had.
    let lists = shared(nodes);
    if lists {
        fields.push(Field::new("item_ids", list(ids.data_type()), true));
    }
    let schema = Arc::new(Schema::new(fields));
    let mut out = crate::io::parquet_out::ParquetOut::create(dest, schema.clone(), Vec::new())?;
    for chunk in nodes.chunks(crate::io::parquet_out::ROW_GROUP_ROWS) {
        let depth = UInt16Array::from_iter_values(chunk.iter().map(|n| n.depth as u16));
        let mut prefix = ListBuilder::new(UInt16Builder::new());
        let mut next = ListBuilder::new(UInt16Builder::new());
        let mut tokens = ListBuilder::new(UInt32Builder::new());
        for n in chunk {
            prefix.values().append_slice(&n.prefix_codes);
            prefix.append(true);
            next.values().append_slice(&n.allowed_next_codes);
            next.append(true);
            tokens.values().append_slice(&n.allowed_next_token_ids);
            tokens.append(true);
        }
        let item: ArrayRef = match ids {
            ItemIds::Int(v) => Arc::new(arrow_array::Int64Array::from_iter(
                chunk.iter().map(|n| n.item_row.map(|r| v[r])),
            )),
            ItemIds::Str(v) => Arc::new(arrow_array::StringArray::from_iter(
                chunk.iter().map(|n| n.item_row.map(|r| v[r].as_str())),
            )),
        };
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(depth),
            Arc::new(prefix.finish()),
            Arc::new(next.finish()),
            Arc::new(tokens.finish()),
            item,
        ];
        if lists {
            cols.push(item_lists(chunk, ids));
        }
        let batch =
            RecordBatch::try_new(schema.clone(), cols).expect("columns match the trie schema");
        out.write(&batch)?;
    }
    out.finish()
}

/// `item_ids`: every item of each full-length ID, null at shorter prefixes.
fn item_lists(chunk: &[Node], ids: &ItemIds) -> arrow_array::ArrayRef {
    use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
    use std::sync::Arc;
    match ids {
        ItemIds::Int(v) => {
            let mut b = ListBuilder::new(Int64Builder::new());
            for n in chunk {
                n.item_rows
                    .iter()
                    .for_each(|&r| b.values().append_value(v[r]));
                b.append(n.item_row.is_some());
            }
            Arc::new(b.finish())
        }
        ItemIds::Str(v) => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for n in chunk {
                n.item_rows
                    .iter()
                    .for_each(|&r| b.values().append_value(&v[r]));
                b.append(n.item_row.is_some());
            }
            Arc::new(b.finish())
        }
    }
}
