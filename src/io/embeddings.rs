//! Reading item vectors from Parquet (streamed by record batch, validated row by row) and
//! writing `embeddings.parquet`.

use crate::error::{Error, Result};
use crate::io::parquet_out::ParquetOut;
use crate::io::parts::{ParquetInput, Parts};
use crate::item_id::ItemIds;
pub(crate) use crate::item_id::first_null;
use crate::matrix::Matrix;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One record batch of validated items.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddingBatch {
    pub ids: ItemIds,
    pub vectors: Matrix,
    /// File row index of the first row in this batch.
    pub first_row: u64,
}

/// Open a Parquet input (a file, a directory of part files or a glob; see `io::parts`),
/// mapping failures to clear messages.
pub fn open_parquet(path: &Path) -> Result<ParquetInput> {
    let input = ParquetInput::open(path)?;
    check_unique_columns(input.schema(), path)?;
    Ok(input)
}

/// Every reader looks columns up by name, and Arrow's lookup silently takes the first of two
/// columns with the same name: such a file is refused when it is opened, whichever column it
/// is, since which of the two the user meant cannot be told.
pub(crate) fn check_unique_columns(schema: &Schema, path: &Path) -> Result<()> {
    let fields = schema.fields();
    for (j, f) in fields.iter().enumerate() {
        if let Some(i) = fields[..j].iter().position(|g| g.name() == f.name()) {
            return Err(Error::input(
                path,
                Some(f.name()),
                None,
                format!(
                    "appears twice (columns {} and {} of the file); column names must be \
                     unique: rename or drop one of them",
                    i + 1,
                    j + 1
                ),
            ));
        }
    }
    Ok(())
}

