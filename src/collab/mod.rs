//! Collaborative signal from interactions (METHODS.md §6).

pub mod cooccur;

// TEMPORARY (replaced by the collab branch's PPMI + SVD at merge).
pub struct Collab {
    pub vectors: crate::matrix::Matrix,
    pub without_interactions: u64,
}
pub fn compute(
    _i: &std::path::Path,
    _items: &crate::io::item_ids::ItemIds,
    _cfg: &crate::config::CollabConfig,
    _seed: u64,
    _p: &dyn crate::progress::Progress,
) -> crate::error::Result<Collab> {
    Err(crate::error::Error::Config("pending merge".into()))
}
pub fn write(
    _p: &std::path::Path,
    _ids: &crate::io::item_ids::ItemIds,
    _v: &crate::matrix::Matrix,
    _c: &str,
) -> crate::error::Result<()> {
    Err(crate::error::Error::Config("pending merge".into()))
}
