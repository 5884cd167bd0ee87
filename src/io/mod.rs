//! Parquet/Arrow readers and writers for every table sidtool consumes or produces.

pub mod codes;
pub mod embeddings;
pub mod id_column;
pub mod input;
pub mod interactions;
pub mod parquet_out;
pub mod parts;
pub mod recbole;
