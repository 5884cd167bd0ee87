//! Parquet/Arrow readers and writers for every table sidtool consumes or produces.

pub mod atomic;
pub mod embeddings;
pub mod id_column;
pub mod inspect;
pub mod interactions;
pub mod item_ids;
pub mod items;
pub mod parquet_out;
pub mod recbole;
pub mod sid_table;
