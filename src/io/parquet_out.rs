//! Parquet writing shared by every output table: zstd, ~64k-row row groups, atomic rename.

use crate::error::{Error, Result};
use crate::fs::atomic::AtomicFile;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};

/// Rows per Parquet row group in outputs.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// zstd's own default level: most of the size gain of higher levels at a fraction of the time.
const ZSTD_LEVEL: i32 = 3;

/// What went wrong, without the "External: " parquet puts before the I/O errors it wraps.
fn cause(e: parquet::errors::ParquetError) -> String {
    let s = e.to_string();
    s.strip_prefix("External: ")
        .map(str::to_string)
        .unwrap_or(s)
}

pub(crate) struct ParquetOut {
    writer: ArrowWriter<std::fs::File>,
    guard: AtomicFile,
    dest: PathBuf,
}

impl ParquetOut {
    /// Start writing `dest`; `metadata` lands in the file footer's key-value metadata.
    pub fn create(dest: &Path, schema: SchemaRef, metadata: Vec<(String, String)>) -> Result<Self> {
        // Name the file the user asked for (not its temporary sibling) and say it is a write.
        let (guard, file) = AtomicFile::create(dest).map_err(|e| match e {
            Error::Io { cause, .. } => Error::write(dest, cause),
            other => other,
        })?;
        let kv: Vec<KeyValue> = metadata
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_key_value_metadata(if kv.is_empty() { None } else { Some(kv) })
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| Error::write(dest, cause(e)))?;
        Ok(ParquetOut {
            writer,
            guard,
            dest: dest.to_path_buf(),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| Error::write(&self.dest, cause(e)))
    }

    /// Flush the footer and move the file into place.
    pub fn finish(self) -> Result<()> {
        let dest = self.dest.clone();
        self.close()?.commit().map_err(|e| match e {
            Error::Io { cause, .. } => Error::write(&dest, cause),
            other => other,
        })
    }

    /// Flush the footer but leave the file under its temporary name: for outputs that must
    /// appear together, commit every guard only once all of them are written.
    pub fn close(self) -> Result<AtomicFile> {
        self.writer
            .close()
            .map_err(|e| Error::write(&self.dest, cause(e)))?;
        Ok(self.guard)
    }
}
