//! sidtool: turn an item catalogue into semantic IDs (SIDs).
//!
//! Data flows one way, stage after stage: [`io`] reads catalogues → [`embed`] turns item text
//! into vectors → [`collab`] turns interactions into pairs and collaborative vectors →
//! [`quant`] trains and applies a quantizer → [`ids`] resolves collisions, spells tokens and
//! computes statistics → [`vocab`] extends an LLM tokenizer. Each stage owns its config
//! section; [`config`] only aggregates them. [`pipeline`] composes the stages (`sidtool
//! build`), [`eval`] scores the result. See docs/architecture.md.
//!
//! The public API in short: a [`Config`] (TOML or built in code), then [`build`] for the whole
//! pipeline, or the stages on their own: [`Encoder`] / [`embed_file`], [`train`] (a boxed
//! [`Quantizer`]; [`load_quantizer`] reads a saved one), [`assign`] and [`stats_of_table`];
//! [`evaluate`] scores a code table.

pub mod bench;
pub mod collab;
pub mod config;
pub mod device;
pub mod embed;
pub mod error;
pub mod eval;
pub mod export;
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
pub mod report;
pub mod vocab;

pub use config::{Config, Dedup, Method};
pub use embed::Encoder;
pub use embed::job::embed_file;
pub use error::{Error, Result};
pub use eval::evaluate;
pub use matrix::Matrix;
pub use pipeline::{Source, assign, build, stats_of_table, train};
pub use quant::{Quantizer, load as load_quantizer};

/// The crate version, recorded in every artefact sidtool writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