/// The file's top-level column names.
pub(crate) fn column_names(path: &Path) -> Result<Vec<String>> {
    Ok(open_parquet(path)?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// Whether the file's schema has a top-level column `name`.
pub(crate) fn has_column(path: &Path, name: &str) -> Result<bool> {
    Ok(open_parquet(path)?
        .schema()
        .column_with_name(name)
        .is_some())
}

/// Streams `(id, vector)` rows out of a Parquet file, checking every row.
pub(crate) struct EmbeddingReader {
    path: PathBuf,
    id_col: String,
    emb_col: String,
    inner: Parts,
    pub num_rows: u64,
    /// Vector length: known up front for FixedSizeList, after the first row for List.
    pub dim: Option<usize>,
    next_row: u64,
}

impl EmbeddingReader {
    /// Open with the column names and batch size of an `[input]` config section.
    pub(crate) fn with_config(path: &Path, input: &crate::io::input::InputConfig) -> Result<Self> {
        Self::open(
            path,
            &input.id_column,
            &input.embedding_column,
            input.batch_rows,
        )
    }

    pub fn open(path: &Path, id_col: &str, emb_col: &str, batch_rows: usize) -> Result<Self> {
        let builder = open_parquet(path)?;
        let schema = builder.schema().clone();
        let col = |name: &str, role: &str| -> Result<(usize, DataType)> {
            schema
                .column_with_name(name)
                .map(|(i, f)| (i, f.data_type().clone()))
                .ok_or_else(|| {
                    let have: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    Error::input(
                        path,
                        Some(name),
                        None,
                        format!(
                            "no such column (the {role}); the file has: {}",
                            have.join(", ")
                        ),
                    )
                })
        };
        let (id_idx, id_type) = col(id_col, "item id column, set with --id-column")?;
        let (emb_idx, emb_type) = col(emb_col, "embedding column, set with --embedding-column")?;
        if !ItemIds::supported(&id_type) {
            return Err(Error::input(
                path,
                Some(id_col),
                None,
                format!(
                    "has type {id_type}; item ids must be Utf8, LargeUtf8, Utf8View, Int64 or Int32"
                ),
            ));
        }
        let dim = match &emb_type {
            DataType::FixedSizeList(f, n) if is_float(f.data_type()) => Some(*n as usize),
            DataType::List(f) | DataType::LargeList(f) if is_float(f.data_type()) => None,
            t => {
                return Err(Error::input(
                    path,
                    Some(emb_col),
                    None,
                    format!(
                        "has type {t}; embeddings must be FixedSizeList or List of Float32 or Float64"
                    ),
                ));
            }
        };
        let num_rows = builder.num_rows();
        if num_rows == 0 {
            return Err(Error::input(path, None, None, "contains no rows"));
        }
        let inner = builder.reader(Some(batch_rows), Some(&[id_idx, emb_idx]))?;
        Ok(EmbeddingReader {
            path: path.to_path_buf(),
            id_col: id_col.into(),
            emb_col: emb_col.into(),
            inner,
            num_rows,
            dim,
            next_row: 0,
        })
    }

    fn convert(&mut self, batch: RecordBatch) -> Result<EmbeddingBatch> {
        let first = self.next_row;
        let ids_arr = batch
            .column_by_name(&self.id_col)
            .expect("projected id column");
        let ids = ItemIds::from_column(ids_arr.as_ref(), &self.path, &self.id_col, first)?;
        let emb = batch
            .column_by_name(&self.emb_col)
            .expect("projected embedding column");
        let vectors = self.vectors(emb, first)?;
        self.next_row += batch.num_rows() as u64;
        Ok(EmbeddingBatch {
            ids,
            vectors,
            first_row: first,
        })
    }

    fn vectors(&mut self, emb: &ArrayRef, first: u64) -> Result<Matrix> {
        batch_vectors(emb, &self.path, &self.emb_col, first, &mut self.dim)
    }
}

/// The vectors of one batch's embedding column (FixedSizeList or List of Float32/Float64),
/// every row checked: no nulls, one length (`dim`, learned from the first row when `None`),
/// finite values. Errors name `path`, `col` and the row (`first` + row in the batch).
pub(crate) fn batch_vectors(
    emb: &ArrayRef,
    path: &Path,
    col: &str,
    first: u64,
    dim: &mut Option<usize>,
) -> Result<Matrix> {
    let n = emb.len();
    let err =
        |row: usize, msg: String| Error::input(path, Some(col), Some(first + row as u64), msg);
    if let Some(r) = first_null(emb.as_ref()) {
        return Err(err(r, "embedding is null".into()));
    }
    // (values, start offset of each row, end offset of each row)
    let (values, bounds): (ArrayRef, Vec<(usize, usize)>) = match emb.data_type() {
        DataType::FixedSizeList(_, _) => {
            let a = emb.as_fixed_size_list();
            let len = a.value_length() as usize;
            (
                a.values().clone(),
                (0..n)
                    .map(|i| (a.value_offset_at(i), a.value_offset_at(i) + len))
                    .collect(),
            )
        }
        DataType::List(_) => {
            let a = emb.as_list::<i32>();
            let o = a.value_offsets();
            (
                a.values().clone(),
                (0..n).map(|i| (o[i] as usize, o[i + 1] as usize)).collect(),
            )
        }
        DataType::LargeList(_) => {
            let a = emb.as_list::<i64>();
            let o = a.value_offsets();
            (
                a.values().clone(),
                (0..n).map(|i| (o[i] as usize, o[i + 1] as usize)).collect(),
            )
        }
        t => {
            return Err(Error::input(
                path,
                Some(col),
                None,
                format!(
                    "has type {t}; embeddings must be FixedSizeList or List of Float32 or Float64"
                ),
            ));
        }
    };
    let floats: Vec<f32> = match values.data_type() {
        DataType::Float32 => values.as_primitive::<Float32Type>().values().to_vec(),
        DataType::Float64 => values
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .map(|&v| v as f32)
            .collect(),
        t => {
            return Err(Error::input(
                path,
                Some(col),
                None,
                format!("has values of type {t}; embeddings must be Float32 or Float64"),
            ));
        }
    };
    let child_nulls = values.nulls().filter(|b| b.null_count() > 0);
    let dim = match *dim {
        Some(d) => d,
        None => {
            let d = bounds[0].1 - bounds[0].0;
            *dim = Some(d);
            d
        }
    };
    if dim == 0 {
        return Err(err(0, "embedding has length 0".into()));
    }
    let mut data = Vec::with_capacity(n * dim);
    for (row, &(s, e)) in bounds.iter().enumerate() {
        if e - s != dim {
            return Err(err(
                row,
                format!("embedding has {} values but earlier rows have {dim}", e - s),
            ));
        }
        if let Some(nb) = child_nulls
            && (s..e).any(|j| nb.is_null(j))
        {
            return Err(err(row, "embedding contains a null component".into()));
        }
        let v = &floats[s..e];
        if !crate::matrix::sq_norm(v).is_finite() && v.iter().all(|x| x.is_finite()) {
            return Err(err(
                row,
                "embedding is too large: its squared norm overflows f32; rescale the vectors"
                    .into(),
            ));
        }
        if let Some(j) = v.iter().position(|x| !x.is_finite()) {
            return Err(err(
                row,
                format!(
                    "embedding component {j} is {} (NaN and ±Inf are not allowed)",
                    v[j]
                ),
            ));
        }
        data.extend_from_slice(v);
    }
    Ok(Matrix::new(data, n, dim))
}

impl Iterator for EmbeddingReader {
    type Item = Result<EmbeddingBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.inner.next()?;
        Some(match batch {
            Ok(b) => self.convert(b),
            Err(e) => Err(Error::arrow(&self.path, e)),
        })
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64)
}

/// Read every row into memory, rejecting duplicate ids.
pub fn read_all(
    path: &Path,
    id_col: &str,
    emb_col: &str,
    batch_rows: usize,
) -> Result<(ItemIds, Matrix)> {
    let mut reader = EmbeddingReader::open(path, id_col, emb_col, batch_rows)?;
    let first = reader.next().expect("file has rows")?;
    let (mut ids, mut m) = (first.ids, first.vectors);
    for b in reader {
        let b = b?;
        ids.extend(b.ids);
        m.append(&b.vectors);
    }
    check_unique(&ids, path, id_col)?;
    Ok((ids, m))
}

pub(crate) fn check_unique(ids: &ItemIds, path: &Path, id_col: &str) -> Result<()> {
    if let Some((first, dup)) = ids.first_duplicate() {
        return Err(Error::input(
            path,
            Some(id_col),
            Some(dup as u64),
            format!(
                "duplicate item id {} (first seen at row {first})",
                ids.display(dup)
            ),
        ));
    }
    Ok(())
}

/// `item_id` and a FixedSizeList<Float32, dim> column named `column` (`embedding` in
/// `embeddings.parquet`, `collab_embedding` in `collab.parquet`).
pub(crate) fn vectors_schema(id_type: DataType, dim: usize, column: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", id_type, false),
        Field::new(
            column,
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                dim as i32,
            ),
            false,
        ),
    ]))
}

