//! `assign`: encode every item, resolve collisions (keeping an `--existing` table's IDs), and
//! compute the statistics.

use super::existing::{check_existing, prepend};
use super::kinds::{id_sq_errors, kind_codes, kind_levels, kinds, name_levels};
use super::source::{Source, gather_rows};
use super::stats::{id_stats, make_stats};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::dedup::{self, Existing, Resolution};
use crate::ids::sid_table::{self, CidPart, DualMeta, SidMeta, SidTable};
use crate::ids::stats::Stats;
use crate::io::embeddings;
use crate::item_id::{IdKey, ItemIds};
use crate::progress::Progress;
use crate::quant::kind::IdKind;
use crate::quant::{self, Quantizer};
use std::collections::HashMap;
use std::path::Path;

/// Everything `assign` produces.
pub struct Assigned {
    pub ids: ItemIds,
    /// The quantizer's codes of the SID, rows × its levels.
    pub raw: Vec<u16>,
    /// Final SIDs.
    pub resolution: Resolution,
    /// GenSAR: the CID's quantizer codes and final CIDs.
    pub cid: Option<CidAssigned>,
    pub stats: Stats,
    pub meta: SidMeta,
}

pub struct CidAssigned {
    pub raw: Vec<u16>,
    pub resolution: Resolution,
}

