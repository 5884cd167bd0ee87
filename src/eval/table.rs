//! A code table to score, from any tool: an id column and a list column of integer codes per
//! item (sidtool's `sids.parquet`, or codes another tokenizer wrote).

use crate::error::{Error, Result};
use crate::io::embeddings::open_parquet;
use crate::item_id::{ItemIds, id_column_index};
use std::path::{Path, PathBuf};

/// The footer key under which sidtool records how a sids.parquet was made.
const SIDS_META_KEY: &str = "sidtool:sids";

/// Items and their codes, `width` per item, row-major.
#[derive(Debug, Clone)]
pub struct CodeTable {
    pub path: PathBuf,
    pub ids: ItemIds,
    pub codes: Vec<u32>,
    pub width: usize,
    /// K per level when the table says (sidtool's footer); else unknown.
    pub codebook_sizes: Option<Vec<usize>>,
}

impl CodeTable {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The codes of item `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.codes[i * self.width..(i + 1) * self.width]
    }

    /// Read `id_column` and `codes_column` (FixedSizeList, List or LargeList of any integer
    /// type; every row as long as the first, no nulls, no negative codes).
    pub fn read(path: &Path, id_column: &str, codes_column: &str) -> Result<CodeTable> {
        let builder = open_parquet(path)?;
        let schema = builder.schema().clone();
        id_column_index(&schema, path, id_column)?;
        if schema.column_with_name(codes_column).is_none() {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::input(
                path,
                Some(codes_column),
                None,
                format!(
                    "no such column (the codes, a list of integers per item; set with \
                     --codes-column); the file has: {}",
                    have.join(", ")
                ),
            ));
        }
        let codebook_sizes = builder
            .key_value(SIDS_META_KEY)
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| serde_json::from_value(v["codebook_sizes"].clone()).ok());
        let reader = builder.reader(None, None)?;
        let mut ids: Option<ItemIds> = None;
        let mut codes = Vec::new();
        let mut width = None;
        let mut first_row = 0u64;
        for b in reader {
            let b = b.map_err(|e| Error::arrow(path, e))?;
            let id_col = b.column_by_name(id_column).expect("checked above");
            let bi = ItemIds::from_column(id_col.as_ref(), path, id_column, first_row)?;
            let col = b.column_by_name(codes_column).expect("checked above");
            crate::io::codes::read_lists(
                col,
                path,
                codes_column,
                first_row,
                u32::MAX,
                &mut width,
                &mut codes,
            )?;
            match &mut ids {
                Some(all) => all.extend(bi),
                None => ids = Some(bi),
            }
            first_row += b.num_rows() as u64;
        }
        let ids = ids
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::input(path, None, None, "has no rows"))?;
        if let Some((a, b)) = ids.first_duplicate() {
            return Err(Error::input(
                path,
                Some(id_column),
                Some(b as u64),
                format!("item {} is listed twice (rows {a} and {b})", ids.display(b)),
            ));
        }
        let width = width.unwrap_or(0);
        if width == 0 {
            return Err(Error::input(
                path,
                Some(codes_column),
                None,
                "lists no codes",
            ));
        }
        Ok(CodeTable {
            path: path.to_path_buf(),
            ids,
            codes,
            width,
            codebook_sizes: codebook_sizes.filter(|s: &Vec<usize>| s.len() <= width),
        })
    }
}
