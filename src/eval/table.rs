//! A code table to score, from any tool: an id column and a list column of integer codes per
//! item (sidtool's `sids.parquet`, or codes another tokenizer wrote).

use crate::error::{Error, Result};
use crate::io::embeddings::open_parquet;
use crate::item_id::{ItemIds, first_null, id_column_index};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
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
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == SIDS_META_KEY))
            .and_then(|k| k.value.as_deref())
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
            .and_then(|v| serde_json::from_value(v["codebook_sizes"].clone()).ok());
        let reader = builder.build().map_err(|e| Error::parquet(path, e))?;
        let mut ids: Option<ItemIds> = None;
        let mut codes = Vec::new();
        let mut width = None;
        let mut first_row = 0u64;
        for b in reader {
            let b = b.map_err(|e| Error::arrow(path, e))?;
            let id_col = b.column_by_name(id_column).expect("checked above");
            let bi = ItemIds::from_column(id_col.as_ref(), path, id_column, first_row)?;
            let col = b.column_by_name(codes_column).expect("checked above");
            read_lists(col, path, codes_column, first_row, &mut width, &mut codes)?;
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

/// Append every row's codes of a list column, checking they all have the same length.
fn read_lists(
    col: &ArrayRef,
    path: &Path,
    name: &str,
    first_row: u64,
    width: &mut Option<usize>,
    out: &mut Vec<u32>,
) -> Result<()> {
    let bad = |row: Option<u64>, msg: String| Error::input(path, Some(name), row, msg);
    if let Some(r) = first_null(col.as_ref()) {
        return Err(bad(Some(first_row + r as u64), "codes are null".into()));
    }
    let (offsets, values): (Vec<usize>, ArrayRef) = match col.data_type() {
        DataType::FixedSizeList(_, w) => {
            let l = col.as_fixed_size_list();
            let w = *w as usize;
            let start = l.value_offset_at(0);
            (
                (0..=l.len()).map(|i| start + i * w).collect(),
                l.values().clone(),
            )
        }
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            (
                l.value_offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
            )
        }
        DataType::LargeList(_) => {
            let l = col.as_list::<i64>();
            (
                l.value_offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
            )
        }
        other => {
            return Err(bad(
                None,
                format!("has type {other}, expected a list of integer codes"),
            ));
        }
    };
    let vals = integers(&values).ok_or_else(|| {
        bad(
            None,
            format!(
                "holds {} values, expected integer codes",
                values.data_type()
            ),
        )
    })?;
    for (r, w) in offsets.windows(2).enumerate() {
        let row = first_row + r as u64;
        let n = w[1] - w[0];
        match *width {
            None => *width = Some(n),
            Some(k) if k != n => {
                return Err(bad(
                    Some(row),
                    format!(
                        "has {n} codes where earlier rows have {k}: every ID needs the same number of levels"
                    ),
                ));
            }
            _ => {}
        }
        for &v in &vals[w[0]..w[1]] {
            if v < 0 || v > u32::MAX as i64 {
                return Err(bad(
                    Some(row),
                    format!("code {v} is not a non-negative 32-bit integer"),
                ));
            }
            out.push(v as u32);
        }
    }
    Ok(())
}

/// Any integer array's values as i64 (nulls refused by the caller's list-level check; a null
/// inside a list reads as 0 and is refused here).
fn integers(a: &ArrayRef) -> Option<Vec<i64>> {
    if a.null_count() > 0 {
        return None;
    }
    macro_rules! vals {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| v as i64)
                .collect()
        };
    }
    Some(match a.data_type() {
        DataType::UInt8 => vals!(UInt8Type),
        DataType::UInt16 => vals!(UInt16Type),
        DataType::UInt32 => vals!(UInt32Type),
        DataType::UInt64 => a
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .map(|&v| i64::try_from(v).unwrap_or(-1))
            .collect(),
        DataType::Int8 => vals!(Int8Type),
        DataType::Int16 => vals!(Int16Type),
        DataType::Int32 => vals!(Int32Type),
        DataType::Int64 => vals!(Int64Type),
        _ => return None,
    })
}
