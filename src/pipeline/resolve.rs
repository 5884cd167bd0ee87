//! Global collision resolution as its own step (`sidtool resolve`): raw codes written by many
//! workers (each partition coded with `assign --dedup none`, on as many machines as needed)
//! are concatenated in the order given and resolved exactly as `assign` resolves the whole
//! catalogue, so the final IDs are the single-machine ones.

use super::assign::{Assigned, CidAssigned};
use super::by_id::{check_coded, gather_by_id};
use super::existing::prepend;
use super::kinds::{kind_levels, name_levels};
use super::source::Source;
use super::stats::{id_stats, make_stats};
use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::ids::dedup;
use crate::ids::sid_table::{self, DualMeta, Expect, SidMeta, SidTable};
use crate::item_id::{IdKey, ItemIds};
use crate::quant::Quantizer;
use crate::quant::kind::IdKind;
use std::path::{Path, PathBuf};

/// What `--dedup reassign` needs beyond the codes: the quantizer that coded the parts and the
/// vectors it coded them from (for GenSAR joined with the collaborative vectors, as `assign`
/// reads them). Only the colliding items' vectors are read, by item id, so memory grows with
/// the collisions and not with the catalogue.
pub struct Vectors<'a> {
    pub quantizer: &'a dyn Quantizer,
    pub source: Source<'a>,
}

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
    match (&meta.dual, &t.cid) {
        (Some(_), None) => {
            return Err(Error::input(
                path,
                Some("cid_codes"),
                None,
                "no such column, but the quantizer is GenSAR's: its parts carry the CIDs' raw \
                 codes too (`cid_codes`)",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::input(
                path,
                Some("cid_codes"),
                None,
                "has CID codes but the quantizer that coded it is not GenSAR's",
            ));
        }
        _ => {}
    }
    t.validate(&Expect {
        sizes: Some(&meta.codebook_sizes),
        cid_sizes: meta.dual.as_ref().map(|d| d.cid_codebook_sizes.as_slice()),
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
/// lack one, and to check the parts that have one against. `vectors`: required by
/// `Dedup::Reassign` (see [`Vectors`]), unused otherwise.
pub fn resolve(
    parts: &[PathBuf],
    strategy: Dedup,
    existing: Option<&SidTable>,
    coded_by: Option<&SidMeta>,
    vectors: Option<&Vectors>,
) -> Result<Assigned> {
    if strategy == Dedup::Reassign && vectors.is_none() {
        return Err(Error::Config(
            "--dedup reassign moves colliding items to the nearest free code, which needs their \
             vectors: give --embeddings (the vectors the parts were coded from) and --quantizer"
                .into(),
        ));
    }
    let mut meta: Option<(SidMeta, PathBuf)> = None;
    let mut ids: Option<ItemIds> = None;
    // Raw codes per ID kind: the SID's, and GenSAR's CID's.
    let mut raw: Vec<u16> = Vec::new();
    let mut cid_raw: Vec<u16> = Vec::new();
    // Where each read part starts in the concatenation, and which part it is, to name both
    // places of an item listed twice.
    let mut starts: Vec<(usize, &Path)> = Vec::with_capacity(parts.len());
    for p in parts {
        // Spark writes a part file for every partition, the empty ones too.
        if crate::io::parts::ParquetInput::open(p)?.num_rows() == 0 {
            continue;
        }
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
        starts.push((ids.as_ref().map_or(0, ItemIds::len), p));
        raw.extend_from_slice(&t.codes);
        if let Some(c) = &t.cid {
            cid_raw.extend_from_slice(&c.codes);
        }
        match &mut ids {
            Some(all) => all.extend(t.ids),
            None => ids = Some(t.ids),
        }
    }
    let (meta, first_part) = meta.ok_or_else(|| {
        Error::Config(format!(
            "no rows in the parts ({} {} read): resolve needs at least one coded item",
            parts.len(),
            if parts.len() == 1 { "file" } else { "files" }
        ))
    })?;
    let ids = ids.expect("a part was read");
    // An item in two places (a hash of the ids, not of formatted keys: ~20 bytes per item).
    if let Some((first, dup)) = ids.first_duplicate() {
        let locate = |g: usize| {
            let k = starts.partition_point(|&(s, _)| s <= g) - 1;
            (starts[k].1, g - starts[k].0)
        };
        let ((pk, row), (dk, drow)) = (locate(first), locate(dup));
        return Err(Error::input(
            dk,
            Some("item_id"),
            Some(drow as u64),
            format!(
                "item {} is also in {} (row {row}): partitions must not overlap",
                ids.display(dup),
                pk.display()
            ),
        ));
    }
    if let Some(ex) = existing {
        check_existing(ex, &meta, strategy)?;
    }
    if let Some(v) = vectors.filter(|_| strategy == Dedup::Reassign)
        && meta.quantizer_fingerprint.as_deref() != Some(v.quantizer.fingerprint().as_str())
    {
        return Err(Error::input(
            &first_part,
            None,
            None,
            "was coded by another quantizer than the one given for reassign's distances",
        ));
    }
    // With --existing, the items it holds keep their IDs: only the others are resolved.
    let fresh: Option<Vec<usize>> = existing.map(|ex| {
        let known: std::collections::HashSet<IdKey> =
            (0..ex.ids.len()).map(|i| ex.ids.key(i)).collect();
        (0..ids.len())
            .filter(|&i| !known.contains(&ids.key(i)))
            .collect()
    });
    let new_ids = match &fresh {
        Some(f) => ids.select(f),
        None => ids.clone(),
    };
    // Each ID kind on its own, as `assign` resolves them.
    let mut kinds = vec![(IdKind::Sid, raw)];
    if meta.dual.is_some() {
        kinds.push((IdKind::Cid, cid_raw));
    }
    let new_raws: Vec<(IdKind, Vec<u16>)> = kinds
        .into_iter()
        .map(|(kind, kraw)| {
            let levels = meta.sizes(kind).len();
            let new_raw = match &fresh {
                Some(f) => f
                    .iter()
                    .flat_map(|&i| kraw[i * levels..(i + 1) * levels].iter().copied())
                    .collect(),
                None => kraw,
            };
            (kind, new_raw)
        })
        .collect();
    // Reassign: the quantizer's own codes (all its levels) of new items `need`, as the parts
    // hold them, and their vectors.
    let own_codes = |need: &[usize]| -> Vec<u16> {
        let pick = |raw: &[u16], w: usize| -> Vec<u16> {
            need.iter()
                .flat_map(|&i| raw[i * w..(i + 1) * w].iter().copied())
                .collect()
        };
        let sid = pick(&new_raws[0].1, meta.sizes(IdKind::Sid).len());
        match vectors.and_then(|v| v.quantizer.dual()) {
            None => sid,
            Some(d) => d.join(&sid, &pick(&new_raws[1].1, meta.sizes(IdKind::Cid).len())),
        }
    };
    let mut resolved = Vec::new();
    for (kind, new_raw) in &new_raws {
        let (kind, new_raw) = (*kind, new_raw.clone());
        let sizes = meta.sizes(kind).to_vec();
        let levels = sizes.len();
        let fixed = existing.and_then(|e| match kind {
            IdKind::Sid => Some(dedup::Existing {
                codes: &e.codes,
                width: e.width,
            }),
            IdKind::Cid => e.cid.as_ref().map(|c| dedup::Existing {
                codes: &c.codes,
                width: c.width,
            }),
        });
        let res = dedup::resolve(
            &new_raw,
            levels,
            &new_ids,
            strategy,
            sizes[levels - 1],
            fixed,
            |need| {
                let v = vectors.expect("reassign is refused above without vectors");
                let x = gather_by_id(v.quantizer, &v.source, &new_ids, need)?;
                let codes = own_codes(need);
                check_coded(v.quantizer, &v.source, &x, &codes, &new_ids, need)?;
                let last = *kind_levels(v.quantizer, kind).last().expect("a level");
                v.quantizer.level_distances(&x, &codes, last)
            },
        )?;
        resolved.push((kind, levels, new_raw, res));
    }
    let meta = SidMeta {
        sidtool_version: crate::VERSION.into(),
        dedup: strategy.name(),
        suffix_level: resolved[0].3.suffix_level,
        dual: meta.dual.clone().map(|d| DualMeta {
            cid_suffix_level: resolved[1].3.suffix_level,
            ..d
        }),
        ..meta
    };
    let all_ids = match existing {
        None => new_ids,
        Some(ex) => {
            let mut all = ex.ids.clone();
            all.extend(new_ids);
            all
        }
    };
    let mut out = Vec::new();
    for (kind, levels, new_raw, res) in resolved {
        out.push(match existing {
            None => (new_raw, res),
            Some(ex) => {
                let cols = match kind {
                    IdKind::Sid => ex.sid_columns(),
                    IdKind::Cid => ex.cid.clone().expect("check_existing requires CID columns"),
                };
                prepend(&cols, &all_ids, levels, new_raw, res)
            }
        });
    }
    let mut out = out.into_iter();
    let (raw, resolution) = out.next().expect("a SID");
    let cid = out
        .next()
        .map(|(raw, resolution)| CidAssigned { raw, resolution });
    let mut stats = make_stats(&all_ids, &raw, &resolution, &meta, None);
    let (existing_items, existing_not_in_input) = match existing {
        None => (0, 0),
        Some(ex) => {
            let present: std::collections::HashSet<IdKey> =
                (0..ids.len()).map(|i| ids.key(i)).collect();
            let absent = (0..ex.ids.len())
                .filter(|&i| !present.contains(&ex.ids.key(i)))
                .count();
            (ex.ids.len() as u64, absent as u64)
        }
    };
    stats.sid.resolution.existing_items = existing_items;
    stats.sid.resolution.existing_not_in_input = existing_not_in_input;
    if let Some(c) = &cid {
        let mut s = id_stats(
            &all_ids,
            &c.raw,
            &c.resolution,
            meta.sizes(IdKind::Cid),
            None,
        );
        s.resolution.existing_items = existing_items;
        s.resolution.existing_not_in_input = existing_not_in_input;
        name_levels(&mut s, &meta.format(IdKind::Cid)?);
        name_levels(&mut stats.sid, &meta.format(IdKind::Sid)?);
        stats.cid = Some(s);
    }
    Ok(Assigned {
        ids: all_ids,
        raw,
        resolution,
        cid,
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
    let problem =
        if m.dual.is_some() != parts.dual.is_some() || ex.cid.is_some() != parts.dual.is_some() {
            Some(
                "is not of the parts' kind (GenSAR tables hold SIDs and CIDs, others SIDs only)"
                    .to_string(),
            )
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
        cid_sizes: m.dual.as_ref().map(|d| d.cid_codebook_sizes.as_slice()),
        allow_shared_ids: false,
    })
}
