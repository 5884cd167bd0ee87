//! RecBole atomic files (`<name>.item`, `<name>.inter`) → sidtool's `items.parquet` and
//! `interactions.parquet`, so the public datasets packaged for RecBole (MovieLens, Amazon, ...)
//! feed `sidtool build` and `train --interactions` directly.
//!
//! The format (RecBole docs, "Atomic Files"): UTF-8 text, one record per line, tab-separated;
//! the first line names every field as `name:type`, the type being `token` (one discrete value),
//! `token_seq` (space-separated tokens), `float` or `float_seq` (space-separated numbers).
//! Each file is read twice, streaming: the first pass checks every line and infers the Arrow
//! types, the second writes row groups, so memory stays at one row group however large the file.

use crate::error::{Error, Result};
use crate::io::interactions::{ITEM_COLUMN, USER_COLUMN};
use arrow_schema::DataType;
use std::path::{Path, PathBuf};

mod scan;
mod write;

use scan::{Scan, scan};
use write::write;

/// File names the import writes into its output directory.
pub(crate) const ITEMS_FILE: &str = "items.parquet";
pub(crate) const INTERACTIONS_FILE: &str = "interactions.parquet";

/// Footer metadata recording the source file and its RecBole header.
pub(crate) const META_KEY: &str = "sidtool:recbole";

/// Separator inside `token_seq` and `float_seq` values (RecBole's `seq_separator` default).
const SEQ_SEPARATOR: char = ' ';

/// Read buffer: large sequential reads; a 1 M-line file is tens of MB.
const READ_BUFFER: usize = 1 << 20;

/// A RecBole field type: the part after the colon in a header entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Token,
    TokenSeq,
    Float,
    FloatSeq,
}

impl FieldType {
    const ALL: [FieldType; 4] = [
        FieldType::Token,
        FieldType::TokenSeq,
        FieldType::Float,
        FieldType::FloatSeq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Token => "token",
            FieldType::TokenSeq => "token_seq",
            FieldType::Float => "float",
            FieldType::FloatSeq => "float_seq",
        }
    }
}

/// The atomic files of one RecBole dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// `<name>.inter`.
    pub inter: PathBuf,
    /// `<name>.item`, when the directory has one.
    pub item: Option<PathBuf>,
    /// The dataset's other atomic files (`.user`, `.kg`, `.link`, ...), which are not imported.
    pub other: Vec<PathBuf>,
}

impl Dataset {
    /// Find `<name>.inter` and `<name>.item` in `dir`; without a name, the directory's only
    /// `*.inter` file names the dataset.
    pub fn locate(dir: &Path, name: Option<&str>) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
        let has_ext = |p: &Path, ext: &str| p.extension().is_some_and(|e| e == ext);
        let inters: Vec<String> = files
            .iter()
            .filter(|p| has_ext(p, "inter"))
            .filter_map(|p| stem(p))
            .collect();
        let name = match (name, inters.as_slice()) {
            (Some(n), _) => n.to_string(),
            (None, [one]) => one.clone(),
            (None, []) => {
                return Err(Error::input(
                    dir,
                    None,
                    None,
                    "has no *.inter file: expected a RecBole dataset directory holding \
                     <name>.inter (and optionally <name>.item)",
                ));
            }
            (None, many) => {
                return Err(Error::input(
                    dir,
                    None,
                    None,
                    format!(
                        "holds several datasets ({}): choose one with --name",
                        many.join(", ")
                    ),
                ));
            }
        };
        let inter = dir.join(format!("{name}.inter"));
        if !inter.is_file() {
            let found: Vec<String> = inters.iter().map(|s| format!("{s}.inter")).collect();
            return Err(Error::input(
                dir,
                None,
                None,
                format!(
                    "has no {name}.inter (the dataset's interactions); *.inter files here: {}",
                    if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    }
                ),
            ));
        }
        let item = dir.join(format!("{name}.item"));
        let other = files
            .iter()
            .filter(|p| stem(p).as_deref() == Some(name.as_str()))
            .filter(|p| !has_ext(p, "inter") && !has_ext(p, "item"))
            .cloned()
            .collect();
        Ok(Dataset {
            item: item.is_file().then_some(item),
            name,
            inter,
            other,
        })
    }
}

