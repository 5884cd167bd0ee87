//! An `--existing` SID table: checks that it fits the quantizer and the ID settings, and how
//! its rows are put before the new items'.

use super::kinds::kind_levels;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::dedup::{self, Resolution};
use crate::ids::sid_table::{Expect, IdColumns, SidTable};
use crate::item_id::ItemIds;
use crate::quant::Quantizer;
use crate::quant::kind::IdKind;

/// The existing table must come from the same quantizer shape and ID format.
pub(super) fn check_existing(ex: &SidTable, q: &dyn Quantizer, cfg: &Config) -> Result<()> {
    let sid_sizes: Vec<usize> = kind_levels(q, IdKind::Sid)
        .iter()
        .map(|&l| q.codebook_sizes()[l])
        .collect();
    if let Some(m) = &ex.meta {
        let problem = if m.codebook_sizes != sid_sizes {
            Some(format!(
                "was made with codebook sizes {:?}, the quantizer has {sid_sizes:?}",
                m.codebook_sizes
            ))
        } else if m.token_format != cfg.ids.token_format {
            Some(format!(
                "uses token format {:?}, not {:?}",
                m.token_format, cfg.ids.token_format
            ))
        } else if m.dedup != cfg.ids.dedup.name() {
            Some(format!(
                "was made with --dedup {}, not {}",
                m.dedup,
                cfg.ids.dedup.name()
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(Error::Config(format!("the existing IDs table {p}")));
        }
    }
    if q.dual().is_some() != ex.cid.is_some() {
        return Err(Error::Config(format!(
            "{} {} CID columns but the quantizer is {}",
            ex.path.display(),
            if ex.cid.is_some() { "has" } else { "has no" },
            q.method().name()
        )));
    }
    let mut cid_sizes = None;
    if let Some(d) = q.dual() {
        let sizes: Vec<usize> = d
            .kind_levels(IdKind::Cid)
            .iter()
            .map(|&l| q.codebook_sizes()[l])
            .collect();
        if let Some(md) = ex.meta.as_ref().and_then(|m| m.dual.as_ref()) {
            let problem = if (md.shared_levels, md.semantic_levels, md.collab_levels)
                != (d.shared_levels, d.semantic_levels, d.collab_levels)
            {
                Some(format!(
                    "splits its levels {}/{}/{} (shared/semantic/collaborative), the quantizer \
                     {}/{}/{}",
                    md.shared_levels,
                    md.semantic_levels,
                    md.collab_levels,
                    d.shared_levels,
                    d.semantic_levels,
                    d.collab_levels
                ))
            } else if md.cid_codebook_sizes != sizes {
                Some(format!(
                    "has CID codebook sizes {:?}, the quantizer {sizes:?}",
                    md.cid_codebook_sizes
                ))
            } else if (md.sid_prefix.as_str(), md.cid_prefix.as_str())
                != (cfg.ids.sid_prefix.as_str(), cfg.ids.cid_prefix.as_str())
            {
                Some(format!(
                    "spells its own levels with prefixes {:?}/{:?}, not {:?}/{:?}",
                    md.sid_prefix, md.cid_prefix, cfg.ids.sid_prefix, cfg.ids.cid_prefix
                ))
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(Error::Config(format!("the existing IDs table {p}")));
            }
        }
        cid_sizes = Some(sizes);
    }
    // Unique ids, codes in range, unique final IDs: new IDs are resolved against these, so a
    // flaw here would be copied into the output.
    ex.validate(&Expect {
        sizes: Some(&sid_sizes),
        cid_sizes: cid_sizes.as_deref(),
        allow_shared_ids: false,
    })?;
    check_same_model(ex, q)
}

/// A table whose footer names another model's fingerprint was coded by that model.
pub(super) fn check_same_model(t: &SidTable, q: &dyn Quantizer) -> Result<()> {
    let recorded = t
        .meta
        .as_ref()
        .and_then(|m| m.quantizer_fingerprint.as_deref());
    match recorded {
        Some(f) if f != q.fingerprint() => Err(Error::Config(format!(
            "{} was made by a different quantizer (fingerprint {}…, this one is {}…): its codes \
             mean different things; pass the quantizer that made it",
            t.path.display(),
            &f[..f.len().min(12)],
            &q.fingerprint()[..12]
        ))),
        _ => Ok(()),
    }
}

/// The quantizer's own codes of an existing ID column (before any `reassign` moves).
pub(super) fn raw_codes(cols: &IdColumns, levels: usize) -> Vec<u16> {
    match &cols.original_codes {
        Some(o) => o.clone(),
        None => cols
            .codes
            .chunks(cols.width)
            .flat_map(|c| c[..levels].iter().copied())
            .collect(),
    }
}

/// One ID's existing rows first (unchanged), then the new ones; `all_ids` lists both.
pub(super) fn prepend(
    ex: &IdColumns,
    all_ids: &ItemIds,
    levels: usize,
    raw: Vec<u16>,
    res: Resolution,
) -> (Vec<u16>, Resolution) {
    let mut all_raw = raw_codes(ex, levels);
    all_raw.extend(raw);
    let mut codes = ex.codes.clone();
    codes.extend(res.codes);
    // Group sizes over the whole table: new items can join an existing item's tuple.
    let (order, bounds) = dedup::sorted_groups(&all_raw, levels, all_ids);
    let mut group_size = vec![0u32; all_ids.len()];
    for &(s, e) in &bounds {
        for &i in &order[s..e] {
            group_size[i] = (e - s) as u32;
        }
    }
    (
        all_raw,
        Resolution {
            codes,
            group_size,
            ..res
        },
    )
}
