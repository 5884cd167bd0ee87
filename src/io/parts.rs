//! Parquet inputs as data lakes write them: one file, a directory of part files (as Spark and
//! Hive write a table: `_SUCCESS`, `*.crc` and hidden files are skipped), or a glob such as
//! `out/part-*.parquet`. Every reading command opens its inputs here and reads the parts as
//! one table, in name order; the parts must have one Arrow schema, and a part that differs is
//! named in the error.

use crate::error::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::schema::types::SchemaDescriptor;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The files `input` names: itself when it is a file, its part files when it is a directory,
/// the matches when it is a glob pattern (directories among them expanded), in name order.
pub fn files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_dir() {
        return dir_parts(input);
    }
    if input.exists() || !is_pattern(input) {
        return Ok(vec![input.to_path_buf()]);
    }
    let pattern = input
        .to_str()
        .ok_or_else(|| Error::input(input, None, None, "is not a file, and as a glob not UTF-8"))?;
    let mut out = Vec::new();
    let matches = glob::glob(pattern)
        .map_err(|e| Error::input(input, None, None, format!("is not a valid glob: {e}")))?;
    let mut matched: Vec<PathBuf> = matches
        .filter_map(|m| m.ok())
        .filter(|p| p.is_dir() || !skipped(p))
        .collect();
    matched.sort();
    for p in matched {
        if p.is_dir() {
            out.extend(dir_parts(&p)?);
        } else {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::input(input, None, None, "matches no file"));
    }
    Ok(out)
}

/// Whether the path has glob metacharacters (`*`, `?`, `[`).
fn is_pattern(p: &Path) -> bool {
    p.to_string_lossy().contains(['*', '?', '['])
}

/// Files a table directory holds besides its data: markers (`_SUCCESS`, `_committed_…`),
/// checksums (`.part-0.parquet.crc`) and other hidden files.
fn skipped(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    name.starts_with('.') || name.starts_with('_') || name.ends_with(".crc")
}

/// The data files of a table directory, in name order.
fn dir_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.is_file() && !skipped(f))
        .collect();
    parts.sort();
    if parts.is_empty() {
        return Err(Error::input(dir, None, None, "holds no part files"));
    }
    Ok(parts)
}

/// Open one Parquet file, with clear messages for what is not one.
fn open_file(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))
}

/// An opened Parquet input: every part, checked to share the first part's schema.
pub struct ParquetInput {
    path: PathBuf,
    parts: Vec<(PathBuf, ParquetRecordBatchReaderBuilder<File>)>,
}

impl ParquetInput {
    pub fn open(path: &Path) -> Result<Self> {
        let mut parts = Vec::new();
        for f in files(path)? {
            let b = open_file(&f)?;
            if let Some((first, fb)) = parts.first() {
                let fb: &ParquetRecordBatchReaderBuilder<File> = fb;
                if fb.schema().fields() != b.schema().fields() {
                    return Err(Error::input(
                        &f,
                        None,
                        None,
                        format!(
                            "has another schema than {} (the first part of {}): every part \
                             of an input must have the same columns and types",
                            Path::new(first).display(),
                            path.display()
                        ),
                    ));
                }
            }
            parts.push((f, b));
        }
        Ok(ParquetInput {
            path: path.to_path_buf(),
            parts,
        })
    }

    /// The input as given (a file, a directory or a glob).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().map(|(p, _)| p.as_path())
    }

    /// The Arrow schema every part has.
    pub fn schema(&self) -> &SchemaRef {
        self.parts[0].1.schema()
    }

    /// The first part's Parquet schema (for projection masks; column order is the same in
    /// every part).
    pub fn parquet_schema(&self) -> &SchemaDescriptor {
        self.parts[0].1.parquet_schema()
    }

    /// Rows of all parts together.
    pub fn num_rows(&self) -> u64 {
        self.parts
            .iter()
            .map(|(_, b)| b.metadata().file_metadata().num_rows() as u64)
            .sum()
    }

    /// Row groups of all parts together.
    pub fn num_row_groups(&self) -> usize {
        self.parts
            .iter()
            .map(|(_, b)| b.metadata().num_row_groups())
            .sum()
    }

    /// The first part's footer key/values.
    pub fn key_values(&self) -> Vec<(String, String)> {
        let kv = self.parts[0]
            .1
            .metadata()
            .file_metadata()
            .key_value_metadata();
        kv.into_iter()
            .flatten()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect()
    }

    /// A footer key/value of the first part (sidtool writes one footer per file; a table
    /// split into parts by an engine keeps the first writer's), else the same key of its
    /// Arrow schema metadata, where some writers (arrow-rs's `ArrowWriter`) keep it alone.
    pub fn key_value(&self, key: &str) -> Option<String> {
        let b = &self.parts[0].1;
        b.metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.clone())
            .or_else(|| b.schema().metadata().get(key).cloned())
    }

    /// Batches of every part in turn: all columns, or the top-level `columns` (by index).
    pub fn reader(self, batch_rows: Option<usize>, columns: Option<&[usize]>) -> Result<Parts> {
        // A projection keeps the file's column order, whatever order `columns` lists.
        let mut sorted = columns.map(<[usize]>::to_vec).unwrap_or_default();
        sorted.sort_unstable();
        sorted.dedup();
        let schema = match columns {
            Some(_) => SchemaRef::new(self.schema().project(&sorted).map_err(|e| {
                Error::input(&self.path, None, None, format!("cannot project: {e}"))
            })?),
            None => self.schema().clone(),
        };
        let mut readers = Vec::with_capacity(self.parts.len());
        for (path, mut b) in self.parts {
            if let Some(c) = columns {
                let mask = ProjectionMask::roots(b.parquet_schema(), c.iter().copied());
                b = b.with_projection(mask);
            }
            if let Some(n) = batch_rows {
                b = b.with_batch_size(n);
            }
            readers.push(b.build().map_err(|e| Error::parquet(&path, e))?);
        }
        Ok(Parts {
            schema,
            readers: readers.into_iter(),
            current: None,
        })
    }
}

