//! Reading item text for the embedding stage: the id column plus the columns a text
//! template names, streamed by record batch.

use crate::embed::template::Template;
use crate::error::{Error, Result};
use crate::io::embeddings::open_parquet;
use crate::item_id::ItemIds;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use std::path::{Path, PathBuf};

/// One record batch of items as text.
pub struct TextBatch {
    pub ids: ItemIds,
    pub texts: Vec<String>,
    /// File row index of the first row.
    pub first_row: u64,
}

/// How rows of one schema become text: the id column, and the template rendered over the
/// template fields the schema has. Shared by the file reader and the batch API (Python).
pub struct TextColumns {
    /// What errors name: the file, or `<arrow batch>`.
    path: PathBuf,
    id_col: String,
    template: Template,
    /// Template fields the schema has (absent ones are always null).
    present: Vec<String>,
}

/// Streams `(id, text)` rows; text is the template rendered over each row.
pub struct ItemTextReader {
    cols: TextColumns,
    inner: crate::io::parts::Parts,
    pub num_rows: u64,
    next_row: u64,
}

/// Whether values of this type can be shown as text.
fn textual(t: &DataType) -> bool {
    match t {
        // Lists of strings (genres, tags); a list of numbers is a vector, not text.
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => matches!(
            f.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => true,
        DataType::Dictionary(_, v) => textual(v) && !v.is_nested(),
        t => t.is_numeric() || t.is_temporal(),
    }
}

impl ItemTextReader {
    /// `strict`: every template field must be a column (a user's own template); otherwise
    /// absent fields count as null (the default template), as long as one is present.
    pub fn open(
        path: &Path,
        id_col: &str,
        template: &Template,
        strict: bool,
        batch_rows: usize,
    ) -> Result<Self> {
        let builder = open_parquet(path)?;
        let (cols, roots) = TextColumns::new(builder.schema(), path, id_col, template, strict)?;
        let num_rows = builder.num_rows();
        // By root index: a name-based projection would split `movie.title` at the dot.
        let inner = builder.reader(Some(batch_rows), Some(&roots))?;
        Ok(ItemTextReader {
            cols,
            inner,
            num_rows,
            next_row: 0,
        })
    }
}

impl TextColumns {
    /// Check `schema` against the template (see [`ItemTextReader::open`] for `strict`);
    /// returns the columns and the schema's indices of the columns they read.
    pub fn new(
        schema: &arrow_schema::Schema,
        path: &Path,
        id_col: &str,
        template: &Template,
        strict: bool,
    ) -> Result<(Self, Vec<usize>)> {
        let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let id_idx = crate::item_id::id_column_index(schema, path, id_col)?;
        let mut present = Vec::new();
        let mut roots = vec![id_idx];
        for f in template.fields() {
            match schema.column_with_name(f) {
                Some((i, field)) if textual(field.data_type()) => {
                    present.push(f.to_string());
                    if !roots.contains(&i) {
                        roots.push(i);
                    }
                }
                Some((_, field)) => {
                    return Err(Error::input(
                        path,
                        Some(f),
                        None,
                        format!(
                            "has type {}, which cannot be used as item text (the template {:?} \
                             names it)",
                            field.data_type(),
                            template.source()
                        ),
                    ));
                }
                None if strict => {
                    return Err(Error::input(
                        path,
                        Some(f),
                        None,
                        format!(
                            "no such column, but the template {:?} names it; the file has: {}",
                            template.source(),
                            have.join(", ")
                        ),
                    ));
                }
                None => {}
            }
        }
        if present.is_empty() {
            return Err(Error::input(
                path,
                None,
                None,
                format!(
                    "has none of the columns the text template {:?} reads ({}); the file has: {}. \
                     Pass --template with your text columns, or add an embedding column",
                    template.source(),
                    template.fields().join(", "),
                    have.join(", ")
                ),
            ));
        }
        let cols = TextColumns {
            path: path.to_path_buf(),
            id_col: id_col.to_string(),
            template: template.clone(),
            present,
        };
        Ok((cols, roots))
    }

    /// The ids and texts of `batch`, whose first row is row `first` of its input.
    pub fn texts(&self, batch: &RecordBatch, first: u64) -> Result<TextBatch> {
        let ids_arr = batch.column_by_name(&self.id_col).expect("projected");
        let ids = ItemIds::from_column(ids_arr.as_ref(), &self.path, &self.id_col, first)?;
        let cols: Vec<(String, Vec<Option<String>>)> = self
            .present
            .iter()
            .map(|name| {
                let a = batch.column_by_name(name).expect("projected");
                Ok((name.clone(), self.strings(name, a, first)?))
            })
            .collect::<Result<_>>()?;
        let texts = (0..batch.num_rows())
            .map(|r| {
                self.template.render(|f| {
                    cols.iter()
                        .find(|(n, _)| n == f)
                        .and_then(|(_, v)| v[r].as_deref())
                })
            })
            .collect();
        Ok(TextBatch {
            ids,
            texts,
            first_row: first,
        })
    }

    /// One column's values as text (None for null); lists are joined with ", ".
    fn strings(&self, name: &str, a: &ArrayRef, first: u64) -> Result<Vec<Option<String>>> {
        let cast_err = |e: arrow_schema::ArrowError| {
            Error::input(
                &self.path,
                Some(name),
                Some(first),
                format!("cannot read as text: {e}"),
            )
        };
        let list =
            |values: &ArrayRef, bounds: Vec<(usize, usize)>| -> Result<Vec<Option<String>>> {
                let flat = self.strings(name, values, first)?;
                Ok(bounds
                    .into_iter()
                    .enumerate()
                    .map(|(r, (s, e))| {
                        if a.is_null(r) {
                            return None;
                        }
                        let parts: Vec<&str> = flat[s..e]
                            .iter()
                            .flatten()
                            .map(|p| p.trim())
                            .filter(|p| !p.is_empty())
                            .collect();
                        (!parts.is_empty()).then(|| parts.join(", "))
                    })
                    .collect())
            };
        match a.data_type() {
            DataType::List(_) => {
                let l = a.as_list::<i32>();
                let o = l.value_offsets();
                let b = (0..l.len())
                    .map(|r| (o[r] as usize, o[r + 1] as usize))
                    .collect();
                list(l.values(), b)
            }
            DataType::LargeList(_) => {
                let l = a.as_list::<i64>();
                let o = l.value_offsets();
                let b = (0..l.len())
                    .map(|r| (o[r] as usize, o[r + 1] as usize))
                    .collect();
                list(l.values(), b)
            }
            DataType::FixedSizeList(_, n) => {
                let l = a.as_fixed_size_list();
                let n = *n as usize;
                let b = (0..l.len()).map(|r| (r * n, r * n + n)).collect();
                list(l.values(), b)
            }
            // A year stored as float (pandas does that when some are missing) reads `1995`, not
            // `1995.0`; NaN is a missing value, not text.
            DataType::Float32 | DataType::Float64 => {
                let f = arrow_cast::cast(a.as_ref(), &DataType::Float64).map_err(cast_err)?;
                let f = f.as_primitive::<arrow_array::types::Float64Type>();
                Ok((0..f.len())
                    .map(|i| {
                        let v = f.value(i);
                        (f.is_valid(i) && !v.is_nan()).then(|| {
                            if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
                                format!("{}", v as i64)
                            } else {
                                v.to_string()
                            }
                        })
                    })
                    .collect())
            }
            _ => {
                let s = arrow_cast::cast(a.as_ref(), &DataType::Utf8).map_err(cast_err)?;
                let s = s.as_string::<i32>();
                Ok((0..s.len())
                    .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
                    .collect())
            }
        }
    }
}

impl Iterator for ItemTextReader {
    type Item = Result<TextBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.inner.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(Error::arrow(&self.cols.path, e))),
        };
        let out = self.cols.texts(&batch, self.next_row);
        if let Ok(b) = &out {
            self.next_row += b.texts.len() as u64;
        }
        Some(out)
    }
}
