//! From raw quantizer codes to final IDs: collision resolution, token strings, statistics.

pub mod dedup;
pub mod kind;
pub mod stats;
pub mod tokens;
