//! Statistics of an ID table before and after collision resolution, and the reconstruction
//! error per prefix length when the vectors and the quantizer are given (`sidtool stats`).

use super::existing::{check_same_model, raw_codes};
use super::kinds::{id_sq_errors, kind_levels, name_levels};
use super::source::Source;
use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::ids::dedup::Resolution;
use crate::ids::sid_table::{self, Expect, IdColumns, SidMeta};
use crate::ids::stats::{self, IdStats, ResolutionStats, Stats};
use crate::item_id::{IdKey, ItemIds};
use crate::quant::kind::IdKind;
use crate::quant::{self, Quantizer};
use std::collections::HashMap;
use std::path::Path;

/// One ID kind's statistics before and after resolution.
pub(super) fn id_stats(
    ids: &ItemIds,
    raw: &[u16],
    res: &Resolution,
    sizes: &[usize],
    recon: Option<Vec<f64>>,
) -> IdStats {
    IdStats {
        codebook_sizes: sizes.to_vec(),
        before: stats::code_stats(raw, sizes.len(), ids, sizes),
        after: stats::code_stats(&res.codes, res.width, ids, sizes),
        resolution: ResolutionStats {
            suffix_level: res.suffix_level,
            moved_items: res.moved as u64,
            unresolved_by_reassign: res.unresolved as u64,
            existing_items: 0,
            existing_not_in_input: 0,
        },
        relative_reconstruction_error: recon,
    }
}

/// Statistics before and after resolution.
pub(crate) fn make_stats(
    ids: &ItemIds,
    raw: &[u16],
    res: &Resolution,
    meta: &SidMeta,
    recon: Option<Vec<f64>>,
) -> Stats {
    Stats {
        sidtool_version: crate::VERSION.into(),
        method: Some(meta.method.clone()),
        dedup: meta.dedup.clone(),
        sid: id_stats(ids, raw, res, &meta.codebook_sizes, recon),
        cid: None,
        items_without_collab_vector: None,
    }
}

/// Recompute statistics from a sids.parquet (what `sidtool stats` does). With `vectors` (the
/// items' embeddings and the quantizer that coded them) the reconstruction error per prefix
/// length is computed too, from the quantizer's own codes (`original_codes` after reassign).
pub fn stats_of_table(path: &Path, vectors: Option<(&Source, &dyn Quantizer)>) -> Result<Stats> {
    let t = sid_table::read(path)?;
    // A table without a footer is read as `dedup none`, as its statistics always have been.
    t.validate(&Expect {
        allow_shared_ids: t.meta.is_none(),
        ..Expect::default()
    })?;
    // Without a footer (a table an engine rewrote, or another tool's codes) every code column
    // is a level of the quantizer, each as large as its largest code + 1.
    let inferred: Vec<usize> = (0..t.width)
        .map(|l| {
            let top = t.codes.iter().skip(l).step_by(t.width.max(1)).max();
            top.map_or(1, |&c| c as usize + 1)
        })
        .collect();
    let meta = t.meta.clone().unwrap_or_else(|| SidMeta {
        sidtool_version: "unknown".into(),
        method: "unknown".into(),
        codebook_sizes: inferred,
        dedup: Dedup::None.name(),
        suffix_level: false,
        token_format: crate::ids::tokens::DEFAULT_TOKEN_FORMAT.into(),
        quantizer_fingerprint: None,
        dual: None,
    });
    let sid_cols = IdColumns {
        codes: t.codes.clone(),
        width: t.width,
        group_size: t.group_size.clone(),
        original_codes: t.original_codes.clone(),
    };
    let mut cols = vec![(IdKind::Sid, &sid_cols)];
    if let Some(c) = &t.cid {
        if meta.dual.is_none() {
            return Err(Error::input(
                path,
                Some("cid_codes"),
                None,
                "has CID columns but no GenSAR metadata in its footer",
            ));
        }
        cols.push((IdKind::Cid, c));
    }
    // Each ID's quantizer codes, and how the table's codes relate to them.
    let mut parts = Vec::new();
    for &(kind, c) in &cols {
        let sizes = meta.sizes(kind);
        let levels = if sizes.is_empty() {
            c.width
        } else {
            sizes.len()
        };
        if c.width < levels {
            return Err(Error::input(
                path,
                Some(if kind == IdKind::Sid {
                    "codes"
                } else {
                    "cid_codes"
                }),
                None,
                format!(
                    "has {} codes per item but its metadata lists {levels} levels",
                    c.width
                ),
            ));
        }
        let raw = raw_codes(c, levels);
        let suffix = match kind {
            IdKind::Sid => meta.suffix_level,
            IdKind::Cid => meta.dual.as_ref().is_some_and(|d| d.cid_suffix_level),
        };
        let res = Resolution {
            codes: c.codes.clone(),
            width: c.width,
            suffix_level: suffix,
            group_size: c.group_size.clone(),
            moved: raw
                .chunks(levels)
                .zip(c.codes.chunks(c.width))
                .filter(|(a, b)| a[..] != b[..levels])
                .count(),
            unresolved: 0,
        };
        parts.push((kind, raw, res, levels));
    }
    let mut no_collab = None;
    let recon: Vec<Option<Vec<f64>>> = match vectors {
        Some((source, q)) => {
            let sid_sizes: Vec<usize> = kind_levels(q, IdKind::Sid)
                .iter()
                .map(|&l| q.codebook_sizes()[l])
                .collect();
            if !meta.codebook_sizes.is_empty() && meta.codebook_sizes != sid_sizes {
                return Err(Error::Config(format!(
                    "{} was made by a quantizer with codebook sizes {:?}, not {:?}: pass the quantizer that made it",
                    path.display(),
                    meta.codebook_sizes,
                    sid_sizes
                )));
            }
            t.validate(&Expect {
                sizes: Some(&sid_sizes),
                allow_shared_ids: t.meta.is_none(),
                ..Expect::default()
            })?;
            check_same_model(&t, q)?;
            if q.dual().is_some() != t.cid.is_some() {
                return Err(Error::Config(format!(
                    "{} and the {} quantizer do not make the same kinds of ID",
                    path.display(),
                    q.method().name()
                )));
            }
            let all = match (q.dual(), &parts[..]) {
                (Some(d), [(_, s, ..), (_, c, ..)]) => d.join(s, c),
                _ => parts[0].1.clone(),
            };
            let (errors, zero) = reconstruction(path, &t.ids, &all, source, q)?;
            no_collab = q.dual().map(|_| zero);
            errors.into_iter().map(Some).collect()
        }
        None => vec![None; parts.len()],
    };
    let mut parts = parts.into_iter().zip(recon);
    let ((_, raw, res, _), r) = parts.next().expect("a SID");
    let mut s = make_stats(&t.ids, &raw, &res, &meta, r);
    if let Some(((_, raw, res, _), r)) = parts.next() {
        let mut c = id_stats(&t.ids, &raw, &res, meta.sizes(IdKind::Cid), r);
        name_levels(&mut c, &meta.format(IdKind::Cid)?);
        name_levels(&mut s.sid, &meta.format(IdKind::Sid)?);
        s.cid = Some(c);
        s.items_without_collab_vector = no_collab;
    }
    Ok(s)
}

