//! End-to-end tests of the `sidtool` binary on shipped and generated data.

mod common;

use common::*;
use sidtool::ids::dedup::duplicate_ids;
use sidtool::ids::sid_table;
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn small_config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("sidtool.toml");
    std::fs::write(&cfg, "seed = 7\n[quantizer]\ncodebook_sizes = [16, 8, 8]\n").unwrap();
    cfg
}

#[test]
fn build_on_testdata_writes_every_output_with_unique_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (report, err) = ok_out(&[
        "build",
        p(&testdata("items.parquet")),
        "--config",
        p(&testdata("sidtool.toml")),
        "--out",
        p(&out),
    ]);
    assert!(
        report.contains("collision rate") && !err.contains("collision rate"),
        "stats table on stdout:\n{report}\nnot stderr:\n{err}"
    );
    assert!(err.contains("wrote "), "log lines on stderr:\n{err}");
    let mut files = entries(&out);
    files.sort();
    assert_eq!(
        files,
        [
            "embeddings.parquet",
            "manifest.json",
            "quantizer",
            "sid_tokens.json",
            "sids.parquet",
            "special_tokens_map.json",
            "stats.json",
            // The example config names an LLM ([vocab] llm): its tokenizer folder and the tries.
            "tokenizer.json",
            "tokenizer_config.json",
            "trie.json",
            "trie.parquet",
        ]
    );

    let t = sid_table::read(&out.join("sids.parquet")).unwrap();
    assert_eq!(t.ids.len(), 400);
    let meta = t.meta.as_ref().unwrap();
    assert_eq!(
        t.width,
        meta.codebook_sizes.len() + 1,
        "suffix level by default"
    );
    assert_eq!(duplicate_ids(&t.codes, t.width, &t.ids), 0);
    for (i, c) in t.codes.chunks(t.width).enumerate() {
        for (l, &code) in c[..meta.codebook_sizes.len()].iter().enumerate() {
            assert!(
                (code as usize) < meta.codebook_sizes[l],
                "row {i} level {l}"
            );
        }
    }
    let listing = ok(&["inspect", p(&out.join("sids.parquet"))]);
    let stdout =
        String::from_utf8(sidtool(&["inspect", p(&out.join("sids.parquet"))]).stdout).unwrap();
    assert!(listing.is_empty() || !listing.contains("error"));
    assert!(
        stdout.contains("codes")
            && stdout.contains("FixedSizeList")
            && stdout.contains("sid=\"<a_"),
        "{stdout}"
    );

    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["after"]["collision_rate"], 0.0);
    assert_eq!(stats["after"]["n_items"], 400);
    let rel = stats["relative_reconstruction_error"].as_array().unwrap();
    assert_eq!(rel.len(), 3);
    assert!(
        rel.windows(2).all(|w| w[1].as_f64() < w[0].as_f64()),
        "{rel:?}"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let (sha, _) = sidtool::pipeline::sha256_file(&testdata("items.parquet")).unwrap();
    assert_eq!(manifest["inputs"][0]["sha256"], sha);
    assert_eq!(manifest["config"]["seed"], 42);
    let stages: Vec<&str> = manifest["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["read", "train", "assign", "write", "vocab"]);
    let q = sidtool::quant::load(&out.join("quantizer")).unwrap();
    assert_eq!(q.dim(), 64);
    let (_, emb) = sidtool::io::embeddings::read_all(
        &out.join("embeddings.parquet"),
        "item_id",
        "embedding",
        1024,
    )
    .unwrap();
    assert_eq!(emb.rows, 400);
}

#[test]
fn same_seed_gives_identical_ids_and_flags_override_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path());
    let items = testdata("items.parquet");
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec![
            "build",
            p(&items),
            "--config",
            p(&cfg),
            "--out",
            p(&out),
            "-q",
        ];
        args.extend_from_slice(extra);
        let err = ok(&args);
        assert!(err.is_empty(), "--quiet prints nothing on success: {err}");
        sid_table::read(&out.join("sids.parquet")).unwrap()
    };
    let a = run("a", &[]);
    let b = run("b", &[]);
    assert_eq!(a.codes, b.codes);
    let c = run("c", &["--seed", "8"]);
    assert_ne!(a.codes, c.codes, "a different seed should move some codes");
    let d = run("d", &["--codebook-sizes", "8,4"]);
    assert_eq!(d.meta.unwrap().codebook_sizes, vec![8, 4]);
}

