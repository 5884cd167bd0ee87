//! sidtool: turn an item catalogue into semantic IDs (SIDs).
//!
//! Data flows one way: [`io`] reads catalogues → [`quant`] trains and applies a quantizer →
//! [`ids`] resolves collisions, formats tokens and computes statistics → [`io`] writes tables.
//! [`pipeline`] strings the stages together for `sidtool build`.

pub mod bench;
pub mod collab;
pub mod config;
pub mod embed;
pub mod error;
pub mod eval;
pub mod fs;
pub mod gemm;
pub mod ids;
pub mod io;
pub mod item_id;
pub mod matrix;
pub mod names;
pub mod pipeline;
pub mod progress;
pub mod quant;
pub mod vocab;

pub use config::{Config, Dedup, Method};
pub use error::{Error, Result};
pub use matrix::Matrix;
pub use quant::Quantizer;

/// The crate version, recorded in every artefact sidtool writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
