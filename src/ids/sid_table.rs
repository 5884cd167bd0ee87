//! `sids.parquet`: one row per item with its final codes, SID string and collision group size.

use crate::error::{Error, Result};
use crate::ids::dedup::Resolution;
use crate::ids::tokens::TokenFormat;
use crate::io::embeddings::open_parquet;
use crate::io::parquet_out::ParquetOut;
use crate::io::parquet_out::ROW_GROUP_ROWS;
use crate::item_id::ItemIds;
use crate::quant::kind::IdKind;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, RecordBatch, StringArray, UInt16Array, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Key of the JSON footer metadata that makes a sids.parquet self-describing.
pub const META_KEY: &str = "sidtool:sids";

/// What the footer records about how the table was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SidMeta {
    pub sidtool_version: String,
    pub method: String,
    /// K_l of the quantizer levels.
    pub codebook_sizes: Vec<usize>,
    pub dedup: String,
    /// Whether the last code column is a suffix level.
    pub suffix_level: bool,
    pub token_format: String,
    /// [`crate::quant::Quantizer::fingerprint`] of the model that made the codes.
    #[serde(default)]
    pub quantizer_fingerprint: Option<String>,
    /// GenSAR tables: how the CID columns were made. `codebook_sizes`, `suffix_level` and
    /// `token_format` above then describe the SID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual: Option<DualMeta>,
}

/// The CID half of a GenSAR table's footer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DualMeta {
    pub shared_levels: usize,
    pub semantic_levels: usize,
    pub collab_levels: usize,
    /// K_l of the CID's levels (shared, then collaborative).
    pub cid_codebook_sizes: Vec<usize>,
    pub cid_suffix_level: bool,
    /// What precedes the level letter of the SID's and the CID's own levels.
    pub sid_prefix: String,
    pub cid_prefix: String,
}

impl SidMeta {
    /// The token format of one ID kind.
    pub fn format(&self, kind: IdKind) -> Result<TokenFormat> {
        let f = TokenFormat::new(&self.token_format)?;
        Ok(match (&self.dual, kind) {
            (None, _) => f,
            (Some(d), IdKind::Sid) => f.with_prefix(d.shared_levels, &d.sid_prefix),
            (Some(d), IdKind::Cid) => f.with_prefix(d.shared_levels, &d.cid_prefix),
        })
    }

    /// K_l of one ID kind's quantizer levels.
    pub fn sizes(&self, kind: IdKind) -> &[usize] {
        match (&self.dual, kind) {
            (Some(d), IdKind::Cid) => &d.cid_codebook_sizes,
            _ => &self.codebook_sizes,
        }
    }
}

/// One ID's columns of a table (the CID's, for GenSAR).
#[derive(Debug, Clone)]
pub struct IdColumns {
    pub codes: Vec<u16>,
    pub width: usize,
    pub group_size: Vec<u32>,
    pub original_codes: Option<Vec<u16>>,
}

/// A sids.parquet read back into memory.
#[derive(Debug, Clone)]
pub struct SidTable {
    pub path: std::path::PathBuf,
    pub ids: ItemIds,
    pub codes: Vec<u16>,
    pub width: usize,
    pub group_size: Vec<u32>,
    /// Codes before `reassign` moved them (only written for that strategy).
    pub original_codes: Option<Vec<u16>>,
    pub meta: Option<SidMeta>,
    /// GenSAR: `cid_codes`, `cid_collision_group_size`, `cid_original_codes`.
    pub cid: Option<IdColumns>,
}

/// What the CID columns are written from: final codes and the quantizer's own codes.
pub struct CidPart<'a> {
    pub resolution: &'a Resolution,
    pub raw: &'a [u16],
}

pub(crate) fn codes_field(width: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::UInt16, false)),
        width as i32,
    )
}

pub(crate) fn codes_array(codes: &[u16], width: usize) -> ArrayRef {
    let values = Arc::new(UInt16Array::from(codes.to_vec()));
    Arc::new(FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::UInt16, false)),
        width as i32,
        values,
        None,
    ))
}