#[test]
fn train_assign_stats_chain_matches_build() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path());
    let items = testdata("items.parquet");
    let out = tmp.path().join("build");
    ok(&[
        "build",
        p(&items),
        "--config",
        p(&cfg),
        "--out",
        p(&out),
        "-q",
    ]);
    let q = tmp.path().join("q");
    ok(&["train", p(&items), "--config", p(&cfg), "--out", p(&q)]);
    let sids = tmp.path().join("sids.parquet");
    let stats = tmp.path().join("stats.json");
    ok(&[
        "assign",
        p(&items),
        "--quantizer",
        p(&q),
        "--out",
        p(&sids),
        "--stats",
        p(&stats),
    ]);
    let built = sid_table::read(&out.join("sids.parquet")).unwrap();
    let assigned = sid_table::read(&sids).unwrap();
    assert_eq!(built.codes, assigned.codes, "train+assign reproduces build");
    let json2 = tmp.path().join("stats2.json");
    ok(&["stats", p(&sids), "--json", p(&json2)]);
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json2).unwrap()).unwrap();
    assert_eq!(a["before"], b["before"]);
    assert_eq!(a["after"], b["after"]);
    assert!(b["relative_reconstruction_error"].is_null());
    let json3 = tmp.path().join("stats3.json");
    ok(&[
        "stats",
        p(&sids),
        "--json",
        p(&json3),
        "--embeddings",
        p(&items),
        "--quantizer",
        p(&q),
    ]);
    let c = read_json(&json3);
    let (x, y) = (
        &a["relative_reconstruction_error"],
        &c["relative_reconstruction_error"],
    );
    for m in 0..3 {
        assert!(
            (x[m].as_f64().unwrap() - y[m].as_f64().unwrap()).abs() < 1e-9,
            "{x} vs {y}"
        );
    }
    let shown = String::from_utf8(sidtool(&["inspect", p(&q)]).stdout).unwrap();
    assert!(
        shown.contains("codebooks.0") && shown.contains("rq-kmeans"),
        "{shown}"
    );
}

/// 300 items, 200 of them the very same vector: every strategy must cope.
fn colliding(dir: &Path) -> std::path::PathBuf {
    let mut rows = clustered(300, 8, 5);
    for r in rows.iter_mut().take(200) {
        *r = vec![0.5; 8];
    }
    let path = dir.join("collide.parquet");
    write_batch(
        &path,
        vec![
            ("item_id", int_ids(300)),
            ("embedding", fsl(&some(rows), 8)),
        ],
    );
    path
}

