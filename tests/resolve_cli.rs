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

/// The rows of `b` as an items file: `item_id` and `embedding`.
fn write_items(path: &Path, b: &RecordBatch) {
    write_batch(
        path,
        vec![
            ("item_id", b.column_by_name("item_id").unwrap().clone()),
            ("embedding", b.column_by_name("embedding").unwrap().clone()),
        ],
    );
}

/// A quantizer with few codes for the 400 test items (many collisions, so the resolution has
/// work to do) and the catalogue cut into four partitions, in Spark-style directories: the
/// items' (`items-parts`) and each partition's raw codes (`raw-codes`, `assign --dedup none`).
struct Partitioned {
    items: std::path::PathBuf,
    q: std::path::PathBuf,
    all: RecordBatch,
    parts: std::path::PathBuf,
    raw: std::path::PathBuf,
}

fn partitioned(dir: &Path) -> Partitioned {
    let items = testdata("items.parquet");
    let q = dir.join("q");
    ok(&[
        "train",
        s(&items),
        "--codebook-sizes",
        "8,4",
        "--out",
        s(&q),
        "-q",
    ]);
    let all = read_all(&items);
    let parts = dir.join("items-parts");
    std::fs::create_dir(&parts).unwrap();
    let raw = dir.join("raw-codes");
    std::fs::create_dir(&raw).unwrap();
    for k in 0..4 {
        let part = parts.join(format!("part-{k:05}.parquet"));
        write_items(&part, &all.slice(k * 100, 100));
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
    }
    Partitioned {
        items,
        q,
        all,
        parts,
        raw,
    }
}

