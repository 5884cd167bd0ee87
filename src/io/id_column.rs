//! The id column alone of any catalogue-like Parquet file (items, embeddings, sids): what
//! `sidtool collab` needs to know which items exist and in which order.

use crate::error::{Error, Result};
use crate::io::embeddings::{check_unique, open_parquet};
use crate::item_id::{ItemIds, id_column_index};
use std::path::Path;

/// Only the id column of any catalogue-like Parquet file (items, embeddings, sids), streamed by
/// record batch; nulls, unsupported types and duplicate ids are errors naming file, column and
/// row.
pub fn read_ids(path: &Path, id_col: &str, batch_rows: usize) -> Result<ItemIds> {
    crate::fs::inputs::note(path);
    let builder = open_parquet(path)?;
    let schema = builder.schema().clone();
    let idx = id_column_index(&schema, path, id_col)?;
    let reader = builder.reader(Some(batch_rows), Some(&[idx]))?;
    let mut ids: Option<ItemIds> = None;
    let mut first = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let col = batch.column_by_name(id_col).expect("projected id column");
        let part = ItemIds::from_column(col.as_ref(), path, id_col, first)?;
        first += batch.num_rows() as u64;
        match &mut ids {
            None => ids = Some(part),
            Some(all) => all.extend(part),
        }
    }
    let ids = match ids {
        Some(ids) if !ids.is_empty() => ids,
        _ => return Err(Error::input(path, None, None, "contains no rows")),
    };
    check_unique(&ids, path, id_col)?;
    Ok(ids)
}