#[test]
fn heavy_collisions_are_resolved_by_suffix_and_reassign_and_reported_by_none() {
    let tmp = tempfile::tempdir().unwrap();
    let items = colliding(tmp.path());
    for dedup in ["suffix", "reassign", "none"] {
        let out = tmp.path().join(dedup);
        ok(&[
            "build",
            p(&items),
            "--codebook-sizes",
            "4,4",
            "--dedup",
            dedup,
            "--out",
            p(&out),
            "-q",
        ]);
        let t = sid_table::read(&out.join("sids.parquet")).unwrap();
        let dups = duplicate_ids(&t.codes, t.width, &t.ids);
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap())
                .unwrap();
        assert!(stats["before"]["max_group_size"].as_u64().unwrap() >= 200);
        assert_eq!(
            *t.group_size.iter().max().unwrap() as u64,
            stats["before"]["max_group_size"].as_u64().unwrap()
        );
        match dedup {
            "none" => {
                assert!(dups >= 200);
                assert!(stats["after"]["collision_rate"].as_f64().unwrap() > 0.5);
            }
            _ => {
                assert_eq!(dups, 0, "{dedup}: final IDs must be unique");
                assert_eq!(stats["after"]["collision_rate"], 0.0);
            }
        }
        if dedup == "reassign" {
            // 4 last-level codes cannot hold 200 identical items: the suffix fallback is used.
            assert!(t.original_codes.is_some());
            assert!(
                stats["resolution"]["unresolved_by_reassign"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
}

#[test]
fn reassign_keeps_ids_at_l_tokens_when_there_is_room() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--codebook-sizes",
        "8,128",
        "--dedup",
        "reassign",
        "--out",
        p(&out),
        "-q",
    ]);
    let t = sid_table::read(&out.join("sids.parquet")).unwrap();
    assert_eq!(t.width, 2);
    assert_eq!(duplicate_ids(&t.codes, 2, &t.ids), 0);
    let moved = t
        .original_codes
        .unwrap()
        .iter()
        .zip(&t.codes)
        .filter(|(a, b)| a != b)
        .count();
    assert!(moved > 0, "some items had to move");
}

#[test]
fn accepts_int_ids_list_f64_vectors_and_other_column_names() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<f64>> = clustered(120, 6, 4)
        .into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect();
    let path = tmp.path().join("in.parquet");
    write_batch(&path, vec![("movie", int_ids(120)), ("vec", list64(&rows))]);
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&path),
        "--id-column",
        "movie",
        "--embedding-column",
        "vec",
        "--codebook-sizes",
        "4,4",
        "--out",
        p(&out),
        "-q",
    ]);
    let t = sid_table::read(&out.join("sids.parquet")).unwrap();
    assert!(matches!(t.ids, sidtool::item_id::ItemIds::Int(ref v) if v[0] == 1000));
    let s =
        std::fs::read_to_string(out.join("sids.parquet").with_file_name("manifest.json")).unwrap();
    assert!(s.contains("\"id_column\": \"movie\""));
}

#[test]
fn thread_count_does_not_change_ids_and_balanced_mode_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let items = testdata("items.parquet");
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec![
            "build",
            p(&items),
            "--codebook-sizes",
            "32,16,16",
            "--out",
            p(&out),
            "-q",
        ];
        args.extend_from_slice(extra);
        ok(&args);
        sid_table::read(&out.join("sids.parquet")).unwrap().codes
    };
    assert_eq!(
        run("t1", &["--threads", "1"]),
        run("t2", &["--threads", "2"])
    );
    let balanced = tmp.path().join("bal");
    ok(&[
        "build",
        p(&items),
        "--codebook-sizes",
        "16,8",
        "--balanced",
        "--out",
        p(&balanced),
        "-q",
    ]);
    let m = std::fs::read_to_string(balanced.join("manifest.json")).unwrap();
    assert!(m.contains("\"balanced\": true"), "{m}");
}

#[test]
fn custom_token_format_is_used_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--codebook-sizes",
        "8,8",
        "--token-format",
        "[{level}{code}]",
        "--out",
        p(&out),
        "-q",
    ]);
    let shown = String::from_utf8(
        sidtool(&["inspect", p(&out.join("sids.parquet")), "--rows", "1"]).stdout,
    )
    .unwrap();
    assert!(shown.contains("sid=\"[a"), "{shown}");
    assert!(shown.contains("[{level}{code}]"), "{shown}");
}

// ---- bad input: one clear message naming file/column/row, exit 1, nothing left behind ----

fn assert_bad(items: &Path, extra: &[&str], expect: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args = vec![
        "build",
        p(items),
        "--codebook-sizes",
        "4,4",
        "--out",
        p(&out),
    ];
    args.extend_from_slice(extra);
    let err = fails(&args);
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert!(entries(&out).is_empty(), "left behind: {:?}", entries(&out));
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
}