/// Write the final IDs. `raw` (rows × quantizer levels) is stored as `original_codes` when
/// `reassign` changed codes, so the pre-resolution statistics can be recomputed later.
pub fn write(
    dest: &Path,
    ids: &ItemIds,
    res: &Resolution,
    raw: &[u16],
    meta: &SidMeta,
    cid: Option<CidPart>,
) -> Result<()> {
    let fmt = meta.format(IdKind::Sid)?;
    let cid_fmt = meta.format(IdKind::Cid)?;
    let levels = meta.codebook_sizes.len();
    let cid_levels = meta.sizes(IdKind::Cid).len();
    let keep_original = meta.dedup == "reassign";
    let mut fields = vec![
        Field::new("item_id", ids.data_type(), false),
        Field::new("codes", codes_field(res.width), false),
        Field::new("sid", DataType::Utf8, false),
        Field::new("collision_group_size", DataType::UInt32, false),
    ];
    if keep_original {
        fields.push(Field::new("original_codes", codes_field(levels), false));
    }
    if let Some(c) = &cid {
        fields.push(Field::new(
            "cid_codes",
            codes_field(c.resolution.width),
            false,
        ));
        fields.push(Field::new("cid", DataType::Utf8, false));
        fields.push(Field::new(
            "cid_collision_group_size",
            DataType::UInt32,
            false,
        ));
        if keep_original {
            fields.push(Field::new(
                "cid_original_codes",
                codes_field(cid_levels),
                false,
            ));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let json = serde_json::to_string(meta).expect("metadata serialises");
    let mut out = ParquetOut::create(dest, schema.clone(), vec![(META_KEY.to_string(), json)])?;
    let n = ids.len();
    let w = res.width;
    for s in (0..n).step_by(ROW_GROUP_ROWS) {
        let e = (s + ROW_GROUP_ROWS).min(n);
        let block = &res.codes[s * w..e * w];
        let sids = StringArray::from_iter_values(block.chunks(w).map(|c| fmt.sid(c)));
        let mut cols: Vec<ArrayRef> = vec![
            ids.to_arrow(s, e),
            codes_array(block, w),
            Arc::new(sids),
            Arc::new(UInt32Array::from(res.group_size[s..e].to_vec())),
        ];
        if keep_original {
            cols.push(codes_array(&raw[s * levels..e * levels], levels));
        }
        if let Some(c) = &cid {
            let cw = c.resolution.width;
            let block = &c.resolution.codes[s * cw..e * cw];
            cols.push(codes_array(block, cw));
            cols.push(Arc::new(StringArray::from_iter_values(
                block.chunks(cw).map(|c| cid_fmt.sid(c)),
            )));
            cols.push(Arc::new(UInt32Array::from(
                c.resolution.group_size[s..e].to_vec(),
            )));
            if keep_original {
                cols.push(codes_array(
                    &c.raw[s * cid_levels..e * cid_levels],
                    cid_levels,
                ));
            }
        }
        out.write(
            &RecordBatch::try_new(schema.clone(), cols).expect("columns match the sids schema"),
        )?;
    }
    out.finish()
}

/// Read a sids.parquet written by sidtool (or any table with `item_id` and `codes`).
pub fn read(path: &Path) -> Result<SidTable> {
    crate::fs::inputs::note(path);
    let builder = open_parquet(path)?;
    let meta = builder
        .key_value(META_KEY)
        .map(|v| {
            serde_json::from_str::<SidMeta>(&v).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                cause: source,
            })
        })
        .transpose()?;
    let schema = builder.schema().clone();
    for need in ["item_id", "codes"] {
        if schema.column_with_name(need).is_none() {
            return Err(Error::input(
                path,
                Some(need),
                None,
                "no such column; is this a sids.parquet?",
            ));
        }
    }
    let reader = builder.reader(None, None)?;
    let mut ids: Option<ItemIds> = None;
    let (mut codes, mut group, mut orig) = (Vec::new(), Vec::new(), Vec::new());
    let mut width = 0;
    let has_cid = schema.column_with_name("cid_codes").is_some();
    let mut cid = IdColumns {
        codes: Vec::new(),
        width: 0,
        group_size: Vec::new(),
        original_codes: None,
    };
    let mut cid_orig = Vec::new();
    let mut row = 0u64;
    for b in reader {
        let b = b.map_err(|e| Error::arrow(path, e))?;
        let id_col = b.column_by_name("item_id").unwrap();
        let bi = ItemIds::from_arrow(id_col.as_ref()).ok_or_else(|| {
            Error::input(
                path,
                Some("item_id"),
                None,
                format!("unsupported type {}", id_col.data_type()),
            )
        })?;
        if let Some(r) = crate::io::embeddings::first_null(id_col.as_ref()) {
            return Err(Error::input(
                path,
                Some("item_id"),
                Some(row + r as u64),
                "item id is null",
            ));
        }
        match &mut ids {
            Some(all) => all.extend(bi),
            None => ids = Some(bi),
        }
        let (w, c) = read_codes(b.column_by_name("codes").unwrap(), path, "codes", row)?;
        width = w;
        codes.extend(c);
        if let Some(g) = b.column_by_name("collision_group_size") {
            group.extend(
                g.as_primitive_opt::<UInt32Type>()
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default(),
            );
        }
        if let Some(o) = b.column_by_name("original_codes") {
            orig.extend(read_codes(o, path, "original_codes", row)?.1);
        }
        if let Some(c) = b.column_by_name("cid_codes") {
            let (w, c) = read_codes(c, path, "cid_codes", row)?;
            cid.width = w;
            cid.codes.extend(c);
        }
        if let Some(g) = b.column_by_name("cid_collision_group_size") {
            cid.group_size.extend(
                g.as_primitive_opt::<UInt32Type>()
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default(),
            );
        }
        if let Some(o) = b.column_by_name("cid_original_codes") {
            cid_orig.extend(read_codes(o, path, "cid_original_codes", row)?.1);
        }
        row += b.num_rows() as u64;
    }
    let ids = ids.ok_or_else(|| Error::input(path, None, None, "contains no rows"))?;
    Ok(SidTable {
        path: path.to_path_buf(),
        width,
        group_size: group,
        original_codes: if orig.is_empty() { None } else { Some(orig) },
        ids,
        codes,
        meta,
        cid: has_cid.then(|| IdColumns {
            original_codes: (!cid_orig.is_empty()).then_some(cid_orig),
            ..cid
        }),
    })
}

