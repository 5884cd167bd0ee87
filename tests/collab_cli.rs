//! `sidtool collab` end to end through the binary.

mod common;

use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray};
use common::*;
use std::path::Path;
use std::sync::Arc;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A catalogue of `item-0000`… (with a text column, as a real items file has) and
/// interactions of 3 taste groups over the first 30 items; items 30.. are never touched.
fn inputs(dir: &Path, n_items: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let items = dir.join("items.parquet");
    write_batch(
        &items,
        vec![
            (
                "title",
                Arc::new(StringArray::from_iter_values(
                    (0..n_items).map(|i| format!("t{i}")),
                )),
            ),
            ("item_id", str_ids(n_items)),
        ],
    );
    let (mut u, mut it, mut ts) = taste_groups();
    u.push("u0".into());
    it.push("gone".into());
    ts.push(5);
    let inter = dir.join("interactions.parquet");
    write_interactions(&inter, u, it, Some(ts));
    (items, inter)
}

fn read_collab(path: &Path, column: &str) -> (Vec<String>, Vec<Vec<f32>>) {
    let (ids, m) = sidtool::io::embeddings::read_all(path, "item_id", column, 1024).unwrap();
    let names = (0..ids.len()).map(|i| ids.display(i)).collect();
    (names, (0..m.rows).map(|r| m.row(r).to_vec()).collect())
}

#[test]
fn writes_one_row_per_item_with_zero_rows_for_items_without_interactions() {
    let t = tempfile::tempdir().unwrap();
    let (items, inter) = inputs(t.path(), 40);
    let out = t.path().join("collab.parquet");
    let (report, _) = ok_out(&[
        "collab",
        p(&inter),
        "--items",
        p(&items),
        "--out",
        p(&out),
        "--collab-dim",
        "8",
        "--seed",
        "3",
    ]);
    assert!(
        report
            .contains("40 items, 60 users, 481 interactions (1 naming items not in the catalogue")
            && report.contains("10 items without interactions"),
        "{report}"
    );

    // Schema: item_id Utf8, collab_embedding FixedSizeList<Float32, 8>, both non-null.
    let f = std::fs::File::open(&out).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let schema = r.schema().clone();
    assert_eq!(schema.fields().len(), 2);
    assert_eq!(schema.field(0).name(), "item_id");
    assert_eq!(*schema.field(0).data_type(), arrow_schema::DataType::Utf8);
    assert_eq!(schema.field(1).name(), "collab_embedding");
    match schema.field(1).data_type() {
        arrow_schema::DataType::FixedSizeList(child, 8) => {
            assert_eq!(*child.data_type(), arrow_schema::DataType::Float32)
        }
        t => panic!("vector column type {t}"),
    }
    assert!(!schema.field(1).is_nullable());
    let meta = r.metadata().file_metadata().key_value_metadata().unwrap();
    let collab = meta.iter().find(|kv| kv.key == "sidtool:collab").unwrap();
    let v: serde_json::Value = serde_json::from_str(collab.value.as_ref().unwrap()).unwrap();
    assert_eq!(v["seed"], 3);
    assert_eq!(v["config"]["dim"], 8);
    assert_eq!(v["summary"]["without_interactions"], 10);

    let (ids, rows) = read_collab(&out, "collab_embedding");
    assert_eq!(ids.len(), 40);
    assert_eq!(ids[0], "\"item-0000\"", "catalogue order");
    assert_eq!(ids[39], "\"item-0039\"");
    for (i, v) in rows.iter().enumerate() {
        let norm: f32 = v.iter().map(|x| x * x).sum();
        if i < 30 {
            assert!((norm - 1.0).abs() < 1e-5, "row {i}: |v|² = {norm}");
        } else {
            assert!(v.iter().all(|&x| x == 0.0), "row {i} must be zero: {v:?}");
        }
    }

    // Same seed, one thread: the same vectors, bit for bit.
    let again = t.path().join("again.parquet");
    ok(&[
        "collab",
        p(&inter),
        "--items",
        p(&items),
        "--out",
        p(&again),
        "--collab-dim",
        "8",
        "--seed",
        "3",
        "--threads",
        "1",
    ]);
    assert_eq!(read_collab(&again, "collab_embedding").1, rows);
}