/// One output column: its name, RecBole type, Arrow type and how many values were empty.
#[derive(Debug, Clone)]
pub struct ColumnReport {
    pub name: String,
    pub recbole_type: FieldType,
    pub data_type: DataType,
    pub nulls: u64,
}

/// One written table.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub rows: u64,
    pub columns: Vec<ColumnReport>,
}

/// What [`import`] wrote.
#[derive(Debug, Clone)]
pub struct Report {
    /// None when the dataset has no `.item` file.
    pub items: Option<TableReport>,
    pub interactions: TableReport,
    /// Atomic files of the dataset that were left alone.
    pub not_imported: Vec<PathBuf>,
    /// Without a `.item` file: an `items.parquet` already in the output directory, left from
    /// an earlier run and not describing this dataset (a later `build` would pair them).
    pub stale: Option<PathBuf>,
}

/// Convert a dataset into `out_dir/items.parquet` and `out_dir/interactions.parquet`. Every
/// line of both files is checked before anything is written, and both outputs appear together
/// or not at all.
pub fn import(ds: &Dataset, out_dir: &Path) -> Result<Report> {
    let items = ds
        .item
        .as_deref()
        .map(|p| scan(p, Table::Items))
        .transpose()?;
    let inter = scan(&ds.inter, Table::Interactions)?;
    let mut item_types = items.as_ref().map(Scan::types);
    let mut inter_types = inter.types();
    // One id type for both files, or interactions would not join the catalogue.
    if let (Some(s), Some(t)) = (&items, &mut item_types) {
        let (a, b) = (s.ids[0], inter.ids[1]);
        if t[a] != inter_types[b] {
            t[a] = DataType::Utf8;
            inter_types[b] = DataType::Utf8;
        }
    }
    // Both written into a staged copy of the output directory, swapped in together
    // (fs::dir): a failure or a kill leaves neither behind, and never one without the other.
    let inputs: Vec<&Path> = ds
        .item
        .iter()
        .map(|p| p.as_path())
        .chain([ds.inter.as_path()])
        .collect();
    crate::fs::inputs::check_output(out_dir, crate::fs::inputs::OutputKind::Dir, &inputs)?;
    let dir = crate::fs::dir::AtomicDir::create(out_dir)?;
    let mut written = Vec::new();
    let items = match (&items, &item_types) {
        (Some(s), Some(t)) => {
            write(s, t, &dir.path().join(ITEMS_FILE))?.commit()?;
            written.push(ITEMS_FILE);
            Some(s.report(t, out_dir.join(ITEMS_FILE)))
        }
        _ => None,
    };
    write(&inter, &inter_types, &dir.path().join(INTERACTIONS_FILE))?.commit()?;
    written.push(INTERACTIONS_FILE);
    let interactions = inter.report(&inter_types, out_dir.join(INTERACTIONS_FILE));
    // Everything else in the directory is kept, including an items.parquet of an earlier
    // import when this dataset has no .item file (reported as stale).
    let stale = match items {
        Some(_) => None,
        None => Some(out_dir.join(ITEMS_FILE)).filter(|p| p.exists()),
    };
    dir.commit_keeping(|name| !written.contains(&name))?;
    Ok(Report {
        items,
        interactions,
        not_imported: ds.other.clone(),
        stale,
    })
}

/// Which file a scan reads: it decides the id columns that must be present and non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Items,
    Interactions,
}