/// The Arrow column for a block of vectors.
pub(crate) fn vectors_to_arrow(m: &Matrix) -> ArrayRef {
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    let values = Arc::new(Float32Array::from(m.data.clone()));
    Arc::new(FixedSizeListArray::new(field, m.cols as i32, values, None))
}

/// Streaming writer of `embeddings.parquet` (and of any `item_id` + vector table).
pub struct EmbeddingWriter {
    out: ParquetOut,
    schema: SchemaRef,
}

impl EmbeddingWriter {
    pub fn create(dest: &Path, id_type: DataType, dim: usize) -> Result<Self> {
        Self::create_with_meta(dest, id_type, dim, Vec::new())
    }

    /// As [`EmbeddingWriter::create`], with extra footer key/values (how the vectors were made).
    pub(crate) fn create_with_meta(
        dest: &Path,
        id_type: DataType,
        dim: usize,
        extra: Vec<(String, String)>,
    ) -> Result<Self> {
        Self::create_column(dest, id_type, dim, "embedding", extra)
    }

    /// As [`EmbeddingWriter::create_with_meta`], with the vector column named `column`.
    pub(crate) fn create_column(
        dest: &Path,
        id_type: DataType,
        dim: usize,
        column: &str,
        extra: Vec<(String, String)>,
    ) -> Result<Self> {
        let schema = vectors_schema(id_type, dim, column);
        let mut meta = vec![("sidtool:version".to_string(), crate::VERSION.to_string())];
        meta.extend(extra);
        Ok(EmbeddingWriter {
            out: ParquetOut::create(dest, schema.clone(), meta)?,
            schema,
        })
    }

    pub fn write(&mut self, ids: &ItemIds, vectors: &Matrix) -> Result<()> {
        self.write_rows(ids.to_arrow(0, ids.len()), vectors)
    }

    /// Write rows given an id column already in Arrow form (e.g. [`ItemIds::to_arrow`] of a
    /// range).
    pub(crate) fn write_rows(&mut self, ids: ArrayRef, vectors: &Matrix) -> Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), vec![ids, vectors_to_arrow(vectors)])
            .expect("columns match the embeddings schema");
        self.out.write(&batch)
    }

    /// Write a batch that already has the embeddings schema (joining parts of a run).
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .expect("parts are written with the same schema");
        self.out.write(&batch)
    }

    pub fn finish(self) -> Result<()> {
        self.out.finish()
    }
}
