//! Data-lake inputs: every command that reads Parquet takes a directory of part files as Spark
//! and Hive write them (`_SUCCESS`, `.crc` and hidden files skipped) or a glob, reads it as
//! one table, and gives the same results as on the single file; a part with another schema
//! is named.

mod common;

use common::*;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `src` rewritten as a Spark-style table directory of `parts` part files (row order kept),
/// with the marker, checksum and hidden files Spark leaves beside them.
fn spark_dir(src: &Path, dir: &Path, parts: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(src).unwrap()).unwrap();
    // The file's schema with its metadata (sidtool's footer travels in it, as it does when an
    // engine copies a table's schema).
    let schema = b.schema().clone();
    let mut r = b.with_batch_size(1 << 20).build().unwrap();
    let all = r.next().unwrap().unwrap().with_schema(schema).unwrap();
    let n = all.num_rows();
    let per = n.div_ceil(parts);
    for p in 0..parts {
        let (start, len) = (p * per, per.min(n - p * per));
        let name = format!("part-{p:05}-6f1c2e.c000.snappy.parquet");
        let f = std::fs::File::create(dir.join(&name)).unwrap();
        let mut w = ArrowWriter::try_new(f, all.schema(), None).unwrap();
        w.write(&all.slice(start, len)).unwrap();
        w.close().unwrap();
        std::fs::write(dir.join(format!(".{name}.crc")), b"crc").unwrap();
    }
    std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
    dir.to_path_buf()
}

/// The final IDs of a sids table, as `export` prints them.
fn ids(sids: &Path) -> String {
    ok_out(&["export", s(sids), "--format", "index-json", "--out", "-"]).0
}

#[test]
fn every_reading_command_takes_a_part_directory_or_a_glob() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items.parquet");
    let dir = spark_dir(&items, &t.path().join("items"), 3);
    let glob = t.path().join("items/part-*.parquet");

    // build: the directory and the glob give the single file's IDs.
    let build = |input: &Path, out: &str| {
        let out = t.path().join(out);
        ok(&[
            "build",
            s(input),
            "--codebook-sizes",
            "8,4",
            "--out",
            s(&out),
            "-q",
        ]);
        out.join("sids.parquet")
    };
    let single = ids(&build(&items, "b-file"));
    assert_eq!(ids(&build(&dir, "b-dir")), single);
    assert_eq!(ids(&build(&glob, "b-glob")), single);

    // embed: item text from parts.
    let text = testdata("items_text.parquet");
    let text_dir = spark_dir(&text, &t.path().join("text"), 3);
    let embed = |input: &Path, out: &str| {
        let out = t.path().join(out);
        let model = testdata("tiny-qwen3");
        ok(&[
            "embed",
            s(input),
            "--model",
            s(&model),
            "--out",
            s(&out),
            "-q",
        ]);
        read_embeddings(&out)
    };
    assert_eq!(
        embed(&text_dir, "e-dir.parquet"),
        embed(&text, "e-file.parquet")
    );

    // train, assign, stats on a directory; the sids table itself split into parts.
    let q = t.path().join("q");
    ok(&[
        "train",
        s(&dir),
        "--codebook-sizes",
        "8,4",
        "--out",
        s(&q),
        "-q",
    ]);
    let sids = t.path().join("sids.parquet");
    ok(&[
        "assign",
        s(&glob),
        "--quantizer",
        s(&q),
        "--out",
        s(&sids),
        "-q",
    ]);
    assert_eq!(ids(&sids), single);
    let sids_dir = spark_dir(&sids, &t.path().join("sids"), 4);
    assert_eq!(ids(&sids_dir), single);
    let (stats_dir, _) = ok_out(&["stats", s(&sids_dir), "--json", "-"]);
    let (stats_file, _) = ok_out(&["stats", s(&sids), "--json", "-"]);
    assert_eq!(stats_dir, stats_file);
    let (inspect, _) = ok_out(&["inspect", s(&sids_dir)]);
    assert!(
        inspect.contains("rows: 400") && inspect.contains("parts: 4"),
        "{inspect}"
    );

    // vocab and eval read the parts; collab reads interactions and the catalogue from parts.
    let v = t.path().join("vocab");
    ok(&[
        "vocab",
        "--sids",
        s(&sids_dir),
        "--out",
        s(&v),
        "--llm",
        s(&testdata("tiny-qwen3")),
        "-q",
    ]);
    assert!(v.join("tokenizer.json").is_file());
    let inter = t.path().join("inter.parquet");
    let (u, it, ts) = taste_groups();
    write_interactions(&inter, u, it, Some(ts));
    let inter_dir = spark_dir(&inter, &t.path().join("inter"), 2);
    // Figures to 9 significant digits (sums over hash maps may add in another order), without
    // the table's name.
    fn rounded(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap();
                Value::String(format!("{x:.9e}"))
            }
            Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .filter(|(k, _)| k != "table")
                    .map(|(k, v)| (k, rounded(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    let eval = |table: &Path, interactions: &Path| {
        let (out, _) = ok_out(&[
            "eval",
            s(table),
            "--interactions",
            s(interactions),
            "--out",
            "-",
        ]);
        rounded(serde_json::from_str(&out).unwrap())
    };
    assert_eq!(eval(&sids_dir, &inter_dir), eval(&sids, &inter));
    let collab = |interactions: &Path, catalogue: &Path, out: &str| {
        let out = t.path().join(out);
        ok(&[
            "collab",
            s(interactions),
            "--items",
            s(catalogue),
            "--out",
            s(&out),
            "--collab-dim",
            "4",
            "-q",
        ]);
        read_embeddings_column(&out, "collab_embedding")
    };
    assert_eq!(
        collab(&inter_dir, &glob, "c-dir.parquet"),
        collab(&inter, &items, "c-file.parquet")
    );
}

#[test]
fn a_part_with_another_schema_or_not_parquet_is_named() {
    let t = tempfile::tempdir().unwrap();
    let dir = spark_dir(&testdata("items.parquet"), &t.path().join("items"), 2);
    let odd = dir.join("part-00009-odd.parquet");
    write_batch(&odd, vec![("item_id", str_ids(3))]);
    let err = fails(&["build", s(&dir), "--out", s(&t.path().join("o"))]);
    assert!(
        err.contains("part-00009-odd.parquet") && err.contains("another schema"),
        "{err}"
    );
    std::fs::remove_file(&odd).unwrap();
    std::fs::write(dir.join("part-00009-text"), b"not parquet").unwrap();
    let err = fails(&["train", s(&dir), "--out", s(&t.path().join("q"))]);
    assert!(err.contains("part-00009-text"), "{err}");
    let err = fails(&[
        "train",
        s(&t.path().join("nothing-*.parquet")),
        "--out",
        s(&t.path().join("q")),
    ]);
    assert!(err.contains("matches no file"), "{err}");
    assert!(!t.path().join("o").exists() && !t.path().join("q").exists());
}
