//! The embedding stage: item text → vectors with a Qwen3-Embedding (or BERT-family) model
//! through candle. docs/methods.md §1 is the spec.
//!
//! [`hub`] finds the model's files, [`encoder::Encoder`] tokenizes and runs the forward
//! ([`qwen3`] is our own stateless encoder; [`bert`] wraps candle-transformers), [`batching`]
//! plans length-bucketed batches and [`job`] streams a catalogue through it into
//! `embeddings.parquet`, resumably.

pub mod batching;
pub mod bert;
pub mod config;
pub mod cpu_kernels;
pub mod device;
pub mod encoder;
pub mod hub;
pub mod items;
pub mod job;
pub mod linear;
pub mod pooling;
pub mod qwen3;
pub mod template;
pub mod weights;

pub use encoder::Encoder;
pub use pooling::Pooling;

pub const DEFAULT_MODEL: &str = "Qwen/Qwen3-Embedding-0.6B";
pub const DEFAULT_MAX_LENGTH: usize = 512;
/// Padded tokens per forward on CPU: large enough that the GEMMs run at full speed, small
/// enough that a 512-token attention matrix stays in the hundreds of MB.
pub const DEFAULT_BATCH_TOKENS: usize = 4096;
pub const DEFAULT_WINDOW_ROWS: usize = 8192;