#[test]
fn config_section_sets_every_option_and_flags_override_it() {
    let t = tempfile::tempdir().unwrap();
    let (items, inter) = inputs(t.path(), 35);
    // Integer catalogue ids through a renamed column; Int32 item ids in the interactions.
    let int_items = t.path().join("int_items.parquet");
    write_batch(&int_items, vec![("id", int_ids(35))]);
    let int_inter = t.path().join("int_inter.parquet");
    write_batch(
        &int_inter,
        vec![
            (
                "user_id",
                Arc::new(Int64Array::from(vec![1, 1, 1, 2, 2])) as ArrayRef,
            ),
            (
                "item_id",
                Arc::new(Int32Array::from(vec![1000, 1001, 1002, 1001, 1002])),
            ),
        ],
    );
    let cfg = t.path().join("sidtool.toml");
    std::fs::write(
        &cfg,
        "seed = 9\n[input]\nid_column = \"id\"\n[collab]\ndim = 4\nwindow = 1\noversample = 3\n\
         power_iterations = 0\ncolumn = \"cf\"\n",
    )
    .unwrap();
    let out = t.path().join("a.parquet");
    let (report, _) = ok_out(&[
        "collab",
        p(&int_inter),
        "--items",
        p(&int_items),
        "--out",
        p(&out),
        "--config",
        p(&cfg),
    ]);
    assert!(report.contains("32 items without interactions"), "{report}");
    let (ids, rows) = read_collab(&out, "cf");
    assert_eq!((ids.len(), rows[0].len()), (35, 4));
    assert_eq!(ids[0], "1000");
    // Window 1 over 1000 1001 1002 / 1001 1002: pairs (1000,1001), (1001,1002) ×2.
    let f = std::fs::File::open(&out).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let meta = r.metadata().file_metadata().key_value_metadata().unwrap();
    let v: serde_json::Value = serde_json::from_str(
        meta.iter()
            .find(|kv| kv.key == "sidtool:collab")
            .unwrap()
            .value
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["seed"], 9);
    assert_eq!(v["config"]["window"], 1);
    assert_eq!(v["config"]["oversample"], 3);
    assert_eq!(v["config"]["power_iterations"], 0);
    assert_eq!(v["summary"]["nonzeros"], 4);

    // Flags win over the file.
    let out = t.path().join("b.parquet");
    ok(&[
        "collab",
        p(&inter),
        "--items",
        p(&items),
        "--out",
        p(&out),
        "--config",
        p(&cfg),
        "--id-column",
        "item_id",
        "--collab-dim",
        "6",
        "--window",
        "3",
        "--power-iterations",
        "1",
        "--oversample",
        "2",
        "--collab-column",
        "v",
        "--seed",
        "1",
    ]);
    let (ids, rows) = read_collab(&out, "v");
    assert_eq!((ids.len(), rows[0].len()), (35, 6));
}

#[test]
fn bad_input_fails_clearly_and_leaves_no_output() {
    let t = tempfile::tempdir().unwrap();
    let (items, inter) = inputs(t.path(), 40);
    let out = t.path().join("out").join("collab.parquet");
    std::fs::create_dir(t.path().join("out")).unwrap();
    let run = |inter: &Path, items: &Path, extra: &[&str]| {
        let mut args = vec!["collab", p(inter), "--items", p(items), "--out", p(&out)];
        args.extend_from_slice(extra);
        let err = fails(&args);
        assert!(!out.exists(), "no output after: {err}");
        assert!(
            entries(&t.path().join("out")).is_empty(),
            "no temp files: {err}"
        );
        err
    };

    // Missing column, in the interactions and in the catalogue.
    let no_user = t.path().join("no_user.parquet");
    write_batch(&no_user, vec![("item_id", str_ids(3))]);
    let err = run(&no_user, &items, &[]);
    assert!(
        err.contains("no_user.parquet, column `user_id`: no such column"),
        "{err}"
    );
    let err = run(&inter, &items, &["--id-column", "sku"]);
    assert!(
        err.contains("items.parquet, column `sku`: no such column") && err.contains("item_id"),
        "{err}"
    );

    // A null user id, with its row.
    let null_user = t.path().join("null_user.parquet");
    write_batch(
        &null_user,
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec![Some("a"), Some("a"), None])) as ArrayRef,
            ),
            ("item_id", str_ids(3)),
        ],
    );
    let err = run(&null_user, &items, &[]);
    assert!(
        err.contains("null_user.parquet, column `user_id`, row 2: is null"),
        "{err}"
    );

    // Duplicate catalogue ids.
    let dup = t.path().join("dup.parquet");
    write_batch(
        &dup,
        vec![(
            "item_id",
            Arc::new(StringArray::from(vec!["x", "y", "x"])) as ArrayRef,
        )],
    );
    let err = run(&inter, &dup, &[]);
    assert!(
        err.contains("dup.parquet, column `item_id`, row 2: duplicate item id \"x\""),
        "{err}"
    );

    // Nothing co-occurs: every user saw one item.
    let lonely = t.path().join("lonely.parquet");
    write_batch(
        &lonely,
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            ("item_id", str_ids(2)),
        ],
    );
    let err = run(&lonely, &items, &[]);
    assert!(
        err.contains("lonely.parquet") && err.contains("no two different catalogue items"),
        "{err}"
    );

    // Unusable settings fail before any reading.
    let err = run(&inter, &items, &["--collab-dim", "0"]);
    assert!(
        err.contains("invalid configuration") && err.contains("dim"),
        "{err}"
    );
}