fn bad_file(
    rows: usize,
    cols: Vec<(&str, arrow_array::ArrayRef)>,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let _ = rows;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.parquet");
    write_batch(&path, cols);
    (tmp, path)
}

#[test]
fn bad_missing_file() {
    assert_bad(
        Path::new("/nonexistent/items.parquet"),
        &[],
        &["/nonexistent/items.parquet", "No such file"],
    );
}

#[test]
fn bad_not_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("items.parquet");
    std::fs::write(&path, "item_id,embedding\n1,2\n").unwrap();
    assert_bad(
        &path,
        &[],
        &["items.parquet", "not a readable Parquet file"],
    );
}

#[test]
fn bad_missing_id_column() {
    let (_t, path) = bad_file(
        10,
        vec![
            ("id", str_ids(10)),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    assert_bad(
        &path,
        &[],
        &[
            "bad.parquet",
            "column `item_id`",
            "no such column",
            "id, embedding",
        ],
    );
}

#[test]
fn bad_missing_embedding_column() {
    // Neither vectors nor the text columns the default template reads.
    let (_t, path) = bad_file(10, vec![("item_id", str_ids(10)), ("name", str_ids(10))]);
    assert_bad(
        &path,
        &[],
        &[
            "bad.parquet",
            "none of the columns the text template",
            "the file has: item_id, name",
            "add an embedding column",
        ],
    );
}

#[test]
fn bad_wrong_id_type() {
    let ids: arrow_array::ArrayRef =
        std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.5; 10]));
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", ids),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    assert_bad(&path, &[], &["column `item_id`", "Float64", "Utf8"]);
}

#[test]
fn bad_wrong_embedding_type() {
    let (_t, path) = bad_file(
        10,
        vec![("item_id", str_ids(10)), ("embedding", str_ids(10))],
    );
    assert_bad(
        &path,
        &[],
        &["column `embedding`", "has type Utf8", "FixedSizeList"],
    );
}

#[test]
fn bad_null_id() {
    let ids: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::StringArray::from(
        (0..10)
            .map(|i| if i == 6 { None } else { Some(format!("x{i}")) })
            .collect::<Vec<_>>(),
    ));
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", ids),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    assert_bad(&path, &[], &["column `item_id`", "row 6", "null"]);
}

#[test]
fn bad_null_vector() {
    let mut rows = some(clustered(10, 4, 2));
    rows[3] = None;
    let (_t, path) = bad_file(
        10,
        vec![("item_id", str_ids(10)), ("embedding", fsl(&rows, 4))],
    );
    assert_bad(&path, &[], &["column `embedding`", "row 3", "null"]);
}

#[test]
fn bad_duplicate_ids() {
    let ids: arrow_array::ArrayRef = std::sync::Arc::new(
        arrow_array::StringArray::from_iter_values((0..10).map(|i| format!("x{}", i.min(7)))),
    );
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", ids),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    assert_bad(
        &path,
        &[],
        &[
            "column `item_id`",
            "row 8",
            "duplicate item id \"x7\"",
            "row 7",
        ],
    );
}

#[test]
fn bad_nan_and_inf() {
    for (v, word) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut rows = clustered(10, 4, 2);
        rows[5][2] = v;
        let (_t, path) = bad_file(
            10,
            vec![("item_id", str_ids(10)), ("embedding", fsl(&some(rows), 4))],
        );
        assert_bad(
            &path,
            &[],
            &["column `embedding`", "row 5", "component 2", word],
        );
    }
}

#[test]
fn bad_ragged_vectors() {
    let mut rows: Vec<Vec<f64>> = vec![vec![0.1, 0.2, 0.3]; 10];
    rows[4] = vec![0.1, 0.2];
    let (_t, path) = bad_file(
        10,
        vec![("item_id", str_ids(10)), ("embedding", list64(&rows))],
    );
    assert_bad(
        &path,
        &[],
        &[
            "column `embedding`",
            "row 4",
            "2 values but earlier rows have 3",
        ],
    );
}

