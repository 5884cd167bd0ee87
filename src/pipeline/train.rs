//! Training a quantizer on (a sample of) an embeddings file, with the co-occurrence pairs of
//! the contrastive alignment and GenSAR's collaborative vectors.

use super::join::{CollabVectors, collab_vectors};
use super::scan::{Scan, scan};
use crate::config::{Config, Method};
use crate::error::{Error, Result};
use crate::item_id::ItemIds;
use crate::progress::Progress;
use crate::quant::{self, Quantizer};
use std::path::Path;

/// Train a quantizer on (a sample of) an embeddings file.
pub fn train(path: &Path, cfg: &Config, progress: &dyn Progress) -> Result<Box<dyn Quantizer>> {
    cfg.validate()?;
    // Noted so that saving the quantizer over (or around) one of them is refused.
    for p in [
        Some(path),
        cfg.input.collab.as_deref(),
        cfg.input.interactions.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        crate::fs::inputs::note(p);
    }
    let s = scan(
        path,
        &cfg.input,
        cfg.quantizer.train_sample,
        max_k(cfg),
        cfg.seed,
        None,
        progress,
    )?;
    let pairs = training_pairs(cfg, &s.sample_ids)?;
    if cfg.quantizer.method == Method::Gensar {
        let cv = collab_vectors(path, &cfg.input, &cfg.collab.column)?;
        return train_gensar(&s, &cv, cfg, &pairs, progress);
    }
    quant::train(&s.sample, &cfg.quantizer, cfg.seed, &pairs, progress)
}

/// GenSAR on the scanned semantic vectors joined with their collaborative vectors.
pub(super) fn train_gensar(
    s: &Scan,
    cv: &CollabVectors,
    cfg: &Config,
    pairs: &[(u32, u32)],
    progress: &dyn Progress,
) -> Result<Box<dyn Quantizer>> {
    let (x, missing) = cv.join(&s.sample_ids, &s.sample);
    if missing as usize == s.sample.rows {
        return Err(Error::input(
            &cv.path,
            Some(&cv.column),
            None,
            "has a vector for none of the training items: are the item ids the same?",
        ));
    }
    if missing > 0 {
        tracing::warn!(
            "{} of {} training items have no collaborative vector in {}; they train on zeros",
            missing,
            s.sample.rows,
            cv.path.display()
        );
    }
    quant::train_dual(&x, s.sample.cols, &cfg.quantizer, cfg.seed, pairs, progress)
}

/// Co-occurrence pairs among the training rows, from `[input] interactions` (none without).
pub(crate) fn training_pairs(cfg: &Config, sample_ids: &ItemIds) -> Result<Vec<(u32, u32)>> {
    let Some(path) = &cfg.input.interactions else {
        return Ok(Vec::new());
    };
    let index = crate::item_id::IdIndex::new(sample_ids);
    let inter = crate::io::interactions::read(path, &index)?;
    let v = &cfg.quantizer.rqvae;
    let p = crate::collab::cooccur::pairs(&inter, v.window, v.max_pairs_per_item, cfg.seed);
    tracing::info!(
        events = inter.rows,
        users = p.users,
        pairs = p.pairs.len(),
        unknown_item_events = p.unknown_events,
        capped = p.capped,
        "co-occurrence pairs"
    );
    if p.unknown_events > 0 {
        tracing::warn!(
            "{}: {} of {} interactions name items that are not among the training items; \
             they are skipped{}",
            path.display(),
            p.unknown_events,
            inter.rows,
            crate::io::interactions::kind_hint(&inter, &index)
        );
    }
    if p.pairs.is_empty()
        && matches!(cfg.quantizer.method, Method::RqVae | Method::Gensar)
        && v.contrastive_weight > 0.0
    {
        return Err(Error::input(
            path,
            Some(crate::io::interactions::ITEM_COLUMN),
            None,
            format!(
                "gives no co-occurring pair of training items within a window of {} (of {} \
                 interactions, {} name unknown items); the contrastive loss needs pairs",
                v.window, inter.rows, p.unknown_events
            ),
        ));
    }
    Ok(p.pairs)
}

pub(super) fn max_k(cfg: &Config) -> usize {
    cfg.quantizer
        .codebook_sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
}
