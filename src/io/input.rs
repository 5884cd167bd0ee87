//! The input section (`[input]`): which columns to read and how.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Rows per record batch when streaming Parquet: large enough to amortise per-batch work,
/// small enough that a batch of 1024-dim vectors stays at 32 MiB.
pub const DEFAULT_BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// Column holding the item identifier (Utf8/LargeUtf8/Utf8View or Int64/Int32).
    pub id_column: String,
    /// Column holding precomputed vectors (FixedSizeList or List of Float32/Float64).
    pub embedding_column: String,
    /// Rows per record batch when streaming Parquet.
    pub batch_rows: usize,
    /// `interactions.parquet` (user_id, item_id, optional timestamp): co-occurrence pairs for
    /// the contrastive alignment (RQ-VAE, GenSAR), and in `build --method gensar` the source of
    /// the collaborative vectors when no others are given.
    pub interactions: Option<std::path::PathBuf>,
    /// GenSAR's collaborative vectors: a Parquet file with the id column and
    /// `[collab] column` (what `sidtool collab` writes). Unset: the input's own column of that
    /// name, else (in `build`) computed from `interactions`.
    pub collab: Option<std::path::PathBuf>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            id_column: "item_id".into(),
            embedding_column: "embedding".into(),
            batch_rows: DEFAULT_BATCH_ROWS,
            interactions: None,
            collab: None,
        }
    }
}

impl InputConfig {
    /// Check the values that can be checked without data.
    pub fn validate(&self) -> Result<()> {
        if self.batch_rows == 0 {
            return Err(Error::Config("batch_rows must be ≥ 1".into()));
        }
        Ok(())
    }
}