#[test]
fn bad_zero_rows() {
    let (_t, path) = bad_file(0, vec![("item_id", str_ids(0)), ("embedding", fsl(&[], 4))]);
    assert_bad(&path, &[], &["bad.parquet", "no rows"]);
}

#[test]
fn bad_k_larger_than_n() {
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", str_ids(10)),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    assert_bad(
        &path,
        &["--codebook-sizes", "16,4"],
        &["bad.parquet", "codebook size 16 is larger than the 10 rows"],
    );
}

#[test]
fn bad_codebook_too_large() {
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", str_ids(10)),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    assert_bad(
        &path,
        &["--codebook-sizes", "70000"],
        &["codebook size 70000", "exceeds 65535", "UInt16"],
    );
}

#[test]
fn bad_input_leaves_an_existing_output_directory_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--codebook-sizes",
        "8,8",
        "--out",
        p(&out),
        "-q",
    ]);
    let before = std::fs::read(out.join("sids.parquet")).unwrap();
    // What a killed build leaves behind (its process is gone) is cleaned up by the next one,
    // even one that then fails.
    std::fs::create_dir(out.join(".sidtool-build-4000000")).unwrap();
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", str_ids(10)),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    fails(&[
        "build",
        p(&path),
        "--codebook-sizes",
        "16",
        "--out",
        p(&out),
    ]);
    assert_eq!(std::fs::read(out.join("sids.parquet")).unwrap(), before);
    let mut left = entries(&out);
    left.sort();
    assert_eq!(
        left,
        [
            "embeddings.parquet",
            "manifest.json",
            "quantizer",
            "sids.parquet",
            "stats.json"
        ]
    );
}

#[test]
fn bad_assign_with_wrong_dimension() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q");
    train_on_testdata(&q, "8");
    let (_t, path) = bad_file(
        10,
        vec![
            ("item_id", str_ids(10)),
            ("embedding", fsl(&some(clustered(10, 4, 2)), 4)),
        ],
    );
    let out = tmp.path().join("s.parquet");
    let err = fails(&["assign", p(&path), "--quantizer", p(&q), "--out", p(&out)]);
    assert!(
        err.contains("4 dimensions but the quantizer was trained on 64"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The first `n` rows of the test catalogue's vectors, as their own embeddings file.
fn first_rows(dir: &Path, n: usize) -> std::path::PathBuf {
    let (ids, x) =
        sidtool::io::embeddings::read_all(&testdata("items.parquet"), "item_id", "embedding", 1024)
            .unwrap();
    let path = dir.join(format!("first{n}.parquet"));
    let mut w =
        sidtool::io::embeddings::EmbeddingWriter::create(&path, ids.data_type(), x.cols).unwrap();
    let idx: Vec<usize> = (0..n).collect();
    w.write(&ids.select(&idx), &x.gather(&idx)).unwrap();
    w.finish().unwrap();
    path
}

#[test]
fn assign_with_existing_keeps_old_ids_and_gives_new_items_free_ones() {
    for dedup in ["suffix", "reassign"] {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("q");
        // Small last level so that new items really compete with existing ones.
        train_on_testdata(&q, "8,32");
        let day1 = tmp.path().join("day1.parquet");
        ok(&[
            "assign",
            p(&first_rows(tmp.path(), 300)),
            "--quantizer",
            p(&q),
            "--dedup",
            dedup,
            "--out",
            p(&day1),
            "-q",
        ]);
        let day2 = tmp.path().join("day2.parquet");
        let (report, _) = ok_out(&[
            "assign",
            p(&testdata("items.parquet")),
            "--quantizer",
            p(&q),
            "--existing",
            p(&day1),
            "--out",
            p(&day2),
        ]);
        assert!(
            report.contains("kept 300 existing IDs unchanged; added 100 new items"),
            "{report}"
        );
        let a = sid_table::read(&day1).unwrap();
        let b = sid_table::read(&day2).unwrap();
        assert_eq!(b.ids.len(), 400);
        assert_eq!(
            b.meta.as_ref().unwrap().dedup,
            dedup,
            "dedup follows the existing table"
        );
        assert_eq!(
            &b.codes[..300 * b.width],
            &a.codes[..],
            "{dedup}: existing IDs never move"
        );
        assert_eq!(
            duplicate_ids(&b.codes, b.width, &b.ids),
            0,
            "{dedup}: new IDs are free"
        );
        // collision_group_size counts old and new items alike.
        let raw: Vec<&[u16]> = match &b.original_codes {
            Some(o) => o.chunks(2).collect(),
            None => b.codes.chunks(b.width).map(|c| &c[..2]).collect(),
        };
        for (i, r) in raw.iter().enumerate() {
            let n = raw.iter().filter(|q| q == &r).count() as u32;
            assert_eq!(b.group_size[i], n, "{dedup}: row {i}");
        }
    }
}

#[test]
fn training_on_a_sample_still_encodes_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--train-sample",
        "100",
        "--codebook-sizes",
        "8,8",
        "--out",
        p(&out),
        "-q",
    ]);
    let t = sid_table::read(&out.join("sids.parquet")).unwrap();
    assert_eq!(t.ids.len(), 400);
    assert_eq!(duplicate_ids(&t.codes, t.width, &t.ids), 0);
    let qcfg = read_json(&out.join("quantizer").join("config.json"));
    assert_eq!(qcfg["training"][0]["train_rows"], 100);
    // The streamed encode of all rows equals what `assign` computes with the saved model.
    let again = tmp.path().join("again.parquet");
    ok(&[
        "assign",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&out.join("quantizer")),
        "--out",
        p(&again),
        "-q",
    ]);
    assert_eq!(sid_table::read(&again).unwrap().codes, t.codes);
}

