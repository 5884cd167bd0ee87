//! Stage orchestration: each stage usable on its own from the library (`scan`, `train`,
//! `assign`, `stats_of_table`), and `build`, which strings them together.

mod assign;
mod build;
mod by_id;
mod encode;
mod existing;
mod join;
mod kinds;
mod manifest;
mod resolve;
mod scan;
mod source;
mod stats;
mod train;

pub use crate::fs::atomic::write_json;
pub use assign::{Assigned, CidAssigned, assign, write_assigned};
pub use build::{BUILD_OUTPUTS, COLLAB_OUTPUT, build};
pub use encode::{encode_batch, raw_meta};
pub use join::{CollabVectors, collab_for, collab_vectors};
pub use manifest::{InputFile, Manifest, Timing, VocabSummary, sha256_file};
pub use resolve::{Vectors, part_files, resolve};
pub use scan::{Scan, scan};
pub use source::Source;
pub use stats::stats_of_table;
pub use train::train;
