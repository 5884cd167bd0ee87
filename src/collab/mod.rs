//! Collaborative signal from interactions (METHODS.md §6).

pub mod cooccur;