#[test]
fn stats_json_follows_its_published_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let schema =
        read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/stats.schema.json"));
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--config",
        p(&testdata("sidtool.toml")),
        "--dedup",
        "reassign",
        "--out",
        p(&out),
        "-q",
    ]);
    let stats = read_json(&out.join("stats.json"));
    check_schema(&stats, &schema, &schema, "stats").unwrap();
    let again = tmp.path().join("s.json");
    ok(&[
        "stats",
        p(&out.join("sids.parquet")),
        "--json",
        p(&again),
        "-q",
    ]);
    check_schema(&read_json(&again), &schema, &schema, "stats").unwrap();
    // The checker itself must be able to fail.
    let mut broken = stats.clone();
    broken["resolution"]["surprise"] = serde_json::json!(1);
    assert!(check_schema(&broken, &schema, &schema, "stats").is_err());
}

#[test]
fn ids_do_not_depend_on_the_thread_count_on_a_larger_catalogue() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 12_000;
    let path = tmp.path().join("big.parquet");
    write_batch(
        &path,
        vec![
            ("item_id", int_ids(n)),
            ("embedding", fsl(&some(clustered(n, 32, 40)), 32)),
        ],
    );
    let run = |threads: &str| {
        let out = tmp.path().join(format!("t{threads}"));
        ok(&[
            "build",
            p(&path),
            "--codebook-sizes",
            "64,64,32",
            "--threads",
            threads,
            "--out",
            p(&out),
            "-q",
        ]);
        (
            sid_table::read(&out.join("sids.parquet")).unwrap().codes,
            std::fs::read(out.join("quantizer/model.safetensors")).unwrap(),
        )
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn accepts_every_documented_id_and_vector_type() {
    use arrow_array::builder::{Float32Builder, LargeListBuilder};
    use arrow_array::{ArrayRef, Int32Array, LargeStringArray, StringViewArray};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let rows = clustered(60, 4, 3);
    let mut large = LargeListBuilder::new(Float32Builder::new());
    for r in &rows {
        large.values().append_slice(r);
        large.append(true);
    }
    let large: ArrayRef = Arc::new(large.finish());
    let names: Vec<String> = (0..60).map(|i| format!("sku-{i}")).collect();
    let id_columns: Vec<(&str, ArrayRef)> = vec![
        (
            "utf8view",
            Arc::new(StringViewArray::from_iter_values(names.iter())),
        ),
        (
            "largeutf8",
            Arc::new(LargeStringArray::from_iter_values(names.iter())),
        ),
        ("int32", Arc::new(Int32Array::from_iter_values(0..60))),
    ];
    for (kind, ids) in id_columns {
        let path = tmp.path().join(format!("{kind}.parquet"));
        write_batch(&path, vec![("item_id", ids), ("embedding", large.clone())]);
        let out = tmp.path().join(kind);
        ok(&[
            "build",
            p(&path),
            "--codebook-sizes",
            "4,4",
            "--out",
            p(&out),
            "-q",
        ]);
        let t = sid_table::read(&out.join("sids.parquet")).unwrap();
        assert_eq!(t.ids.len(), 60, "{kind}");
        assert_eq!(duplicate_ids(&t.codes, t.width, &t.ids), 0, "{kind}");
    }
}

#[test]
fn bad_existing_table_without_metadata_and_out_of_range_codes() {
    use arrow_array::builder::{FixedSizeListBuilder, UInt16Builder};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q");
    train_on_testdata(&q, "8,8");
    let mut codes = FixedSizeListBuilder::new(UInt16Builder::new(), 2);
    for c in [[1u16, 2], [3, 300]] {
        codes.values().append_slice(&c);
        codes.append(true);
    }
    let foreign = tmp.path().join("foreign.parquet");
    write_batch(
        &foreign,
        vec![("item_id", str_ids(2)), ("codes", Arc::new(codes.finish()))],
    );
    let out = tmp.path().join("s.parquet");
    let err = fails(&[
        "assign",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q),
        "--existing",
        p(&foreign),
        "--dedup",
        "reassign",
        "--out",
        p(&out),
    ]);
    assert!(err.contains("foreign.parquet, column `codes`, row 1: code 300 at level 2 is outside the quantizer's 8 codes"), "{err}");
    assert!(!out.exists());
}