/// Encode every row of `source`, resolve collisions and compute statistics.
///
/// With `existing` (an earlier sids.parquet made with the same quantizer), items it already
/// lists keep their IDs and are not re-encoded; new items get IDs that no existing item holds;
/// the result is the existing table followed by the new items. GenSAR's SIDs and CIDs are
/// resolved each on its own: both are unique after `suffix` or `reassign`.
pub fn assign(
    source: &Source,
    q: &dyn Quantizer,
    cfg: &Config,
    existing: Option<&SidTable>,
    progress: &dyn Progress,
) -> Result<Assigned> {
    // Noted so that writing the SIDs over one of them is refused.
    crate::fs::inputs::note(source.path());
    if let Some(c) = &cfg.input.collab {
        crate::fs::inputs::note(c);
    }
    let levels = q.levels();
    let sizes = q.codebook_sizes().to_vec();
    let kinds = kinds(q);
    let device = crate::device::open(cfg.quantizer.device)?;
    if let Some(ex) = existing {
        check_existing(ex, q, cfg)?;
    }
    let known: HashMap<IdKey, usize> = existing
        .map(|e| (0..e.ids.len()).map(|i| (e.ids.key(i), i)).collect())
        .unwrap_or_default();
    let mut ids: Option<ItemIds> = None;
    // Every input id, kept apart from the new ones only with --existing (otherwise they agree).
    let mut input_ids: Option<ItemIds> = None;
    let mut file_rows = Vec::new();
    let mut raw = Vec::new();
    let mut err: Vec<(Vec<f64>, f64)> = kinds
        .iter()
        .map(|&k| (vec![0f64; kind_levels(q, k).len()], 0f64))
        .collect();
    source.check_dual(q)?;
    // GenSAR: encoded rows whose collaborative vector is missing or zero.
    let mut no_collab = 0u64;
    progress.start("assign (rows)", None);
    source.for_each(|first, bids, x| {
        quant::check_dim(q, x.cols, source.path(), source.column())?;
        if let Some(ex) = existing
            && !bids.same_kind(&ex.ids)
        {
            return Err(Error::input(
                source.path(),
                None,
                None,
                "item ids are integers in one table and strings in the other (see --existing)",
            ));
        }
        let fresh: Vec<usize> = (0..x.rows)
            .filter(|&i| !known.contains_key(&bids.key(i)))
            .collect();
        let (bids_new, x_new) = if fresh.len() == x.rows {
            (bids.clone(), None)
        } else {
            (bids.select(&fresh), Some(x.gather(&fresh)))
        };
        let x_new = x_new.as_ref().unwrap_or(x);
        if let Some(d) = q.dual() {
            no_collab += (0..x_new.rows)
                .filter(|&i| x_new.row(i)[d.semantic_dim..].iter().all(|&v| v == 0.0))
                .count() as u64;
        }
        let codes = q.encode_on(x_new, &device)?;
        for (acc, (e, n)) in err.iter_mut().zip(id_sq_errors(q, x_new, &codes)?) {
            acc.0.iter_mut().zip(e).for_each(|(a, v)| *a += v);
            acc.1 += n;
        }
        raw.extend_from_slice(&codes);
        file_rows.extend(fresh.iter().map(|&i| first + i));
        extend(&mut ids, bids_new);
        if existing.is_some() {
            extend(&mut input_ids, bids.clone());
        }
        progress.advance(x.rows as u64);
        Ok(())
    })?;
    progress.finish();
    let ids = ids.ok_or_else(|| Error::input(source.path(), None, None, "contains no rows"))?;
    if q.dual().is_some() && no_collab > 0 {
        if no_collab as usize == file_rows.len() {
            return Err(Error::input(
                source.path(),
                None,
                None,
                format!(
                    "none of its {} items has a collaborative vector in {}: are the item ids \
                     the same (and the same kind, integers or strings)?",
                    file_rows.len(),
                    source.collab_origin()
                ),
            ));
        }
        tracing::warn!(
            "{no_collab} of {} items have no collaborative vector in {}; they are coded from zeros",
            file_rows.len(),
            source.collab_origin()
        );
    }
    let input_ids = input_ids.as_ref().unwrap_or(&ids);
    if let Source::File { path, input, .. } = source {
        embeddings::check_unique(input_ids, path, &input.id_column)?;
    }
    let absent = existing.map_or(0, |ex| {
        let present: std::collections::HashSet<IdKey> =
            (0..input_ids.len()).map(|i| input_ids.key(i)).collect();
        (0..ex.ids.len())
            .filter(|&i| !present.contains(&ex.ids.key(i)))
            .count() as u64
    });
    // Resolve each ID kind on its own.
    let mut resolved = Vec::new();
    for &kind in kinds {
        let own = kind_levels(q, kind);
        let last = *own.last().expect("every ID has a level");
        let kraw = kind_codes(q, &raw, kind);
        let fixed = existing.and_then(|e| match kind {
            IdKind::Sid => Some(Existing {
                codes: &e.codes,
                width: e.width,
            }),
            IdKind::Cid => e.cid.as_ref().map(|c| Existing {
                codes: &c.codes,
                width: c.width,
            }),
        });
        let res = dedup::resolve(
            &kraw,
            own.len(),
            &ids,
            cfg.ids.dedup,
            sizes[last],
            fixed,
            |need| {
                let rows: Vec<usize> = need.iter().map(|&i| file_rows[i]).collect();
                let x = gather_rows(source, &rows)?;
                let codes: Vec<u16> = need
                    .iter()
                    .flat_map(|&i| raw[i * levels..(i + 1) * levels].iter().copied())
                    .collect();
                q.level_distances(&x, &codes, last)
            },
        )?;
        resolved.push((kraw, res));
    }
    let recon: Vec<Option<Vec<f64>>> = err
        .iter()
        .map(|(e, n)| (*n > 0.0).then(|| e.iter().map(|v| v / n).collect()))
        .collect();
    let kind_sizes =
        |kind: IdKind| -> Vec<usize> { kind_levels(q, kind).iter().map(|&l| sizes[l]).collect() };
    let meta = SidMeta {
        sidtool_version: crate::VERSION.into(),
        method: q.method().name(),
        codebook_sizes: kind_sizes(IdKind::Sid),
        dedup: cfg.ids.dedup.name(),
        suffix_level: resolved[0].1.suffix_level,
        token_format: cfg.ids.token_format.clone(),
        quantizer_fingerprint: Some(q.fingerprint()),
        dual: q.dual().map(|d| DualMeta {
            shared_levels: d.shared_levels,
            semantic_levels: d.semantic_levels,
            collab_levels: d.collab_levels,
            cid_codebook_sizes: kind_sizes(IdKind::Cid),
            cid_suffix_level: resolved[1].1.suffix_level,
            sid_prefix: cfg.ids.sid_prefix.clone(),
            cid_prefix: cfg.ids.cid_prefix.clone(),
        }),
    };
    let mut resolved = resolved.into_iter();
    let (sid_raw, sid_res) = resolved.next().expect("a SID");
    let cid = resolved.next();
    let (ids, raw, resolution, cid) = match existing {
        Some(ex) => {
            let mut all_ids = ex.ids.clone();
            all_ids.extend(ids);
            let sid_cols = ex.sid_columns();
            let n_sid = kind_levels(q, IdKind::Sid).len();
            let (raw, resolution) = prepend(&sid_cols, &all_ids, n_sid, sid_raw, sid_res);
            let cid = match (cid, &ex.cid) {
                (Some((craw, cres)), Some(cols)) => {
                    let n_cid = kind_levels(q, IdKind::Cid).len();
                    Some(prepend(cols, &all_ids, n_cid, craw, cres))
                }
                (None, _) => None,
                (Some(_), None) => unreachable!("check_existing requires CID columns"),
            };
            (all_ids, raw, resolution, cid)
        }
        None => (ids, sid_raw, sid_res, cid),
    };
    let cid = cid.map(|(raw, resolution)| CidAssigned { raw, resolution });
    let mut stats = make_stats(&ids, &raw, &resolution, &meta, recon[0].clone());
    stats.sid.resolution.existing_items = existing.map_or(0, |e| e.ids.len() as u64);
    stats.sid.resolution.existing_not_in_input = absent;
    if let Some(c) = &cid {
        let mut s = id_stats(
            &ids,
            &c.raw,
            &c.resolution,
            meta.sizes(IdKind::Cid),
            recon[1].clone(),
        );
        s.resolution.existing_items = stats.sid.resolution.existing_items;
        s.resolution.existing_not_in_input = absent;
        name_levels(&mut s, &meta.format(IdKind::Cid)?);
        name_levels(&mut stats.sid, &meta.format(IdKind::Sid)?);
        stats.cid = Some(s);
        stats.items_without_collab_vector = Some(no_collab);
    }
    Ok(Assigned {
        ids,
        raw,
        resolution,
        cid,
        stats,
        meta,
    })
}

pub(super) fn extend(acc: &mut Option<ItemIds>, more: ItemIds) {
    match acc {
        Some(all) => all.extend(more),
        None => *acc = Some(more),
    }
}

/// Write sids.parquet (and stats.json when `stats_path` is given).
pub fn write_assigned(a: &Assigned, sids_path: &Path, stats_path: Option<&Path>) -> Result<()> {
    // Both checked before either is written: a refused --stats must not leave new SIDs.
    for p in std::iter::once(sids_path).chain(stats_path) {
        crate::fs::inputs::check_output(p, crate::fs::inputs::OutputKind::File, &[])?;
    }
    let cid = a.cid.as_ref().map(|c| CidPart {
        resolution: &c.resolution,
        raw: &c.raw,
    });
    sid_table::write(sids_path, &a.ids, &a.resolution, &a.raw, &a.meta, cid)?;
    if let Some(p) = stats_path {
        crate::fs::atomic::write_json(p, &a.stats)?;
    }
    Ok(())
}