/// Per ID kind, Σ‖x − x̂_m‖² / Σ‖x‖² per prefix length, joining the vectors to the table on
/// item id; `raw` holds all the quantizer's codes per item. Also counts, for GenSAR, the items
/// whose collaborative vector is missing or zero.
pub(super) fn reconstruction(
    table: &Path,
    ids: &ItemIds,
    raw: &[u16],
    source: &Source,
    q: &dyn Quantizer,
) -> Result<(Vec<Vec<f64>>, u64)> {
    let levels = q.levels();
    if raw.len() != ids.len() * levels {
        return Err(Error::Config(format!(
            "{} does not have the quantizer's {levels} levels",
            table.display()
        )));
    }
    let row: HashMap<IdKey, usize> = (0..ids.len()).map(|i| (ids.key(i), i)).collect();
    let mut err: Vec<(Vec<f64>, f64)> = Vec::new();
    let mut seen = 0usize;
    let mut zero = 0u64;
    source.check_dual(q)?;
    source.for_each(|first, bids, x| {
        quant::check_dim(q, x.cols, source.path(), source.column())?;
        if let Some(d) = q.dual() {
            zero += (0..x.rows)
                .filter(|&i| x.row(i)[d.semantic_dim..].iter().all(|&v| v == 0.0))
                .count() as u64;
        }
        let mut codes = Vec::with_capacity(x.rows * levels);
        for i in 0..x.rows {
            let r = *row.get(&bids.key(i)).ok_or_else(|| {
                Error::input(
                    source.path(),
                    None,
                    Some((first + i) as u64),
                    format!("item {} is not in {}", bids.display(i), table.display()),
                )
            })?;
            codes.extend_from_slice(&raw[r * levels..(r + 1) * levels]);
        }
        let batch = id_sq_errors(q, x, &codes)?;
        if err.is_empty() {
            err = batch;
        } else {
            for (acc, (e, n)) in err.iter_mut().zip(batch) {
                acc.0.iter_mut().zip(e).for_each(|(a, v)| *a += v);
                acc.1 += n;
            }
        }
        seen += x.rows;
        Ok(())
    })?;
    if seen != ids.len() {
        return Err(Error::input(
            source.path(),
            None,
            None,
            format!(
                "has {seen} items but {} lists {}",
                table.display(),
                ids.len()
            ),
        ));
    }
    Ok((
        err.iter()
            .map(|(e, n)| e.iter().map(|v| v / n.max(f64::MIN_POSITIVE)).collect())
            .collect(),
        zero,
    ))
}
