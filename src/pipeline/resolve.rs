//! Global collision resolution as its own step (`sidtool resolve`): raw codes written by many
//! workers (each partition coded with `assign --dedup none`, on as many machines as needed)
//! are concatenated in the order given and resolved exactly as `assign` resolves the whole
//! catalogue, so the final IDs are the single-machine ones.

use super::assign::Assigned;
use super::existing::prepend;
use super::stats::make_stats;
use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::ids::dedup;
use crate::ids::sid_table::{self, Expect, SidMeta, SidTable};
use crate::item_id::{IdKey, ItemIds};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The Parquet part files of `inputs`, in the order given: files as they are, directories
/// and globs expanded as every reading command expands them (see `io::parts`).
pub fn part_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        out.extend(crate::io::parts::files(p)?);
    }
    Ok(out)
}

/// What every part must agree on: the footer of one coding run, less its dedup settings.
fn same_run(a: &SidMeta, b: &SidMeta) -> bool {
    (
        &a.method,
        &a.codebook_sizes,
        &a.token_format,
        &a.quantizer_fingerprint,
    ) == (
        &b.method,
        &b.codebook_sizes,
        &b.token_format,
        &b.quantizer_fingerprint,
    )
}

/// One part's raw codes, checked. A part without sidtool's footer (written by Spark or Ray
/// from `encode` batches, whose engines drop schema metadata) is taken as raw codes of
/// `coded_by` (the footer of the quantizer's raw codes), when given.
fn read_part(path: &Path, coded_by: Option<&SidMeta>) -> Result<(SidTable, SidMeta)> {
    let t = sid_table::read(path)?;
    let meta = match (t.meta.clone(), coded_by) {
        (Some(m), Some(q)) if !same_run(&m, q) => {
            return Err(Error::input(
                path,
                None,
                None,
                "was coded by another quantizer or ID format than --quantizer (method, codebook \
                 sizes, token format and quantizer fingerprint must agree)",
            ));
        }
        (Some(m), _) => m,
        (None, Some(q)) => q.clone(),
        (None, None) => {
            return Err(Error::input(
                path,
                None,
                None,
                "has no sidtool footer: resolve takes the raw codes `sidtool assign --dedup none` \
                 (or the Python `Quantizer.encode`) writes; for parts an engine rewrote without \
                 it, name the quantizer that coded them with --quantizer",
            ));
        }
    };
    if meta.dedup != Dedup::None.name() {
        return Err(Error::input(
            path,
            Some("codes"),
            None,
            format!(
                "was already resolved (--dedup {}); resolve takes raw codes: code the partitions \
                 with `sidtool assign --dedup none`",
                meta.dedup
            ),
        ));
    }
    if meta.dual.is_some() || t.cid.is_some() {
        return Err(Error::input(
            path,
            Some("cid_codes"),
            None,
            "is a GenSAR table (SID and CID); resolve handles single-ID tables so far: assign \
             GenSAR IDs on one machine",
        ));
    }
    t.validate(&Expect {
        sizes: Some(&meta.codebook_sizes),
        cid_sizes: None,
        allow_shared_ids: true,
    })?;
    Ok((t, meta))
}

