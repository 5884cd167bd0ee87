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

pub struct ParquetOut {
    writer: ArrowWriter<std::fs::File>,
    guard: AtomicFile,
    dest: PathBuf,
}

impl ParquetOut {
    /// Start writing `dest`; `metadata` lands in the file footer's key-value metadata.
    pub fn create(dest: &Path, schema: SchemaRef, metadata: Vec<(String, String)>) -> Result<Self> {
        let (guard, file) = AtomicFile::create(dest)?;
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
        let writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| Error::parquet(dest, e))?;
        Ok(ParquetOut {
            writer,
            guard,
            dest: dest.to_path_buf(),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| Error::parquet(&self.dest, e))
    }

    /// Flush the footer and move the file into place.
    pub fn finish(self) -> Result<()> {
        self.close()?.commit()
    }

    /// Flush the footer but leave the file under its temporary name: for outputs that must
    /// appear together, commit every guard only once all of them are written.
    pub fn close(self) -> Result<AtomicFile> {
        self.writer
            .close()
            .map_err(|e| Error::parquet(&self.dest, e))?;
        Ok(self.guard)
    }
}