impl Table {
    fn ids(self) -> &'static [&'static str] {
        match self {
            Table::Items => &[ITEM_COLUMN],
            Table::Interactions => &[USER_COLUMN, ITEM_COLUMN],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scan::*;
    use super::*;
    use crate::io::embeddings::open_parquet;
    use arrow_array::Array;
    use arrow_array::RecordBatch;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_schema::Field;
    use std::sync::Arc;

    fn dataset(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn import_dir(dir: &Path) -> Result<Report> {
        import(&Dataset::locate(dir, None)?, &dir.join("out"))
    }

    /// The whole (small) file as one batch.
    fn read(path: &Path) -> RecordBatch {
        let reader = open_parquet(path).unwrap().reader(None, None).unwrap();
        let mut batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        batches.pop().unwrap()
    }

    fn types(t: &TableReport) -> Vec<(String, DataType)> {
        t.columns
            .iter()
            .map(|c| (c.name.clone(), c.data_type.clone()))
            .collect()
    }

    const INTER: &str = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
                         u1\t7\t4.5\t1700000000\n\
                         u2\t9\t\t1700000100.0\n";

    #[test]
    fn an_items_file_from_an_earlier_run_is_reported_stale() {
        let d = dataset(&[("ds.inter", INTER), ("ds.item", "item_id:token\n7\n9\n")]);
        assert_eq!(import_dir(d.path()).unwrap().stale, None);
        std::fs::remove_file(d.path().join("ds.item")).unwrap();
        let r = import_dir(d.path()).unwrap();
        assert!(r.items.is_none());
        assert_eq!(r.stale, Some(d.path().join("out").join(ITEMS_FILE)));
    }

    #[test]
    fn canonical_integers_only() {
        for (v, want) in [
            ("0", Some(0)),
            ("42", Some(42)),
            ("-7", Some(-7)),
            ("02460", None),
            ("+5", None),
            ("-0", None),
            ("1.0", None),
            (" 3", None),
            ("99999999999999999999", None),
            ("abc", None),
        ] {
            assert_eq!(canonical_int(v), want, "{v:?}");
        }
        assert_eq!(integral("978300760.0"), Some(978300760));
        assert_eq!(integral("1700000000123456789"), Some(1700000000123456789));
        assert_eq!(integral("1.5"), None);
        assert_eq!(integral("nan"), None);
    }

    #[test]
    fn header_errors_name_the_entry() {
        let p = Path::new("x.item");
        let e = parse_header(p, "item_id:token\ttitle")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.item, line 1") && e.contains("\"title\""),
            "{e}"
        );
        let e = parse_header(p, "item_id:token\tyear:int")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column `year`") && e.contains("unknown type \"int\""),
            "{e}"
        );
        let e = parse_header(p, "a:token\ta:float").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let h = parse_header(p, "ns:name:token_seq\tv:float_seq").unwrap();
        assert_eq!(h[0], ("ns:name".into(), FieldType::TokenSeq));
        assert_eq!(h[1], ("v".into(), FieldType::FloatSeq));
    }

    #[test]
    fn types_follow_the_values_and_item_ids_agree_across_files() {
        let dir = dataset(&[
            ("d.inter", INTER),
            (
                "d.item",
                "item_id:token\tzip:token\ttags:token_seq\tv:float_seq\n\
                 7\t02460\ta b\t1 2.5\n\
                 9\t10001\t\t\n",
            ),
        ]);
        let r = import_dir(dir.path()).unwrap();
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        let items = r.items.as_ref().unwrap();
        assert_eq!(
            types(items),
            [
                ("item_id".into(), DataType::Int64),
                ("zip".into(), DataType::Utf8),
                ("tags".into(), DataType::Utf8),
                ("v".into(), list),
            ]
        );
        assert_eq!(
            types(&r.interactions),
            [
                ("user_id".into(), DataType::Utf8),
                ("item_id".into(), DataType::Int64),
                ("rating".into(), DataType::Float64),
                ("timestamp".into(), DataType::Int64),
            ]
        );
        let b = read(&dir.path().join("out/items.parquet"));
        let v = b.column(3).as_list::<i32>();
        assert_eq!(
            v.value(0).as_primitive::<Float64Type>().values().to_vec(),
            [1.0, 2.5]
        );
        assert!(v.is_null(1) && b.column(2).is_null(1));
        let b = read(&dir.path().join("out/interactions.parquet"));
        let ts = b.column(3).as_primitive::<Int64Type>();
        assert_eq!(ts.values().to_vec(), [1700000000, 1700000100]);
        assert!(b.column(2).is_null(1));

        // A non-integer item id in either file makes item_id text in both.
        let dir = dataset(&[
            ("d.inter", INTER),
            (
                "d.item",
                "item_id:token\ttitle:token\n7\tSeven\nnine\tNine\n",
            ),
        ]);
        let r = import_dir(dir.path()).unwrap();
        assert_eq!(r.items.unwrap().columns[0].data_type, DataType::Utf8);
        assert_eq!(r.interactions.columns[1].data_type, DataType::Utf8);
        let b = read(&dir.path().join("out/interactions.parquet"));
        assert_eq!(b.column(1).as_string::<i32>().value(0), "7");
    }

    #[test]
    fn fractional_timestamps_stay_float_and_windows_files_read() {
        let dir = dataset(&[(
            "w.inter",
            "\u{feff}user_id:token\titem_id:token\ttimestamp:float\r\n\
             1\ta\t10.5\r\n\
             \r\n\
             2\tb\t11\r\n",
        )]);
        let r = import_dir(dir.path()).unwrap();
        assert!(r.items.is_none());
        assert_eq!(r.interactions.rows, 2);
        assert_eq!(
            types(&r.interactions)[2],
            ("timestamp".into(), DataType::Float64)
        );
        let b = read(&dir.path().join("out/interactions.parquet"));
        assert_eq!(b.column(1).as_string::<i32>().value(1), "b");
        assert_eq!(b.schema().field(0).name(), "user_id");
    }

    #[test]
    fn bad_lines_name_file_line_and_column_and_write_nothing() {
        let cases = [
            (
                "u1\t7\t4.5\n",
                "line 4",
                "has 3 tab-separated fields where the header declares 4",
            ),
            ("u1\t7\tfive\t1\n", "line 4, column `rating`", "\"five\""),
            (
                "\t7\t1\t1\n",
                "line 4, column `user_id`",
                "every row needs an id",
            ),
        ];
        for (bad, place, what) in cases {
            let dir = dataset(&[
                ("d.inter", &format!("{INTER}{bad}")),
                ("d.item", "item_id:token\n7\n9\n"),
            ]);
            let e = import_dir(dir.path()).unwrap_err().to_string();
            assert!(e.contains(&format!("d.inter, {place}")), "{e}");
            assert!(e.contains(what), "{e}");
            assert!(!dir.path().join("out").exists(), "nothing written: {e}");
        }
        let dir = dataset(&[("d.inter", INTER), ("d.item", "item_id:token\n7\n9\n7\n")]);
        let e = import_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("d.item, line 4, column `item_id`") && e.contains("first on line 2"),
            "{e}"
        );
        let dir = dataset(&[("d.inter", "user_id:token\tts:float\n")]);
        let e = import_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no `item_id:token` field"), "{e}");
    }

    #[test]
    fn locate_picks_the_only_dataset_or_asks_for_a_name() {
        let dir = dataset(&[("a.inter", INTER), ("a.user", "user_id:token\n")]);
        let ds = Dataset::locate(dir.path(), None).unwrap();
        assert_eq!((ds.name.as_str(), ds.item.is_none()), ("a", true));
        assert_eq!(ds.other, [dir.path().join("a.user")]);
        std::fs::write(dir.path().join("b.inter"), INTER).unwrap();
        let e = Dataset::locate(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("a, b") && e.contains("--name"), "{e}");
        assert_eq!(Dataset::locate(dir.path(), Some("b")).unwrap().name, "b");
        let e = Dataset::locate(dir.path(), Some("c"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no c.inter") && e.contains("a.inter, b.inter"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = Dataset::locate(empty.path(), None).unwrap_err().to_string();
        assert!(e.contains("no *.inter file"), "{e}");
    }
}
