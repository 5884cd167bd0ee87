//! From raw quantizer codes to final IDs: collision resolution, token strings, statistics.

pub mod config;
pub mod dedup;
pub mod sid_table;
pub mod stats;
pub mod tokens;