/// One batch's codes of `col` (rows starting at `first_row`): sidtool writes
/// FixedSizeList<UInt16>, and any integer list fits when its codes do (Spark writes
/// `array<int>`). Returns the width and the codes.
fn read_codes(a: &ArrayRef, path: &Path, col: &str, first_row: u64) -> Result<(usize, Vec<u16>)> {
    let mut width = None;
    let mut codes = Vec::new();
    crate::io::codes::read_lists(
        a,
        path,
        col,
        first_row,
        u16::MAX as u32,
        &mut width,
        &mut codes,
    )?;
    Ok((
        width.unwrap_or(0),
        codes.into_iter().map(|c| c as u16).collect(),
    ))
}

/// What a reader needs of a table beyond what its own footer promises; see
/// [`SidTable::validate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// K_l of the SID levels of the quantizer the table is used with.
    pub sizes: Option<&'a [usize]>,
    /// The same for the CID levels (GenSAR).
    pub cid_sizes: Option<&'a [usize]>,
    /// Items may share a final ID although the footer says IDs were made unique (`vocab` with
    /// `allow_duplicates`).
    pub allow_shared_ids: bool,
}

/// Items of one ID kind that share a final ID.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedIds {
    pub kind: IdKind,
    /// Items whose final ID some other item has too.
    pub items: usize,
    /// Distinct IDs held by more than one item.
    pub ids: usize,
    /// Two rows sharing one ID (the first such pair in ID order).
    pub example: (usize, usize),
}

impl SidTable {
    /// The SID's columns (final codes, group sizes, codes before `reassign`), as an existing
    /// table's rows are put before new ones.
    pub(crate) fn sid_columns(&self) -> IdColumns {
        IdColumns {
            codes: self.codes.clone(),
            width: self.width,
            group_size: self.group_size.clone(),
            original_codes: self.original_codes.clone(),
        }
    }