#[test]
fn bad_vectors_too_large_for_f32() {
    let mut rows = clustered(10, 4, 2);
    rows[2] = vec![1e30, 1e30, 0.0, 0.0];
    let (_t, path) = bad_file(
        10,
        vec![("item_id", str_ids(10)), ("embedding", fsl(&some(rows), 4))],
    );
    assert_bad(
        &path,
        &[],
        &["column `embedding`", "row 2", "overflows f32"],
    );
}

#[test]
fn stats_refuses_a_quantizer_that_did_not_make_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--codebook-sizes",
        "8,8",
        "--out",
        p(&out),
        "-q",
    ]);
    let other = tmp.path().join("q");
    train_on_testdata(&other, "16,8");
    let err = fails(&[
        "stats",
        p(&out.join("sids.parquet")),
        "--embeddings",
        p(&out.join("embeddings.parquet")),
        "--quantizer",
        p(&other),
    ]);
    assert!(err.contains("codebook sizes [8, 8], not [16, 8]"), "{err}");
    let err = fails(&[
        "stats",
        p(&out.join("sids.parquet")),
        "--embeddings",
        p(&out.join("embeddings.parquet")),
        "--quantizer",
        p(&out),
    ]);
    assert!(err.contains("did you mean"), "{err}");
}

/// Train two quantizers (`first`, `second`: extra `train` flags), assign the catalogue with the
/// first, then try to extend that table with the second. Returns the temp dir, the two
/// quantizer paths, the day-1 table and the error of the refused `assign --existing`.
fn extend_with_other_quantizer(
    first: &[&str],
    second: &[&str],
) -> (tempfile::TempDir, [std::path::PathBuf; 3], String) {
    let tmp = tempfile::tempdir().unwrap();
    let (q1, q2) = (tmp.path().join("q1"), tmp.path().join("q2"));
    let items = testdata("items.parquet");
    for (q, extra) in [(&q1, first), (&q2, second)] {
        let mut args = vec!["train", p(&items), "--out", p(q), "-q"];
        args.extend_from_slice(extra);
        ok(&args);
    }
    let day1 = tmp.path().join("day1.parquet");
    ok(&[
        "assign",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q1),
        "--out",
        p(&day1),
        "-q",
    ]);
    let out = tmp.path().join("day2.parquet");
    let err = fails(&[
        "assign",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q2),
        "--existing",
        p(&day1),
        "--out",
        p(&out),
    ]);
    assert!(!out.exists());
    (tmp, [q1, q2, day1], err)
}

