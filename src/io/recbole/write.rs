//! Second pass over an atomic file: its rows as Parquet row groups, under a temporary name.

use super::scan::*;
use super::{FieldType, META_KEY};
use crate::error::{Error, Result};
use crate::fs::atomic::AtomicFile;
use crate::io::parquet_out::ParquetOut;
use crate::io::parquet_out::ROW_GROUP_ROWS;
use arrow_array::ArrayRef;
use arrow_array::RecordBatch;
use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_schema::{DataType, Field, Schema};
use std::path::Path;
use std::sync::Arc;

/// Builds one Arrow column a row group at a time; how it parses follows the inferred type.
pub(super) enum ColumnBuilder {
    Int(Int64Builder),
    /// A `float` column of whole numbers (timestamps).
    Integral(Int64Builder),
    Text(StringBuilder),
    Float(Float64Builder),
    FloatList(ListBuilder<Float64Builder>),
}

impl ColumnBuilder {
    pub(super) fn new(kind: FieldType, t: &DataType) -> Self {
        match (kind, t) {
            (FieldType::Token, DataType::Int64) => ColumnBuilder::Int(Int64Builder::new()),
            (FieldType::Float, DataType::Int64) => ColumnBuilder::Integral(Int64Builder::new()),
            (FieldType::Float, _) => ColumnBuilder::Float(Float64Builder::new()),
            (FieldType::FloatSeq, _) => {
                ColumnBuilder::FloatList(ListBuilder::new(Float64Builder::new()))
            }
            _ => ColumnBuilder::Text(StringBuilder::new()),
        }
    }

    /// Append one field; the first pass checked it, so an error means the file changed since.
    pub(super) fn push(&mut self, v: &str) -> std::result::Result<(), String> {
        let changed = || format!("{v:?} no longer parses: did the file change during the import?");
        if v.is_empty() {
            match self {
                ColumnBuilder::Int(b) | ColumnBuilder::Integral(b) => b.append_null(),
                ColumnBuilder::Text(b) => b.append_null(),
                ColumnBuilder::Float(b) => b.append_null(),
                ColumnBuilder::FloatList(b) => b.append(false),
            }
            return Ok(());
        }
        match self {
            ColumnBuilder::Int(b) => b.append_value(canonical_int(v).ok_or_else(changed)?),
            ColumnBuilder::Integral(b) => b.append_value(integral(v).ok_or_else(changed)?),
            ColumnBuilder::Text(b) => b.append_value(v),
            ColumnBuilder::Float(b) => b.append_value(parse_float(v).ok_or_else(changed)?),
            ColumnBuilder::FloatList(b) => {
                for p in seq(v) {
                    b.values().append_value(parse_float(p).ok_or_else(changed)?);
                }
                b.append(true);
            }
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int(b) | ColumnBuilder::Integral(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::FloatList(b) => Arc::new(b.finish()),
        }
    }
}

/// Second pass: write the scanned file as Parquet under a temporary name; the caller commits.
pub(super) fn write(scan: &Scan, types: &[DataType], dest: &Path) -> Result<AtomicFile> {
    let fields: Vec<Field> = scan
        .cols
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (c, t))| Field::new(&c.name, t.clone(), !scan.ids.contains(&i)))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let meta = serde_json::json!({
        "source": scan.path.file_name().map(|n| n.to_string_lossy()),
        "header": scan.header,
    });
    let mut out = ParquetOut::create(
        dest,
        schema.clone(),
        vec![(META_KEY.to_string(), meta.to_string())],
    )?;
    let mut builders: Vec<ColumnBuilder> = scan
        .cols
        .iter()
        .zip(types)
        .map(|(c, t)| ColumnBuilder::new(c.kind, t))
        .collect();
    let mut flush = |builders: &mut [ColumnBuilder]| -> Result<()> {
        let cols = builders.iter_mut().map(ColumnBuilder::finish).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::arrow(dest, e))?;
        out.write(&batch)
    };
    let mut lines = Lines::open(&scan.path)?;
    lines.next()?; // the header, checked by the first pass
    let (mut rows, mut pending) = (0u64, 0usize);
    while let Some((no, line)) = lines.next()? {
        if line.is_empty() {
            continue;
        }
        check_width(&scan.path, no, line, builders.len())?;
        for ((b, c), v) in builders.iter_mut().zip(&scan.cols).zip(line.split('\t')) {
            b.push(v)
                .map_err(|m| Error::at_line(&scan.path, no, Some(&c.name), m))?;
        }
        rows += 1;
        pending += 1;
        if pending == ROW_GROUP_ROWS {
            flush(&mut builders)?;
            pending = 0;
        }
    }
    if pending > 0 {
        flush(&mut builders)?;
    }
    if rows != scan.rows {
        return Err(Error::input(
            &scan.path,
            None,
            None,
            format!(
                "had {} rows on the first pass and {rows} on the second: did the file change \
                 during the import?",
                scan.rows
            ),
        ));
    }
    out.close()
}
