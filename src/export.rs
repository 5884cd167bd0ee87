//! Final IDs in the formats other generative-recommendation stacks read (`sidtool export`):
//! the `.index.json` of MiniOneRec, LC-Rec and LETTER (item → list of SID token strings), and
//! a NumPy codes matrix with its item ids for TIGER/GRID-style trainers.

use crate::error::{Error, Result};
use crate::fs::inputs::{OutputKind, check_output};
use crate::ids::sid_table::SidTable;
use crate::item_id::ItemIds;
use crate::quant::kind::IdKind;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// `{"<item id>": ["<a_12>", "<b_7>", "<c_201>"], …}`: MiniOneRec, LC-Rec, LETTER.
    #[cfg_attr(
        feature = "cli",
        value(alias = "minionerec", alias = "lc-rec", alias = "letter")
    )]
    IndexJson,
    /// A directory with `codes.npy` (int64, items × levels) and `item_ids.json` (row i of the
    /// matrix is item i of the list): TIGER/GRID-style trainers.
    CodesNpy,
}

/// The files a `codes-npy` export holds.
pub const CODES_FILE: &str = "codes.npy";
pub const IDS_FILE: &str = "item_ids.json";

/// Export `kind`'s IDs of the table at `sids` as `format` into `out` (a file for
/// `index-json`, a directory for `codes-npy`), atomically: a crash leaves the old output or
/// none. Shared final IDs (`--dedup none` tables) are exported as they are.
pub fn write(sids: &Path, format: Format, kind: IdKind, out: &Path) -> Result<()> {
    let table = read(sids)?;
    match format {
        Format::IndexJson => {
            check_output(out, OutputKind::File, &[sids])?;
            crate::fs::atomic::write_file(out, index_json(&table, kind)?.as_bytes())
        }
        Format::CodesNpy => {
            check_output(out, OutputKind::Dir, &[sids])?;
            let dir = crate::fs::dir::AtomicDir::create(out)?;
            codes_npy(&table, kind, dir.path())?;
            dir.commit_keeping(|name| ![CODES_FILE, IDS_FILE].contains(&name))
        }
    }
}

/// A SID table, checked as every reader checks it (shared IDs allowed: they are exported).
pub fn read(sids: &Path) -> Result<SidTable> {
    let table = crate::ids::sid_table::read(sids)?;
    table.validate(&crate::ids::sid_table::Expect {
        allow_shared_ids: true,
        ..Default::default()
    })?;
    Ok(table)
}

/// The `.index.json` text of `kind`'s IDs: keys are item ids as strings (JSON keys), values
/// the token strings of each level, spelled as the table's token format spells them.
pub fn index_json(table: &SidTable, kind: IdKind) -> Result<String> {
    let view = view(table, kind)?;
    let mut map = serde_json::Map::new();
    for (row, codes) in view.codes.chunks(view.width).enumerate() {
        let tokens = codes
            .iter()
            .enumerate()
            .map(|(l, &c)| serde_json::Value::String(view.format.token(l, c)))
            .collect();
        let key = match &table.ids {
            ItemIds::Int(v) => v[row].to_string(),
            ItemIds::Str(v) => v[row].clone(),
        };
        if map
            .insert(key.clone(), serde_json::Value::Array(tokens))
            .is_some()
        {
            return Err(Error::input(
                &table.path,
                Some("item_id"),
                Some(row as u64),
                format!(
                    "item {} appears twice; an .index.json maps each item once",
                    table.ids.display(row)
                ),
            ));
        }
    }
    Ok(serde_json::to_string(&serde_json::Value::Object(map)).expect("serialisable") + "\n")
}

/// Write `codes.npy` and `item_ids.json` of `kind`'s IDs into the existing directory `dir`.
pub fn codes_npy(table: &SidTable, kind: IdKind, dir: &Path) -> Result<()> {
    let view = view(table, kind)?;
    let n = view.codes.len() / view.width.max(1);
    let codes: Vec<i64> = view.codes.iter().map(|&c| c as i64).collect();
    let t = candle_core::Tensor::from_vec(codes, (n, view.width), &candle_core::Device::Cpu)?;
    let path = dir.join(CODES_FILE);
    t.write_npy(&path).map_err(|e| Error::write(&path, e))?;
    let ids = match &table.ids {
        ItemIds::Int(v) => serde_json::to_string(v),
        ItemIds::Str(v) => serde_json::to_string(v),
    }
    .expect("serialisable");
    crate::fs::atomic::write_file(&dir.join(IDS_FILE), (ids + "\n").as_bytes())
}

fn view(table: &SidTable, kind: IdKind) -> Result<crate::vocab::extend::IdView<'_>> {
    crate::vocab::extend::views(table)?
        .into_iter()
        .find(|v| v.kind == kind)
        .ok_or_else(|| {
            Error::Config(format!(
                "{} has no CIDs (only GenSAR tables do); export its SIDs",
                table.path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_json_lists_each_items_tokens() {
        let table = SidTable::for_tests(ItemIds::Int(vec![10, 11]), vec![1, 2, 0, 3, 4, 1], 3);
        let v: serde_json::Value =
            serde_json::from_str(&index_json(&table, IdKind::Sid).unwrap()).unwrap();
        assert_eq!(v["10"], serde_json::json!(["<a_1>", "<b_2>", "<c_0>"]));
        assert_eq!(v["11"], serde_json::json!(["<a_3>", "<b_4>", "<c_1>"]));
        assert!(index_json(&table, IdKind::Cid).is_err());
    }

    #[test]
    fn the_codes_matrix_reads_back_as_numpy_writes_it() {
        let table = SidTable::for_tests(
            ItemIds::Str(vec!["x".into(), "y".into()]),
            vec![1, 2, 3, 4],
            2,
        );
        let d = tempfile::tempdir().unwrap();
        codes_npy(&table, IdKind::Sid, d.path()).unwrap();
        let back = candle_core::Tensor::read_npy(d.path().join(CODES_FILE)).unwrap();
        assert_eq!(back.dtype(), candle_core::DType::I64);
        assert_eq!(back.to_vec2::<i64>().unwrap(), vec![vec![1, 2], vec![3, 4]]);
        let ids = std::fs::read_to_string(d.path().join(IDS_FILE)).unwrap();
        assert_eq!(ids.trim(), r#"["x","y"]"#);
    }
}
