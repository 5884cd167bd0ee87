//! Collaborative signal from interactions (docs/methods.md §6): co-occurrence pairs for PLUM's
//! contrastive loss ([`cooccur`]), and collaborative item embeddings built into sidtool:
//! windowed co-occurrence counts → PPMI ([`ppmi`]) → truncated randomized SVD ([`rsvd`]) →
//! U_k·Σ_k^{1/2}, L2-normalised per item.

pub mod config;
pub mod cooccur;
pub mod ppmi;
pub mod rsvd;
pub mod sparse;

use crate::collab::config::CollabConfig;
use crate::error::{Error, Result};
use crate::io::embeddings::EmbeddingWriter;
use crate::io::interactions::{self, ITEM_COLUMN};
use crate::io::parquet_out::ROW_GROUP_ROWS;
use crate::item_id::{IdIndex, ItemIds};
use crate::matrix::Matrix;
use crate::progress::Progress;
use serde::Serialize;
use std::path::Path;

/// Collaborative vectors of a catalogue, and what the interactions held.
#[derive(Debug, Clone)]
pub struct Collab {
    /// items.len() × dim; row i ↔ items.key(i). Unit rows, or zero for items without signal.
    pub vectors: Matrix,
    /// Catalogue items with a zero vector: no interaction, or none that co-occurs within the
    /// window with another catalogue item.
    pub without_interactions: u64,
    /// Interactions naming items not in the catalogue (skipped).
    pub unknown_events: u64,
    /// Rows of the interactions file.
    pub events: u64,
    /// Distinct users in the interactions file.
    pub users: u64,
    /// Stored entries of the symmetric PPMI matrix (both triangles; the diagonal is zero).
    pub nonzeros: u64,
}

/// What `sidtool collab` reports, and what the output's footer records.
#[derive(Debug, Clone, Serialize)]
pub struct CollabSummary {
    pub items: u64,
    pub users: u64,
    pub events: u64,
    pub unknown_events: u64,
    pub without_interactions: u64,
    pub nonzeros: u64,
    pub dim: usize,
    /// Components that carry signal; the remaining dim − rank are zero for every item (the
    /// PPMI matrix had fewer non-trivial directions than dim).
    pub rank: usize,
    pub seconds: f64,
}

impl Collab {
    pub fn summary(&self, seconds: f64) -> CollabSummary {
        let m = &self.vectors;
        let rank = (0..m.cols)
            .filter(|&j| (0..m.rows).any(|i| m.data[i * m.cols + j] != 0.0))
            .count();
        CollabSummary {
            items: m.rows as u64,
            users: self.users,
            events: self.events,
            unknown_events: self.unknown_events,
            without_interactions: self.without_interactions,
            nonzeros: self.nonzeros,
            dim: m.cols,
            rank,
            seconds,
        }
    }
}

/// Collaborative vectors for every catalogue item from `interactions` (`user_id`, `item_id`,
/// optional `timestamp`): per user in time order (else file order), every two different items
/// at most `cfg.window` positions apart co-occur; counts → PPMI → randomized SVD to `cfg.dim`
/// → U·Σ^{1/2}, rows L2-normalised. Seeded and bit-identical on any thread count.
pub(crate) fn compute(
    interactions: &Path,
    items: &ItemIds,
    cfg: &CollabConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Collab> {
    cfg.validate()?;
    // Opened so that a device this binary cannot use fails before the work, as elsewhere.
    if !crate::device::open(cfg.device)?.is_cpu() {
        tracing::info!(
            "collab: the randomized SVD runs on the CPU (its products are sparse × dense, which \
             candle has no device kernel for; the dense l × l steps are too small to pay for \
             a transfer), so --device applies to the other stages only"
        );
    }
    if items.is_empty() {
        return Err(Error::Config("the catalogue has no items".into()));
    }
    if let Some((first, dup)) = items.first_duplicate() {
        return Err(Error::Config(format!(
            "catalogue item id {} occurs twice (rows {first} and {dup})",
            items.display(dup)
        )));
    }
    let n = items.len();
    let index = IdIndex::new(items);
    progress.start("collab: read interactions", None);
    let mut inter = interactions::read(interactions, &index)?;
    progress.advance(inter.rows);
    progress.finish();
    if inter.unknown_events > 0 {
        tracing::warn!(
            "{}: {} of {} interactions name items that are not in the catalogue; they are \
             skipped{}",
            interactions.display(),
            inter.unknown_events,
            inter.rows,
            interactions::kind_hint(&inter, &index)
        );
    }

    progress.start("collab: co-occurrence counts and ppmi", None);
    let events = std::mem::take(&mut inter.events);
    let mut seen = vec![false; n];
    for e in &events {
        seen[e.item as usize] = true;
    }
    let histories = cooccur::Histories::new(&events, inter.users);
    drop(events);
    let counts = cooccur::counts(&histories, cfg.window);
    drop(histories);
    if counts.is_empty() {
        return Err(Error::input(
            interactions,
            Some(ITEM_COLUMN),
            None,
            format!(
                "no two different catalogue items occur within {} positions of each other in \
                 any user's history (of {} interactions, {} name items not in the catalogue); \
                 collaborative embeddings need co-occurrences{}",
                cfg.window,
                inter.rows,
                inter.unknown_events,
                interactions::kind_hint(&inter, &index)
            ),
        ));
    }
    let a = ppmi::ppmi(n, &counts);
    drop(counts);
    progress.finish();

    let svd = rsvd::truncated_svd(
        &a,
        cfg.dim,
        cfg.oversample,
        cfg.power_iterations,
        seed,
        progress,
    );
    let vectors = item_vectors(&svd, cfg.dim);
    let without = (0..n).filter(|&i| a.row(i).0.is_empty()).count() as u64;
    tracing::info!(
        items = n,
        never_seen = seen.iter().filter(|s| !**s).count(),
        without_signal = without,
        ppmi_nonzeros = a.nnz(),
        components = svd.sigma.len(),
        sigma_first = svd.sigma.first().copied().unwrap_or(0.0),
        sigma_last = svd.sigma.last().copied().unwrap_or(0.0),
        "collaborative embeddings"
    );
    if svd.sigma.len() < cfg.dim {
        tracing::warn!(
            "the PPMI matrix has only {} non-trivial directions; components {}..{} of every \
             vector are zero",
            svd.sigma.len(),
            svd.sigma.len() + 1,
            cfg.dim
        );
    }
    Ok(Collab {
        vectors,
        without_interactions: without,
        unknown_events: inter.unknown_events,
        events: inter.rows,
        users: inter.users,
        nonzeros: a.nnz() as u64,
    })
}

/// Rows of U·Σ^{1/2}, zero-padded to `dim` columns, L2-normalised (zero rows stay zero).
fn item_vectors(svd: &rsvd::TruncatedSvd, dim: usize) -> Matrix {
    let r = svd.sigma.len();
    let scale: Vec<f64> = svd.sigma.iter().map(|s| s.sqrt()).collect();
    let mut m = Matrix::zeros(svd.n, dim);
    for i in 0..svd.n {
        let row: Vec<f64> = (0..r).map(|j| svd.u[i * r + j] * scale[j]).collect();
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (o, v) in m.row_mut(i).iter_mut().zip(&row) {
                *o = (v / norm) as f32;
            }
        }
    }
    m
}

