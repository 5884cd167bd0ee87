//! The embedding stage: item text → vectors with a Qwen3-Embedding (or BERT-family) model
//! through candle. docs/methods.md §1 is the spec.
//!
//! Laid out like text-embeddings-inference: [`loading`] finds the model's files (hub cache or
//! a local folder) and opens its weights, [`models`] holds the architectures (our stateless
//! Qwen3 encoder, candle-transformers' BERT), [`layers`] the blocks they share (linear,
//! pooling, the fused CPU kernels). [`encoder::Encoder`] tokenizes and runs a model,
//! [`batching`] plans length-bucketed batches, [`items`] renders each item's text from the
//! [`template`], and [`job`] streams a catalogue through all of it into
//! `embeddings.parquet`, resumably; [`batch`] embeds one caller's Arrow batch the same way.

pub mod batch;
pub mod batching;
pub mod config;
pub mod encoder;
pub mod items;
pub mod job;
pub mod layers;
pub mod loading;
pub mod models;
pub mod template;

pub use crate::device::{DeviceKind, EmbedDType};
pub use encoder::Encoder;
pub use layers::pooling::Pooling;

pub(crate) const DEFAULT_MODEL: &str = "Qwen/Qwen3-Embedding-0.6B";
pub(crate) const DEFAULT_MAX_LENGTH: usize = 512;
/// Padded tokens per forward on CPU: large enough that the GEMMs run at full speed, small
/// enough that a 512-token attention matrix stays in the hundreds of MB.
pub(crate) const DEFAULT_BATCH_TOKENS: usize = 4096;
/// A GPU's default token budget: 1 024 rows of 64 tokens per forward.
pub(crate) const DEFAULT_GPU_BATCH_TOKENS: usize = 65_536;
pub(crate) const DEFAULT_WINDOW_ROWS: usize = 8192;
