//! GenSAR's input rows are [semantic vector | collaborative vector]: this joins the two on item
//! id. Collaborative vectors come from a separate file (what `sidtool collab` writes, or e.g.
//! SASRec item vectors) or from a column of the embeddings file itself.

use crate::config::{Config, InputConfig};
use crate::error::{Error, Result};
use crate::io::embeddings::{self, EmbeddingReader};
use crate::item_id::{IdKey, ItemIds};
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Collaborative vectors by item id, held in memory (N × a small dimension, e.g. 64).
pub struct CollabVectors {
    pub path: PathBuf,
    pub column: String,
    row: RowOf,
    pub vectors: Matrix,
}

/// Item id → row, owning its keys (the vectors outlive the id batches they are looked up
/// with); string lookups borrow, so a lookup allocates nothing.
enum RowOf {
    Int(HashMap<i64, u32>),
    Str(HashMap<Box<str>, u32>),
}

impl RowOf {
    fn new(ids: &ItemIds) -> Self {
        match ids {
            ItemIds::Int(v) => {
                RowOf::Int(v.iter().enumerate().map(|(i, &k)| (k, i as u32)).collect())
            }
            ItemIds::Str(v) => RowOf::Str(
                v.iter()
                    .enumerate()
                    .map(|(i, k)| (k.as_str().into(), i as u32))
                    .collect(),
            ),
        }
    }

    fn get(&self, key: IdKey<'_>) -> Option<u32> {
        match (self, key) {
            (RowOf::Int(m), IdKey::Int(k)) => m.get(&k).copied(),
            (RowOf::Str(m), IdKey::Str(k)) => m.get(k).copied(),
            _ => None,
        }
    }
}

impl CollabVectors {
    /// Vectors aligned with `ids` (row i ↔ `ids.key(i)`), e.g. just computed for them.
    pub(crate) fn aligned(ids: &ItemIds, vectors: Matrix, path: &Path, column: &str) -> Self {
        CollabVectors {
            path: path.to_path_buf(),
            column: column.to_string(),
            row: RowOf::new(ids),
            vectors,
        }
    }

    /// An error naming the file's columns unless `path` has the vector column `column`.
    pub(crate) fn check_column(path: &Path, column: &str) -> Result<()> {
        if embeddings::has_column(path, column)? {
            return Ok(());
        }
        Err(Error::input(
            path,
            Some(column),
            None,
            format!(
                "no such column (the collaborative vectors, named with --collab-column or \
                 [collab] column); the file has: {}",
                embeddings::column_names(path)?.join(", ")
            ),
        ))
    }

    /// Read the id column and vector column `column` of `path`.
    pub fn read(path: &Path, input: &InputConfig, column: &str) -> Result<Self> {
        Self::check_column(path, column)?;
        let cfg = InputConfig {
            embedding_column: column.to_string(),
            ..input.clone()
        };
        let mut ids: Option<ItemIds> = None;
        let mut vectors = Matrix::zeros(0, 0);
        for b in EmbeddingReader::with_config(path, &cfg)? {
            let b = b?;
            vectors.append(&b.vectors);
            match &mut ids {
                Some(all) => all.extend(b.ids),
                None => ids = Some(b.ids),
            }
        }
        let ids = ids.ok_or_else(|| Error::input(path, None, None, "contains no rows"))?;
        embeddings::check_unique(&ids, path, &input.id_column)?;
        Ok(Self::aligned(&ids, vectors, path, column))
    }

    pub fn dim(&self) -> usize {
        self.vectors.cols
    }

    /// The collaborative vectors of `ids` (zeros for items without one) and how many are
    /// missing or zero.
    pub(crate) fn lookup(&self, ids: &ItemIds) -> (Matrix, u64) {
        let d = self.dim();
        let mut out = Matrix::zeros(ids.len(), d);
        let mut missing = 0;
        for i in 0..ids.len() {
            match self.row.get(ids.key(i)) {
                Some(r) if self.vectors.row(r as usize).iter().any(|&v| v != 0.0) => {
                    out.row_mut(i).copy_from_slice(self.vectors.row(r as usize))
                }
                _ => missing += 1,
            }
        }
        (out, missing)
    }

    /// [semantic | collaborative] rows for `ids` with semantic vectors `s`.
    pub fn join(&self, ids: &ItemIds, s: &Matrix) -> (Matrix, u64) {
        let (u, missing) = self.lookup(ids);
        (Matrix::hcat(&[s, &u]), missing)
    }
}

/// What `assign` and `stats` join to the vectors in `path` for quantizer `q`: a GenSAR
/// quantizer codes [semantic | collaborative] rows, so it needs the collaborative half
/// ([`collab_vectors`]); single-ID quantizers need none.
pub fn collab_for(q: &dyn Quantizer, path: &Path, cfg: &Config) -> Result<Option<CollabVectors>> {
    if q.dual().is_none() {
        return Ok(None);
    }
    collab_vectors(path, &cfg.input, &cfg.collab.column).map(Some)
}

/// The collaborative vectors for inputs in `path`: `[input] collab` when set, else the file's
/// own `column`. Fails with what to do when neither exists.
pub fn collab_vectors(path: &Path, input: &InputConfig, column: &str) -> Result<CollabVectors> {
    if let Some(c) = &input.collab {
        return CollabVectors::read(c, input, column);
    }
    if embeddings::has_column(path, column)? {
        return CollabVectors::read(path, input, column);
    }
    Err(Error::input(
        path,
        Some(column),
        None,
        "no such column: a gensar model needs the items' collaborative vectors; pass --collab \
         FILE (the collab.parquet its build wrote, or any item_id + vector file such as \
         `sidtool collab`'s output), or add this column to the input",
    ))
}
