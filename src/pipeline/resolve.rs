//! Global collision resolution as its own step (`sidtool resolve`): raw codes written by many
//! workers (each partition coded with `assign --dedup none`, on as many machines as needed)
//! are concatenated in the order given and resolved exactly as `assign` resolves the whole
//! catalogue, so the final IDs are the single-machine ones.

use super::assign::Assigned;
use super::stats::make_stats;
use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::ids::dedup;
use crate::ids::sid_table::{self, Expect, SidMeta, SidTable};
use crate::item_id::{IdKey, ItemIds};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The Parquet part files of `inputs`: files as given, directories as Spark and Hive write
/// them (their `*.parquet` files in name order; `_SUCCESS`, `.crc` and hidden files ignored).
pub fn part_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut parts: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Error::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                f.is_file()
                    && !name.starts_with('.')
                    && !name.starts_with('_')
                    && name.ends_with(".parquet")
            })
            .collect();
        parts.sort();
        if parts.is_empty() {
            return Err(Error::input(p, None, None, "holds no *.parquet part files"));
        }
        out.extend(parts);
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

/// One part's raw codes, checked.
fn read_part(path: &Path) -> Result<(SidTable, SidMeta)> {
    let t = sid_table::read(path)?;
    let Some(meta) = t.meta.clone() else {
        return Err(Error::input(
            path,
            None,
            None,
            "has no sidtool footer: resolve takes the raw codes `sidtool assign --dedup none` \
             writes",
        ));
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
/// `assign` with that strategy gives for the concatenated parts, row for row.
pub fn resolve(parts: &[PathBuf], strategy: Dedup) -> Result<Assigned> {
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
        let (t, m) = read_part(p)?;
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
    let resolution = dedup::resolve(
        &raw,
        levels,
        &ids,
        strategy,
        sizes[levels - 1],
        None,
        |_| unreachable!("reassign is refused above"),
    )?;
    let meta = SidMeta {
        sidtool_version: crate::VERSION.into(),
        dedup: strategy.name(),
        suffix_level: resolution.suffix_level,
        ..meta
    };
    let stats = make_stats(&ids, &raw, &resolution, &meta, None);
    Ok(Assigned {
        ids,
        raw,
        resolution,
        cid: None,
        stats,
        meta,
    })
}
