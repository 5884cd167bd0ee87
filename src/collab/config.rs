//! The collaborative-vector section (`[collab]`).

use crate::device::DeviceKind;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Collaborative embeddings from interactions (`sidtool collab`; docs/methods.md §6):
/// co-occurrence counts → PPMI → truncated randomized SVD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollabConfig {
    /// Dimensions d of the item vectors (docs/methods.md §6: 64).
    pub dim: usize,
    /// Items at most this many positions apart in a history co-occur (docs/methods.md §4: 5).
    pub window: usize,
    /// Extra sketch columns p of the randomized SVD (Halko et al. 2011 recommend 5–10).
    pub oversample: usize,
    /// Power iterations q of the randomized SVD (Halko et al.: 1–2 for slowly decaying
    /// spectra such as PPMI's).
    pub power_iterations: usize,
    /// Name of the vector column: written by `sidtool collab`, and the column of
    /// user-supplied collaborative vectors in a catalogue.
    pub column: String,
    /// Where the randomized SVD runs (`cpu`, `cuda`, `metal`).
    pub device: DeviceKind,
}

impl Default for CollabConfig {
    fn default() -> Self {
        CollabConfig {
            dim: 64,
            window: 5,
            oversample: 10,
            power_iterations: 2,
            column: "collab_embedding".into(),
            device: DeviceKind::Cpu,
        }
    }
}

impl CollabConfig {
    /// Check the values that can be checked without data.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.window == 0 {
            return Err(Error::Config(format!(
                "collab dim and window must be ≥ 1, got dim {} and window {}",
                self.dim, self.window
            )));
        }
        if self.column.is_empty() || self.column == "item_id" {
            return Err(Error::Config(format!(
                "collab column must be a non-empty name other than item_id, got {:?}",
                self.column
            )));
        }
        Ok(())
    }
}