#[test]
fn partitions_resolved_globally_equal_the_single_machine_assign() {
    let t = tempfile::tempdir().unwrap();
    let Partitioned {
        items,
        q,
        all,
        parts,
        raw,
    } = partitioned(t.path());
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
    for k in 0..4 {
        // Per-partition resolution is what breaks uniqueness across partitions.
        ok(&[
            "assign",
            s(&parts.join(format!("part-{k:05}.parquet"))),
            "--quantizer",
            s(&q),
            "--out",
            s(&t.path().join(format!("local-{k}.parquet"))),
            "-q",
        ]);
    }
    std::fs::write(raw.join("_SUCCESS"), "").unwrap();
    std::fs::write(raw.join(".part-00000.parquet.crc"), "crc").unwrap();
    // Spark writes a part file for an empty partition too: it is skipped.
    let b = read_all(&raw.join("part-00000.parquet"));
    let empty = raw.join("part-00004.parquet");
    write_batch(
        &empty,
        vec![
            ("item_id", b.column_by_name("item_id").unwrap().slice(0, 0)),
            ("codes", b.column_by_name("codes").unwrap().slice(0, 0)),
        ],
    );
    let err = fails(&[
        "resolve",
        s(&empty),
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(err.contains("no rows in the parts (1 file read)"), "{err}");
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
    write_items(&day1_items, &all.slice(0, 300));
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
    assert!(!t.path().join("x.parquet").exists());
}

/// `--dedup reassign` over partitions: with the vectors the parts were coded from (read by
/// item id, only the colliding items'), the single-machine `assign --dedup reassign` table,
/// byte for byte, also with `--existing`; wrong or missing vectors are refused by name.
#[test]
fn reassign_over_partitions_equals_the_single_machine_assign() {
    let t = tempfile::tempdir().unwrap();
    let Partitioned {
        items,
        q,
        all,
        parts,
        raw,
    } = partitioned(t.path());
    let assign = |input: &Path, out: &Path, more: &[&str]| {
        let mut a = vec!["assign", s(input), "--quantizer", s(&q), "--out", s(out)];
        a.extend(["--dedup", "reassign", "-q"]);
        a.extend(more);
        ok(&a);
    };
    let reference = t.path().join("ref.parquet");
    let ref_stats = t.path().join("ref.json");
    assign(&items, &reference, &["--stats", s(&ref_stats)]);
    let resolve = |out: &Path, more: &[&str]| {
        let mut a = vec!["resolve", s(&raw), "--dedup", "reassign", "--out", s(out)];
        a.extend(["--quantizer", s(&q), "-q"]);
        a.extend(more);
        ok(&a);
    };
    // The vectors as one file, and as the directory of partitions the workers read.
    for (name, vectors) in [("file", &items), ("dir", &parts)] {
        let got = t.path().join(format!("{name}.parquet"));
        let stats = t.path().join(format!("{name}.json"));
        resolve(&got, &["--embeddings", s(vectors), "--stats", s(&stats)]);
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(&reference).unwrap(),
            "reassign over partitions ({name}) gives the single-machine table, byte for byte"
        );
        let (a, b) = (read_json(&stats), read_json(&ref_stats));
        assert_eq!(a["resolution"], b["resolution"]);
        assert_eq!(a["after"]["distinct_ids"], 400);
    }
    // 8 × 4 codes for 400 items: reassign moved some and fell back to the suffix for others.
    let r = &read_json(&ref_stats)["resolution"];
    assert!(
        r["moved_items"].as_u64().unwrap() > 0 && r["unresolved_by_reassign"].as_u64().unwrap() > 0,
        "{r}"
    );

    // --existing: day 1's reassigned IDs are kept, as `assign --existing` keeps them.
    let day1_items = t.path().join("day1-items.parquet");
    write_items(&day1_items, &all.slice(0, 300));
    let day1 = t.path().join("day1.parquet");
    assign(&day1_items, &day1, &[]);
    let want = t.path().join("day2-ref.parquet");
    assign(&items, &want, &["--existing", s(&day1)]);
    let got = t.path().join("day2.parquet");
    resolve(&got, &["--existing", s(&day1), "--embeddings", s(&items)]);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());

    // Refusals: no vectors; vectors that lack colliding items; vectors the parts were not
    // coded from (the rows' vectors shifted by one). No output is written.
    let x = t.path().join("x.parquet");
    let base = ["resolve", s(&raw), "--dedup", "reassign", "--out", s(&x)];
    let err = fails(&base);
    assert!(
        err.contains("--embeddings") && err.contains("--quantizer"),
        "{err}"
    );
    let narrow = t.path().join("narrow.parquet");
    ok(&[
        "bench",
        "gen",
        "--n",
        "400",
        "--d",
        "8",
        "--out",
        s(&narrow),
    ]);
    let err = fails(
        &[
            &base[..],
            &["--quantizer", s(&q), "--embeddings", s(&narrow)],
        ]
        .concat(),
    );
    assert!(
        err.contains("narrow.parquet") && err.contains("8 dimensions"),
        "{err}"
    );
    let err = fails(&[
        "resolve",
        s(&raw),
        "--quantizer",
        s(&q),
        "--embeddings",
        s(&items),
        "--out",
        s(&x),
    ]);
    assert!(err.contains("only read by --dedup reassign"), "{err}");
    let one_part = parts.join("part-00000.parquet");
    let err = fails(
        &[
            &base[..],
            &["--quantizer", s(&q), "--embeddings", s(&one_part)],
        ]
        .concat(),
    );
    assert!(
        err.contains("part-00000.parquet")
            && err.contains("has no vector for item")
            && err.contains("column `item_id`"),
        "{err}"
    );
    let shifted = t.path().join("shifted.parquet");
    let ids = arrow_array::cast::AsArray::as_string::<i32>(all.column_by_name("item_id").unwrap());
    let mut rotated: Vec<&str> = (0..ids.len()).map(|i| ids.value(i)).collect();
    rotated.rotate_left(1);
    write_batch(
        &shifted,
        vec![
            (
                "item_id",
                std::sync::Arc::new(arrow_array::StringArray::from(rotated)),
            ),
            (
                "embedding",
                all.column_by_name("embedding").unwrap().clone(),
            ),
        ],
    );
    let err = fails(
        &[
            &base[..],
            &["--quantizer", s(&q), "--embeddings", s(&shifted)],
        ]
        .concat(),
    );
    assert!(
        err.contains("shifted.parquet")
            && err.contains("the quantizer codes item")
            && err.contains("the vectors the parts were coded from"),
        "{err}"
    );
    assert!(!x.exists());
}
