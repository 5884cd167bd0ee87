//! The two IDs a dual quantizer (GenSAR) gives every item.

use serde::{Deserialize, Serialize};

/// Which of the two IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// Shared + semantic codes (search).
    Sid,
    /// Shared + collaborative codes (recommendation).
    Cid,
}

impl IdKind {
    pub(crate) const BOTH: [IdKind; 2] = [IdKind::Sid, IdKind::Cid];

    pub fn index(self) -> usize {
        match self {
            IdKind::Sid => 0,
            IdKind::Cid => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IdKind::Sid => "sid",
            IdKind::Cid => "cid",
        }
    }
}