/// Resolve the raw codes of `parts` (see [`part_files`]) with `strategy`: the result is what
/// `assign` with that strategy gives for the concatenated parts, row for row; with `existing`
/// (IDs handed out earlier by the same quantizer), what `assign --existing` gives: those items
/// keep their IDs and come first, new items get IDs none of them holds.
///
/// `coded_by`: the footer of the quantizer's raw codes ([`super::raw_meta`]), for parts that
/// lack one, and to check the parts that have one against.
pub fn resolve(
    parts: &[PathBuf],
    strategy: Dedup,
    existing: Option<&SidTable>,
    coded_by: Option<&SidMeta>,
) -> Result<Assigned> {
    if strategy == Dedup::Reassign {
        return Err(Error::Config(
            "resolve supports --dedup suffix and none: reassign moves items to the nearest free \
             code, which needs every item's vector; use `sidtool assign` on one machine"
                .into(),
        ));
    }
    let mut meta: Option<(SidMeta, PathBuf)> = None;
    let mut ids: Option<ItemIds> = None;
    let mut raw: Vec<u16> = Vec::new();
    // Item id → (part, row), to name both places of an item listed twice.
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for (k, p) in parts.iter().enumerate() {
        let (t, m) = read_part(p, coded_by)?;
        match &meta {
            None => meta = Some((m.clone(), p.clone())),
            Some((first, from)) if !same_run(first, &m) => {
                return Err(Error::input(
                    p,
                    None,
                    None,
                    format!(
                        "was coded by another quantizer or ID format than {} (method, codebook \
                         sizes, token format and quantizer fingerprint must agree)",
                        from.display()
                    ),
                ));
            }
            _ => {}
        }
        for i in 0..t.ids.len() {
            let key = match t.ids.key(i) {
                IdKey::Int(v) => format!("i{v}"),
                IdKey::Str(s) => format!("s{s}"),
            };
            if let Some((pk, row)) = seen.insert(key, (k, i)) {
                return Err(Error::input(
                    p,
                    Some("item_id"),
                    Some(i as u64),
                    format!(
                        "item {} is also in {} (row {row}): partitions must not overlap",
                        t.ids.display(i),
                        parts[pk].display()
                    ),
                ));
            }
        }
        if let Some(all) = &ids
            && !all.same_kind(&t.ids)
        {
            return Err(Error::input(
                p,
                Some("item_id"),
                None,
                "has integer item ids where other parts have strings (or the reverse)",
            ));
        }
        raw.extend_from_slice(&t.codes);
        match &mut ids {
            Some(all) => all.extend(t.ids),
            None => ids = Some(t.ids),
        }
    }
    let (meta, _) = meta.ok_or_else(|| Error::Config("resolve needs at least one part".into()))?;
    let ids = ids.expect("a part was read");
    let sizes = &meta.codebook_sizes;
    let levels = sizes.len();
    if let Some(ex) = existing {
        check_existing(ex, &meta, strategy)?;
    }
    // With --existing, the items it holds keep their IDs: only the others are resolved.
    let (input_ids, new_ids, new_raw) = match existing {
        None => (None, ids, raw),
        Some(ex) => {
            let known: std::collections::HashSet<IdKey> =
                (0..ex.ids.len()).map(|i| ex.ids.key(i)).collect();
            let fresh: Vec<usize> = (0..ids.len())
                .filter(|&i| !known.contains(&ids.key(i)))
                .collect();
            let fresh_raw = fresh
                .iter()
                .flat_map(|&i| raw[i * levels..(i + 1) * levels].iter().copied())
                .collect();
            (Some(ids.clone()), ids.select(&fresh), fresh_raw)
        }
    };
    let resolution = dedup::resolve(
        &new_raw,
        levels,
        &new_ids,
        strategy,
        sizes[levels - 1],
        existing.map(|e| dedup::Existing {
            codes: &e.codes,
            width: e.width,
        }),
        |_| unreachable!("reassign is refused above"),
    )?;
    let meta = SidMeta {
        sidtool_version: crate::VERSION.into(),
        dedup: strategy.name(),
        suffix_level: resolution.suffix_level,
        ..meta
    };
    let (ids, raw, resolution) = match existing {
        None => (new_ids, new_raw, resolution),
        Some(ex) => {
            let mut all_ids = ex.ids.clone();
            all_ids.extend(new_ids);
            let cols = ex.sid_columns();
            let (raw, resolution) = prepend(&cols, &all_ids, levels, new_raw, resolution);
            (all_ids, raw, resolution)
        }
    };
    let mut stats = make_stats(&ids, &raw, &resolution, &meta, None);
    if let (Some(ex), Some(input)) = (existing, &input_ids) {
        let present: std::collections::HashSet<IdKey> =
            (0..input.len()).map(|i| input.key(i)).collect();
        stats.sid.resolution.existing_items = ex.ids.len() as u64;
        stats.sid.resolution.existing_not_in_input = (0..ex.ids.len())
            .filter(|&i| !present.contains(&ex.ids.key(i)))
            .count() as u64;
    }
    Ok(Assigned {
        ids,
        raw,
        resolution,
        cid: None,
        stats,
        meta,
    })
}

/// The existing table must come from the run that coded the parts (same quantizer, codebook
/// sizes and token format) and have been resolved with `strategy`, as `assign --existing`
/// requires.
fn check_existing(ex: &SidTable, parts: &SidMeta, strategy: Dedup) -> Result<()> {
    let Some(m) = &ex.meta else {
        return Err(Error::input(
            &ex.path,
            None,
            None,
            "has no sidtool footer: --existing takes a sids.parquet that sidtool wrote",
        ));
    };
    let problem = if m.dual.is_some() || ex.cid.is_some() {
        Some("is a GenSAR table; resolve handles single-ID tables so far".to_string())
    } else if !same_run(m, parts) {
        Some(
            "was made by another quantizer or ID format than the parts (method, codebook sizes, \
             token format and quantizer fingerprint must agree)"
                .to_string(),
        )
    } else if m.dedup != strategy.name() {
        Some(format!(
            "was made with --dedup {}, not {}",
            m.dedup,
            strategy.name()
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        return Err(Error::input(&ex.path, None, None, p));
    }
    // New IDs are resolved against these: a flaw here would be copied into the output.
    ex.validate(&Expect {
        sizes: Some(&m.codebook_sizes),
        cid_sizes: None,
        allow_shared_ids: false,
    })
}
