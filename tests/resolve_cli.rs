//! `sidtool resolve`: raw codes of partitions coded apart (`assign --dedup none`), resolved
//! globally, give exactly the single-machine `assign` output; a directory of part files as
//! Spark writes it is read as one table.

mod common;

use arrow_array::{Array, RecordBatch};
use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_all(path: &Path) -> RecordBatch {
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut batches: Vec<RecordBatch> = r.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 1, "the test tables fit one batch");
    batches.pop().unwrap()
}

#[test]
fn partitions_resolved_globally_equal_the_single_machine_assign() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items.parquet");
    let q = t.path().join("q");
    // Few codes for 400 items: many collisions, so the resolution has work to do.
    ok(&[
        "train",
        s(&items),
        "--codebook-sizes",
        "8,4",
        "--out",
        s(&q),
        "-q",
    ]);
    let reference = t.path().join("ref.parquet");
    let ref_stats = t.path().join("ref.json");
    ok(&[
        "assign",
        s(&items),
        "--quantizer",
        s(&q),
        "--out",
        s(&reference),
        "--stats",
        s(&ref_stats),
        "-q",
    ]);
    // Four partitions of the catalogue, in a Spark-style directory.
    let all = read_all(&items);
    let parts = t.path().join("items-parts");
    std::fs::create_dir(&parts).unwrap();
    let raw = t.path().join("raw-codes");
    std::fs::create_dir(&raw).unwrap();
    for k in 0..4 {
        let b = all.slice(k * 100, 100);
        let part = parts.join(format!("part-{k:05}.parquet"));
        write_batch(
            &part,
            vec![
                ("item_id", b.column_by_name("item_id").unwrap().clone()),
                ("embedding", b.column_by_name("embedding").unwrap().clone()),
            ],
        );
        // Each worker codes its partition without resolving collisions.
        ok(&[
            "assign",
            s(&part),
            "--quantizer",
            s(&q),
            "--dedup",
            "none",
            "--out",
            s(&raw.join(format!("part-{k:05}.parquet"))),
            "-q",
        ]);
        // Per-partition resolution is what breaks uniqueness across partitions.
        ok(&[
            "assign",
            s(&part),
            "--quantizer",
            s(&q),
            "--out",
            s(&t.path().join(format!("local-{k}.parquet"))),
            "-q",
        ]);
    }
    std::fs::write(raw.join("_SUCCESS"), "").unwrap();
    std::fs::write(raw.join(".part-00000.parquet.crc"), "crc").unwrap();
    let resolved = t.path().join("sids.parquet");
    let stats = t.path().join("stats.json");
    ok(&[
        "resolve",
        s(&raw),
        "--out",
        s(&resolved),
        "--stats",
        s(&stats),
        "-q",
    ]);
    assert_eq!(
        std::fs::read(&resolved).unwrap(),
        std::fs::read(&reference).unwrap(),
        "the distributed path gives the single-machine table, byte for byte"
    );
    let (a, b) = (read_json(&stats), read_json(&ref_stats));
    assert_eq!(a["before"], b["before"]);
    assert_eq!(a["after"], b["after"]);
    assert_eq!(a["after"]["distinct_ids"], 400);
    // Resolving each partition on its own gives IDs that another partition also holds.
    let mut sids = std::collections::HashSet::new();
    let mut clashes = 0;
    for k in 0..4 {
        let b = read_all(&t.path().join(format!("local-{k}.parquet")));
        let col = b.column_by_name("sid").unwrap();
        let col = arrow_array::cast::AsArray::as_string::<i32>(col);
        for i in 0..col.len() {
            clashes += usize::from(!sids.insert(col.value(i).to_string()));
        }
    }
    assert!(
        clashes > 0,
        "the partitions' own resolution collides across partitions"
    );

    // A later day: IDs handed out for the first 300 items are kept. The distributed path with
    // --existing gives what `assign --existing` gives on one machine, byte for byte.
    let day1_items = t.path().join("day1-items.parquet");
    let b = all.slice(0, 300);
    write_batch(
        &day1_items,
        vec![
            ("item_id", b.column_by_name("item_id").unwrap().clone()),
            ("embedding", b.column_by_name("embedding").unwrap().clone()),
        ],
    );
    let day1 = t.path().join("day1.parquet");
    ok(&[
        "assign",
        s(&day1_items),
        "--quantizer",
        s(&q),
        "--out",
        s(&day1),
        "-q",
    ]);
    let day2_ref = t.path().join("day2-ref.parquet");
    ok(&[
        "assign",
        s(&items),
        "--quantizer",
        s(&q),
        "--existing",
        s(&day1),
        "--out",
        s(&day2_ref),
        "-q",
    ]);
    let day2 = t.path().join("day2.parquet");
    ok(&[
        "resolve",
        s(&raw),
        "--existing",
        s(&day1),
        "--out",
        s(&day2),
        "-q",
    ]);
    assert_eq!(
        std::fs::read(&day2).unwrap(),
        std::fs::read(&day2_ref).unwrap(),
        "resolve --existing gives assign --existing's table, byte for byte"
    );
    let first = read_all(&day1);
    let kept = read_all(&day2).slice(0, 300);
    assert_eq!(first.column_by_name("sid"), kept.column_by_name("sid"));
    // Parts an engine rewrote without sidtool's footer, codes as List<Int32> (Spark has no
    // unsigned types): resolved with the quantizer that coded them, the same table.
    let bare = t.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    for k in 0..4 {
        let b = read_all(&raw.join(format!("part-{k:05}.parquet")));
        let codes = b.column_by_name("codes").unwrap();
        let codes = arrow_array::cast::AsArray::as_fixed_size_list(codes);
        let lists: Vec<Option<Vec<Option<i32>>>> = (0..codes.len())
            .map(|i| {
                let v = codes.value(i);
                let v =
                    arrow_array::cast::AsArray::as_primitive::<arrow_array::types::UInt16Type>(&v);
                Some(v.values().iter().map(|&c| Some(c as i32)).collect())
            })
            .collect();
        let list = arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(
            lists,
        );
        write_batch(
            &bare.join(format!("part-{k:05}-c000.snappy.parquet")),
            vec![
                ("item_id", b.column_by_name("item_id").unwrap().clone()),
                ("codes", std::sync::Arc::new(list)),
            ],
        );
    }
    let err = fails(&["resolve", s(&bare), "--out", s(&t.path().join("x.parquet"))]);
    assert!(
        err.contains("has no sidtool footer") && err.contains("--quantizer"),
        "{err}"
    );
    let from_bare = t.path().join("from-bare.parquet");
    ok(&[
        "resolve",
        s(&bare),
        "--quantizer",
        s(&q),
        "--out",
        s(&from_bare),
        "-q",
    ]);
    assert_eq!(
        std::fs::read(&from_bare).unwrap(),
        std::fs::read(&reference).unwrap(),
        "footer-less parts with the quantizer give the single-machine table"
    );
    // The quantizer must be the one that coded parts that do carry a footer.
    let other = t.path().join("other-q");
    ok(&[
        "train",
        s(&items),
        "--codebook-sizes",
        "8,4",
        "--seed",
        "9",
        "--out",
        s(&other),
        "-q",
    ]);
    let err = fails(&[
        "resolve",
        s(&raw),
        "--quantizer",
        s(&other),
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(err.contains("another quantizer"), "{err}");

    // An existing table of another resolution is refused by name.
    let err = fails(&[
        "resolve",
        s(&raw),
        "--existing",
        s(&day1),
        "--dedup",
        "none",
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(
        err.contains("was made with --dedup suffix, not none"),
        "{err}"
    );

    // Parts that were resolved already, overlap, or ask for reassign are refused clearly.
    let err = fails(&[
        "resolve",
        s(&reference),
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(
        err.contains("already resolved") && err.contains("--dedup none"),
        "{err}"
    );
    let p0 = raw.join("part-00000.parquet");
    let err = fails(&[
        "resolve",
        s(&p0),
        s(&p0),
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(
        err.contains("is also in") && err.contains("must not overlap"),
        "{err}"
    );
    let err = fails(&[
        "resolve",
        s(&raw),
        "--dedup",
        "reassign",
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(
        err.contains("reassign") && err.contains("one machine"),
        "{err}"
    );
    assert!(!t.path().join("x.parquet").exists());
}
