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
use std::sync::Arc;

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
    /// Start writing `dest`; `metadata` lands in the file footer's key-value metadata and in
    /// the Arrow schema's metadata: pyarrow's `pq.read_schema(path).metadata` shows only the
    /// latter (the schema stored under the footer's `ARROW:schema` key), and the parquet
    /// crate's reader merges both, so every reader sees the keys.
    pub fn create(dest: &Path, schema: SchemaRef, metadata: Vec<(String, String)>) -> Result<Self> {
        let mut schema_meta = schema.metadata().clone();
        schema_meta.extend(metadata.iter().cloned());
        let schema = Arc::new(schema.as_ref().clone().with_metadata(schema_meta));
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn footer_metadata_is_also_the_arrow_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut out = ParquetOut::create(
            &path,
            schema.clone(),
            vec![("sidtool:test".into(), "{\"a\":1}".into())],
        )
        .unwrap();
        let col: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        out.write(&RecordBatch::try_new(schema, vec![col]).unwrap())
            .unwrap();
        out.finish().unwrap();
        let r = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let fm = r.metadata().file_metadata();
        let kv = fm.key_value_metadata().unwrap();
        assert!(kv.iter().any(|k| k.key == "sidtool:test"), "in the footer");
        // The Arrow schema alone (what pyarrow reads), without the footer's other keys.
        let arrow_only: Vec<KeyValue> = kv
            .iter()
            .filter(|k| k.key == "ARROW:schema")
            .cloned()
            .collect();
        let arrow =
            parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), Some(&arrow_only)).unwrap();
        assert_eq!(
            arrow.metadata().get("sidtool:test").map(String::as_str),
            Some("{\"a\":1}")
        );
    }
}