/// The record batches of an input's parts, one part after the other.
pub struct Parts {
    schema: SchemaRef,
    readers: std::vec::IntoIter<ParquetRecordBatchReader>,
    current: Option<ParquetRecordBatchReader>,
}

impl Parts {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for Parts {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = &mut self.current
                && let Some(b) = r.next()
            {
                return Some(b);
            }
            self.current = Some(self.readers.next()?);
        }
    }
}

/// Total bytes and latest modification time (ns since the epoch) of an input's files: what a
/// resumed run checks to know its input has not changed.
pub fn identity(input: &Path) -> Result<(u64, u128)> {
    let (mut bytes, mut modified) = (0u64, 0u128);
    for f in files(input)? {
        let meta = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?;
        bytes += meta.len();
        let m = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        modified = modified.max(m);
    }
    Ok((bytes, modified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_id::ItemIds;
    use crate::matrix::Matrix;

    fn write(path: &Path, first: i64, n: usize, dim: usize) {
        let ids = ItemIds::Int((first..first + n as i64).collect());
        let x = Matrix::new(vec![0.5; n * dim], n, dim);
        let mut w =
            crate::io::embeddings::EmbeddingWriter::create(path, ids.data_type(), dim).unwrap();
        w.write(&ids, &x).unwrap();
        w.finish().unwrap();
    }

    fn ids_of(input: &Path) -> Vec<i64> {
        let r = ParquetInput::open(input)
            .unwrap()
            .reader(Some(3), Some(&[0]))
            .unwrap();
        r.flat_map(|b| {
            let b = b.unwrap();
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            a.values().to_vec()
        })
        .collect()
    }

    #[test]
    fn a_spark_directory_reads_as_one_table_in_part_order() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("part-00001-x.snappy.parquet"), 10, 4, 2);
        write(&d.path().join("part-00000-x.snappy.parquet"), 0, 5, 2);
        for junk in [
            "_SUCCESS",
            ".part-00000-x.snappy.parquet.crc",
            "_committed_1",
            ".hidden",
        ] {
            std::fs::write(d.path().join(junk), b"not parquet").unwrap();
        }
        let input = ParquetInput::open(d.path()).unwrap();
        assert_eq!(input.num_rows(), 9);
        assert_eq!(input.files().count(), 2);
        assert_eq!(ids_of(d.path()), [0, 1, 2, 3, 4, 10, 11, 12, 13]);
        // A glob over the same parts, and a glob matching the directory itself.
        let g = d.path().join("part-*.parquet");
        assert_eq!(ids_of(&g), [0, 1, 2, 3, 4, 10, 11, 12, 13]);
        let parent_glob = d.path().parent().unwrap().join(format!(
            "{}*",
            d.path().file_name().unwrap().to_string_lossy()
        ));
        assert_eq!(files(&parent_glob).unwrap().len(), 2);
    }

    #[test]
    fn a_part_with_another_schema_is_named() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("part-0.parquet"), 0, 3, 2);
        write(&d.path().join("part-1.parquet"), 3, 3, 4);
        let e = ParquetInput::open(d.path()).err().unwrap().to_string();
        assert!(
            e.contains("part-1.parquet") && e.contains("another schema"),
            "{e}"
        );
        assert!(e.contains("part-0.parquet"), "{e}");
    }

    #[test]
    fn empty_directories_and_globs_are_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("_SUCCESS"), b"").unwrap();
        let e = ParquetInput::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("holds no part files"), "{e}");
        let e = files(&d.path().join("*.parquet")).unwrap_err().to_string();
        assert!(e.contains("matches no file"), "{e}");
        // A file that is not Parquet is named.
        std::fs::write(d.path().join("part-0"), b"text").unwrap();
        let e = ParquetInput::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("part-0"), "{e}");
    }
}
