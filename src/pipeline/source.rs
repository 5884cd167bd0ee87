//! Where the vectors to encode come from: rows already in memory, or a Parquet file streamed
//! batch by batch (joined with GenSAR's collaborative vectors when the quantizer is dual).

use super::join::CollabVectors;
use super::scan::take_rows;
use crate::error::{Error, Result};
use crate::io::embeddings::EmbeddingReader;
use crate::io::input::InputConfig;
use crate::item_id::ItemIds;
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use std::path::Path;

/// Vectors to encode: already in memory, or a Parquet file streamed batch by batch.
pub enum Source<'a> {
    Memory {
        ids: &'a ItemIds,
        vectors: &'a Matrix,
        path: &'a Path,
    },
    File {
        path: &'a Path,
        input: &'a InputConfig,
        /// GenSAR: collaborative vectors appended to every row (zeros for items without one).
        collab: Option<&'a CollabVectors>,
    },
}

impl Source<'_> {
    pub(super) fn path(&self) -> &Path {
        match self {
            Source::Memory { path, .. } | Source::File { path, .. } => path,
        }
    }

    /// The vector column, for error messages.
    pub(super) fn column(&self) -> &str {
        match self {
            Source::Memory { .. } => "embedding",
            Source::File { input, .. } => &input.embedding_column,
        }
    }

    /// The item id column, for error messages.
    pub(super) fn id_column(&self) -> &str {
        match self {
            Source::Memory { .. } => "item_id",
            Source::File { input, .. } => &input.id_column,
        }
    }

    /// Call `f(first_row, ids, vectors)` for every batch, in file order.
    pub(super) fn for_each(
        &self,
        mut f: impl FnMut(usize, &ItemIds, &Matrix) -> Result<()>,
    ) -> Result<()> {
        match self {
            Source::Memory { ids, vectors, .. } => f(0, ids, vectors),
            Source::File {
                path,
                input,
                collab,
            } => {
                let reader = EmbeddingReader::with_config(path, input)?;
                for b in reader {
                    let b = b?;
                    match collab {
                        None => f(b.first_row as usize, &b.ids, &b.vectors)?,
                        Some(c) => f(b.first_row as usize, &b.ids, &c.join(&b.ids, &b.vectors).0)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// For a GenSAR quantizer: the semantic vectors must be as wide as it was trained on, and
    /// so must the collaborative ones; each mismatch names its own file (the joined width alone
    /// cannot tell 64 + 32 from 32 + 64).
    pub(super) fn check_dual(&self, q: &dyn Quantizer) -> Result<()> {
        let (
            Some(d),
            Source::File {
                path,
                input,
                collab,
            },
        ) = (q.dual(), self)
        else {
            return Ok(());
        };
        let want_u = q.dim() - d.semantic_dim;
        if let Some(c) = collab
            && c.dim() != want_u
        {
            return Err(Error::input(
                &c.path,
                Some(&c.column),
                None,
                format!(
                    "collaborative vectors have {} dimensions but the quantizer was trained on \
                     {want_u}",
                    c.dim()
                ),
            ));
        }
        if let Some(b) = EmbeddingReader::with_config(path, input)?.next() {
            let cols = b?.vectors.cols;
            if cols != d.semantic_dim {
                return Err(Error::input(
                    path,
                    Some(&input.embedding_column),
                    None,
                    format!(
                        "vectors have {cols} dimensions but the quantizer's semantic part was \
                         trained on {}",
                        d.semantic_dim
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where the collaborative vectors come from, for messages.
    pub(super) fn collab_origin(&self) -> String {
        match self {
            Source::File {
                collab: Some(c), ..
            } => format!("{} (column {})", c.path.display(), c.column),
            _ => "the collaborative vectors given".into(),
        }
    }
}

/// The vectors of rows `need` (sorted, file order) from a source.
pub(super) fn gather_rows(source: &Source, need: &[usize]) -> Result<Matrix> {
    let mut out = Matrix::zeros(0, 0);
    let mut t = 0;
    source.for_each(|first, _, x| {
        out.append(&take_rows(need, &mut t, first, x));
        Ok(())
    })?;
    Ok(out)
}