    /// A table of `ids` and row-major `codes` of `width` levels, with no footer (the default
    /// token format), for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(ids: ItemIds, codes: Vec<u16>, width: usize) -> SidTable {
        SidTable {
            path: "test.parquet".into(),
            group_size: vec![1; ids.len()],
            ids,
            codes,
            width,
            original_codes: None,
            meta: None,
            cid: None,
        }
    }

    /// The one check every reader of a SID table applies (`assign --existing`, `stats`,
    /// `vocab`, `build`'s vocabulary step), so a table one command accepts is not refused, or
    /// worse misread, by another:
    /// - every item id appears once;
    /// - the codes fit the codebook sizes of the footer and of `expect` (width L or L + 1, every
    ///   quantizer-level code below its K_l), SID and CID alike;
    /// - final IDs are unique unless the footer says `dedup none` or `expect` allows sharing.
    ///
    /// Errors name the file, the column and the row(s).
    pub fn validate(&self, expect: &Expect) -> Result<()> {
        if let Some((first, dup)) = self.ids.first_duplicate() {
            return Err(Error::input(
                &self.path,
                Some("item_id"),
                Some(dup as u64),
                format!(
                    "item id {} appears twice (rows {first} and {dup}); every item must have \
                     exactly one ID",
                    self.ids.display(dup)
                ),
            ));
        }
        let n = self.ids.len();
        let mut kinds = vec![(IdKind::Sid, "codes", &self.codes[..], self.width)];
        if let Some(c) = &self.cid {
            kinds.push((IdKind::Cid, "cid_codes", &c.codes[..], c.width));
        }
        for &(kind, column, codes, width) in &kinds {
            if width == 0 || codes.len() != n * width {
                return Err(Error::input(
                    &self.path,
                    Some(column),
                    None,
                    format!("has {} codes for {n} items", codes.len()),
                ));
            }
            if let Some(m) = &self.meta
                && !m.sizes(kind).is_empty()
            {
                check_codes(&self.path, column, codes, width, m.sizes(kind))?;
            }
            let wanted = match kind {
                IdKind::Sid => expect.sizes,
                IdKind::Cid => expect.cid_sizes,
            };
            if let Some(sizes) = wanted {
                check_codes(&self.path, column, codes, width, sizes)?;
            }
        }
        // A table without a footer promises nothing, so it is held to the strict rule.
        let unique = self.meta.as_ref().is_none_or(|m| m.dedup != "none");
        if unique && !expect.allow_shared_ids {
            for &(kind, column, ..) in &kinds {
                if let Some(s) = self.shared_ids(kind) {
                    let (a, b) = s.example;
                    return Err(Error::input(
                        &self.path,
                        Some(column),
                        Some(b as u64),
                        format!(
                            "rows {a} and {b} (items {} and {}) share one {} although the table \
                             says it was made with --dedup {}, which gives every item its own; \
                             {} items share {} IDs in all. The table was edited or damaged: \
                             assign the IDs again",
                            self.ids.display(a),
                            self.ids.display(b),
                            kind.name().to_uppercase(),
                            self.meta
                                .as_ref()
                                .map_or("(no footer: unknown)", |m| m.dedup.as_str()),
                            s.items,
                            s.ids
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The items that share a final ID of `kind`, if any do.
    pub fn shared_ids(&self, kind: IdKind) -> Option<SharedIds> {
        let (codes, width) = match (kind, &self.cid) {
            (IdKind::Sid, _) => (&self.codes, self.width),
            (IdKind::Cid, Some(c)) => (&c.codes, c.width),
            (IdKind::Cid, None) => return None,
        };
        let (order, bounds) = crate::ids::dedup::sorted_groups(codes, width, &self.ids);
        let shared: Vec<(usize, usize)> = bounds.into_iter().filter(|&(s, e)| e - s > 1).collect();
        let &(s, _) = shared.first()?;
        let (a, b) = (order[s].min(order[s + 1]), order[s].max(order[s + 1]));
        Some(SharedIds {
            kind,
            items: shared.iter().map(|&(s, e)| e - s).sum(),
            ids: shared.len(),
            example: (a, b),
        })
    }
}

/// Codes `width` per row must fit `sizes` (K_l per level): width L or L + 1 (a suffix level),
/// every quantizer-level code below its K_l.
fn check_codes(
    path: &Path,
    column: &str,
    codes: &[u16],
    width: usize,
    sizes: &[usize],
) -> Result<()> {
    let levels = sizes.len();
    if width != levels && width != levels + 1 {
        return Err(Error::input(
            path,
            Some(column),
            None,
            format!("has {width} codes per item, but the quantizer has {levels} levels"),
        ));
    }
    for (row, c) in codes.chunks(width).enumerate() {
        if let Some(l) = (0..levels).find(|&l| c[l] as usize >= sizes[l]) {
            return Err(Error::input(
                path,
                Some(column),
                Some(row as u64),
                format!(
                    "code {} at level {} is outside the quantizer's {} codes",
                    c[l],
                    l + 1,
                    sizes[l]
                ),
            ));
        }
    }
    Ok(())
}