#[test]
fn existing_table_from_another_quantizer_is_refused() {
    let (_tmp, _, err) =
        extend_with_other_quantizer(&["--codebook-sizes", "8,8"], &["--codebook-sizes", "16,8"]);
    assert!(
        err.contains("codebook sizes [8, 8], the quantizer has [16, 8]"),
        "{err}"
    );
}

#[test]
fn a_retrained_quantizer_of_the_same_shape_is_refused_for_existing_ids() {
    let sizes = ["--codebook-sizes", "8,8", "--seed"];
    let (_tmp, [q1, q2, day1], err) = extend_with_other_quantizer(
        &[&sizes[..], &["1"]].concat(),
        &[&sizes[..], &["2"]].concat(),
    );
    assert!(err.contains("made by a different quantizer"), "{err}");
    let err = fails(&[
        "stats",
        p(&day1),
        "--embeddings",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q2),
    ]);
    assert!(err.contains("made by a different quantizer"), "{err}");
    ok(&[
        "stats",
        p(&day1),
        "--embeddings",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q1),
        "-q",
    ]);
}

#[test]
fn temp_files_of_killed_runs_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q");
    train_on_testdata(&q, "8,8");
    // What `assign` killed mid-write by process 4000000 (long gone) would have left.
    let stale = tmp.path().join(".sids.parquet.tmp-4000000");
    std::fs::write(&stale, b"half a parquet file").unwrap();
    let out = tmp.path().join("sids.parquet");
    ok(&[
        "assign",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q),
        "--out",
        p(&out),
        "-q",
    ]);
    assert!(out.exists());
    assert!(!stale.exists());
}

/// Train a quantizer with the given codebook sizes on the shipped catalogue into `dir`.
fn train_on_testdata(dir: &Path, sizes: &str) {
    ok(&[
        "train",
        p(&testdata("items.parquet")),
        "--codebook-sizes",
        sizes,
        "--out",
        p(dir),
        "-q",
    ]);
}

#[test]
fn existing_items_missing_from_the_catalogue_are_kept_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q");
    train_on_testdata(&q, "8,8");
    let day1 = tmp.path().join("day1.parquet");
    ok(&[
        "assign",
        p(&testdata("items.parquet")),
        "--quantizer",
        p(&q),
        "--out",
        p(&day1),
        "-q",
    ]);
    let day2 = tmp.path().join("day2.parquet");
    let stats = tmp.path().join("s.json");
    let (report, _) = ok_out(&[
        "assign",
        p(&first_rows(tmp.path(), 300)),
        "--quantizer",
        p(&q),
        "--existing",
        p(&day1),
        "--out",
        p(&day2),
        "--stats",
        p(&stats),
    ]);
    assert!(
        report.contains("100 of the existing items are not in this catalogue"),
        "{report}"
    );
    assert_eq!(
        read_json(&stats)["resolution"]["existing_not_in_input"],
        100
    );
    assert_eq!(
        sid_table::read(&day2).unwrap().codes,
        sid_table::read(&day1).unwrap().codes
    );
}