/// [`compute`], then write the vectors to `dest` with their provenance in the footer: what
/// `sidtool collab` and a GenSAR `build` both do.
pub fn compute_to_file(
    interactions: &Path,
    items: &ItemIds,
    cfg: &CollabConfig,
    seed: u64,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(Collab, CollabSummary)> {
    // Refused before the work: `dest` must be neither the interactions nor the catalogue the
    // ids came from (noted by their reader).
    crate::fs::inputs::check_output(dest, crate::fs::inputs::OutputKind::File, &[interactions])?;
    let start = std::time::Instant::now();
    let c = compute(interactions, items, cfg, seed, progress)?;
    let summary = c.summary(start.elapsed().as_secs_f64());
    write_with_meta(
        dest,
        items,
        &c.vectors,
        &cfg.column,
        provenance(cfg, seed, &summary),
    )?;
    Ok((c, summary))
}

/// Write `collab.parquet`: `item_id` and the vectors as `column`
/// (FixedSizeList<Float32, dim>), zstd, atomically. See schemas/collab.md.
pub fn write(path: &Path, ids: &ItemIds, vectors: &Matrix, column: &str) -> Result<()> {
    write_with_meta(path, ids, vectors, column, Vec::new())
}

/// [`write`] with extra footer key/values (see [`provenance`]).
pub(crate) fn write_with_meta(
    path: &Path,
    ids: &ItemIds,
    vectors: &Matrix,
    column: &str,
    meta: Vec<(String, String)>,
) -> Result<()> {
    if ids.len() != vectors.rows {
        return Err(Error::Config(format!(
            "{} ids but {} vectors to write to {}",
            ids.len(),
            vectors.rows,
            path.display()
        )));
    }
    let mut w = EmbeddingWriter::create_column(path, ids.data_type(), vectors.cols, column, meta)?;
    for start in (0..ids.len()).step_by(ROW_GROUP_ROWS) {
        let end = (start + ROW_GROUP_ROWS).min(ids.len());
        let block = Matrix::new(
            vectors.data[start * vectors.cols..end * vectors.cols].to_vec(),
            end - start,
            vectors.cols,
        );
        w.write_rows(ids.to_arrow(start, end), &block)?;
    }
    w.finish()
}

/// Footer entry `sidtool:collab`: the settings, seed and summary that made the vectors. The
/// run time is left out: it differs run to run, and the same input and seed must give the
/// same bytes (the CLI prints it instead).
pub(crate) fn provenance(
    cfg: &CollabConfig,
    seed: u64,
    summary: &CollabSummary,
) -> Vec<(String, String)> {
    let mut summary = serde_json::to_value(summary).expect("summary serialises");
    if let Some(m) = summary.as_object_mut() {
        m.remove("seconds");
    }
    let v = serde_json::json!({ "config": cfg, "seed": seed, "summary": summary });
    vec![("sidtool:collab".into(), v.to_string())]
}

#[cfg(test)]
mod tests;
