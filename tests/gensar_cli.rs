//! `--method gensar` end to end through the binary: dual SIDs and CIDs.

mod common;

use common::*;
use sidtool::ids::sid_table::{self, SidTable};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const TRAIN: [&str; 14] = [
    "--method",
    "gensar",
    "--codebook-sizes",
    "8",
    "--epochs",
    "12",
    "--hidden",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "128",
    "--seed",
    "3",
];

/// 600 items: a semantic embedding in 12 clusters and a collaborative one grouped differently.
fn items_with_collab(dir: &Path) -> PathBuf {
    let n = 600;
    let p = dir.join("items.parquet");
    let sem = clustered(n, 16, 12);
    let col = clustered(n, 6, 5);
    // Item i's collaborative group is (i / 12) mod 5: unrelated to its semantic cluster i mod 12.
    let col: Vec<Vec<f32>> = (0..n).map(|i| col[(i / 12) % 5].clone()).collect();
    write_batch(
        &p,
        vec![
            ("item_id", int_ids(n)),
            ("embedding", fsl(&some(sem), 16)),
            ("collab_embedding", fsl(&some(col), 6)),
        ],
    );
    p
}

/// `sidtool CMD INPUT --out OUT` with the TRAIN settings; more flags can be pushed.
fn with_train(cmd: &str, input: &Path, out: &Path) -> Vec<String> {
    let mut args = vec![cmd.to_string(), s(input), "--out".into(), s(out)];
    args.extend(TRAIN.iter().map(|a| a.to_string()));
    args
}

fn run(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn unique(codes: &[u16], width: usize) -> bool {
    let set: HashSet<&[u16]> = codes.chunks(width).collect();
    set.len() * width == codes.len()
}

fn check_dual(t: &SidTable) {
    let cid = t.cid.as_ref().expect("CID columns");
    assert!(unique(&t.codes, t.width), "SIDs are unique");
    assert!(unique(&cid.codes, cid.width), "CIDs are unique");
    // 2 shared + 2 own levels (+ a suffix level when needed).
    for (sid, c) in t.codes.chunks(t.width).zip(cid.codes.chunks(cid.width)) {
        assert_eq!(sid[..2], c[..2], "SID and CID share the prefix");
    }
    assert!(t.width >= 4 && cid.width >= 4);
}

#[test]
fn build_assign_stats_and_vocab_with_supplied_collab_vectors() {
    let t = tempfile::tempdir().unwrap();
    let items = items_with_collab(t.path());
    let out = t.path().join("out");
    let mut args = with_train("build", &items, &out);
    args.extend([
        "--tokenizer".to_string(),
        s(&testdata("tiny-qwen3/tokenizer.json")),
    ]);
    run(&args);
    let mut names = entries(&out);
    names.sort();
    for f in [
        "collab.parquet",
        "cid_trie.parquet",
        "cid_trie.json",
        "trie.json",
    ] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
    }
    let q = read_json(&out.join("quantizer/config.json"));
    assert_eq!(q["method"], "gensar");
    assert_eq!(q["dual"]["semantic_dim"], 16);
    assert_eq!(q["codebook_sizes"].as_array().unwrap().len(), 6);

    let table = sid_table::read(&out.join("sids.parquet")).unwrap();
    check_dual(&table);
    let meta = table.meta.clone().unwrap();
    assert_eq!(meta.method, "gensar");
    assert_eq!(meta.codebook_sizes, vec![8, 8, 8, 8]);
    let dual = meta.dual.clone().unwrap();
    assert_eq!(
        (dual.sid_prefix.as_str(), dual.cid_prefix.as_str()),
        ("s", "u")
    );
    // Token strings: shared letters, then s- or u-prefixed letters.
    let fmt_sid = meta.format(sidtool::quant::kind::IdKind::Sid).unwrap();
    let fmt_cid = meta.format(sidtool::quant::kind::IdKind::Cid).unwrap();
    let row0 = &table.codes[..table.width];
    let sid0 = fmt_sid.sid(row0);
    assert!(sid0.starts_with(&format!(
        "<a_{}><b_{}><sc_{}><sd_",
        row0[0], row0[1], row0[2]
    )));
    let cid = table.cid.as_ref().unwrap();
    assert!(fmt_cid.sid(&cid.codes[..cid.width]).contains("><uc_"));

    let stats = read_json(&out.join("stats.json"));
    let schema =
        read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/stats.schema.json"));
    check_schema(&stats, &schema, &schema, "stats").unwrap();
    assert_eq!(stats["method"], "gensar");
    assert_eq!(stats["after"]["collision_rate"], 0.0);
    assert_eq!(stats["cid"]["after"]["collision_rate"], 0.0);
    assert_eq!(stats["cid"]["codebook_sizes"].as_array().unwrap().len(), 4);
    assert_eq!(stats["cid"]["after"]["per_level"][2]["letter"], "uc");
    assert_eq!(stats["items_without_collab_vector"], 0);
    for kind in [&stats, &stats["cid"]] {
        let e = kind["relative_reconstruction_error"].as_array().unwrap();
        assert_eq!(e.len(), 4);
        // Deeper prefixes reconstruct at least as well as the first level.
        assert!(e[3].as_f64().unwrap() < e[0].as_f64().unwrap(), "{e:?}");
    }

    // A frozen model codes the same items identically from the written embeddings and
    // collaborative vectors.
    let again = t.path().join("again.parquet");
    let again_stats = t.path().join("again.json");
    run(&[
        "assign".into(),
        s(&out.join("embeddings.parquet")),
        "--quantizer".into(),
        s(&out.join("quantizer")),
        "--collab".into(),
        s(&out.join("collab.parquet")),
        "--out".into(),
        s(&again),
        "--stats".into(),
        s(&again_stats),
    ]);
    let a = sid_table::read(&again).unwrap();
    assert_eq!(a.codes, table.codes);
    assert_eq!(a.cid.as_ref().unwrap().codes, cid.codes);
    // `sidtool stats` recomputes the same statistics from the table and the vectors.
    let recomputed = t.path().join("recomputed.json");
    run(&[
        "stats".into(),
        s(&out.join("sids.parquet")),
        "--json".into(),
        s(&recomputed),
        "--embeddings".into(),
        s(&items),
        "--quantizer".into(),
        s(&out.join("quantizer")),
    ]);
    let r = read_json(&recomputed);
    assert_eq!(r["after"], stats["after"]);
    assert_eq!(r["items_without_collab_vector"], 0);
    assert_eq!(r["cid"]["before"], stats["cid"]["before"]);
    assert_eq!(r["cid"]["after"], stats["cid"]["after"]);
    let (x, y) = (
        r["cid"]["relative_reconstruction_error"][1]
            .as_f64()
            .unwrap(),
        stats["cid"]["relative_reconstruction_error"][1]
            .as_f64()
            .unwrap(),
    );
    assert!((x - y).abs() < 1e-6 * y.max(1e-9), "{x} vs {y}");

    // Vocabulary: shared tokens once, then each ID's own; every SID and CID round-trips
    // (checked by the tool before writing), and the CID trie leads to every item.
    let v = read_json(&out.join("sid_tokens.json"));
    let tokens = v["tokens"].as_array().unwrap();
    let strings: HashSet<&str> = tokens
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(strings.len(), tokens.len());
    assert!(strings.contains("<a_0>") && strings.contains("<sc_0>") && strings.contains("<uc_0>"));
    assert!(tokens.iter().any(|t| t["kind"] == "cid"));
    let trie = read_json(&out.join("cid_trie.json"));
    assert_eq!(trie["items"].as_object().unwrap().len(), 600);
}

#[test]
fn reassign_keeps_both_ids_unique_at_their_length() {
    let t = tempfile::tempdir().unwrap();
    let items = items_with_collab(t.path());
    let out = t.path().join("out");
    let mut args = with_train("build", &items, &out);
    args.extend(["--dedup".to_string(), "reassign".into()]);
    run(&args);
    let table = sid_table::read(&out.join("sids.parquet")).unwrap();
    check_dual(&table);
    let stats = read_json(&out.join("stats.json"));
    for kind in [&stats, &stats["cid"]] {
        assert_eq!(kind["after"]["collision_rate"], 0.0);
    }
    // The quantizer's own codes are kept next to the moved ones, for both IDs.
    assert!(table.original_codes.is_some());
    assert!(table.cid.unwrap().original_codes.is_some());
}

#[test]
fn clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let n = 100;
    let plain = t.path().join("plain.parquet");
    write_batch(
        &plain,
        vec![
            ("item_id", int_ids(n)),
            ("embedding", fsl(&some(clustered(n, 8, 4)), 8)),
        ],
    );
    let out = t.path().join("out");
    // No collaborative vectors anywhere.
    let args = with_train("build", &plain, &out);
    let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("collab_embedding") && err.contains("--interactions"),
        "{err}"
    );
    assert!(!out.exists());
    // Codebook sizes that fit neither one size for all nor the 6 levels.
    let err = fails(&[
        "build",
        &s(&plain),
        "--out",
        &s(&out),
        "--method",
        "gensar",
        "--codebook-sizes",
        "8,4,4",
    ]);
    assert!(err.contains("needs 6 sizes"), "{err}");
    // Train a model, then assign without its collaborative vectors.
    let items = items_with_collab(t.path());
    let q = t.path().join("q");
    let args = with_train("train", &items, &q);
    run(&args);
    let err = fails(&[
        "assign",
        &s(&plain),
        "--quantizer",
        &s(&q),
        "--out",
        &s(&t.path().join("x.parquet")),
    ]);
    assert!(
        err.contains("plain.parquet") && err.contains("--collab"),
        "{err}"
    );
}

/// `build --interactions --method gensar` computes the collaborative vectors itself: items
/// consumed by the same user group end up sharing CID prefixes, and items nobody consumed are
/// counted.
#[test]
fn build_computes_collaborative_vectors_from_interactions() {
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;
    let t = tempfile::tempdir().unwrap();
    let n = 480;
    // Semantic clusters follow i mod 6; user groups consume items of group (i / 6) mod 4; the
    // last 30 items are never consumed.
    let group = |i: usize| (i / 6) % 4;
    let items = t.path().join("items.parquet");
    write_batch(
        &items,
        vec![
            ("item_id", int_ids(n)),
            ("embedding", fsl(&some(clustered(n, 16, 6)), 16)),
        ],
    );
    let mut state = 7u64;
    let mut rnd = move |m: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % m
    };
    let (mut users, mut item_col, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..400 {
        let g = u % 4;
        for k in 0..40 {
            let i = loop {
                let i = rnd(n - 30);
                if group(i) == g {
                    break i;
                }
            };
            users.push(format!("user-{u}"));
            item_col.push(1000 + i as i64);
            times.push(k as i64);
        }
    }
    let inter = t.path().join("interactions.parquet");
    write_batch(
        &inter,
        vec![
            ("user_id", Arc::new(StringArray::from(users)) as ArrayRef),
            ("item_id", Arc::new(Int64Array::from(item_col)) as ArrayRef),
            ("timestamp", Arc::new(Int64Array::from(times)) as ArrayRef),
        ],
    );
    let out = t.path().join("out");
    let mut args = vec![
        "build".to_string(),
        s(&items),
        "--interactions".into(),
        s(&inter),
        "--collab-levels".into(),
        "1".into(),
        "--shared-levels".into(),
        "1".into(),
        "--out".into(),
        s(&out),
    ];
    // A longer, faster schedule than TRAIN: with 4 steps per epoch the default warm-up alone
    // takes 25 epochs.
    args.extend(
        [
            "--method",
            "gensar",
            "--codebook-sizes",
            "8",
            "--epochs",
            "100",
            "--lr",
            "0.01",
            "--hidden",
            "32",
            "--latent-dim",
            "4",
            "--batch-size",
            "128",
            "--seed",
            "3",
        ]
        .map(String::from),
    );
    run(&args);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["items_without_collab_vector"], 30);
    let m = read_json(&out.join("manifest.json"));
    assert!(
        m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "collab.parquet")
    );
    assert_eq!(m["inputs"].as_array().unwrap().len(), 2);
    // collab.parquet: one unit-length vector per consumed item, zeros for the rest.
    let (ids, vecs) = read_embeddings_column(&out.join("collab.parquet"), "collab_embedding");
    assert_eq!(ids.len(), n);
    for (i, v) in vecs.iter().enumerate() {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let want = if i < n - 30 { 1.0 } else { 0.0 };
        assert!((norm - want).abs() < 1e-4, "row {i}: norm {norm}");
    }
    // The CID (shared + collaborative level) groups items of one user group together.
    let table = sid_table::read(&out.join("sids.parquet")).unwrap();
    let cid = table.cid.as_ref().unwrap();
    let mut by_cid: std::collections::HashMap<&[u16], [usize; 4]> = Default::default();
    for (i, c) in cid.codes.chunks(cid.width).enumerate().take(n - 30) {
        by_cid.entry(&c[..2]).or_default()[group(i)] += 1;
    }
    let pure: usize = by_cid.values().map(|c| *c.iter().max().unwrap()).sum();
    let purity = pure as f64 / (n - 30) as f64;
    assert!(purity > 0.9, "CID purity over user groups {purity}");
}

/// Day 1 codes 400 items; day 2 adds 200 with `--existing`: day-1 SIDs and CIDs stay, every
/// ID stays unique. Training on a sample smaller than the catalogue makes `build` stream the
/// file (joining collaborative vectors per batch) and `reassign` fetch rows back from it.
#[test]
fn existing_ids_train_sample_and_determinism() {
    let t = tempfile::tempdir().unwrap();
    let items = items_with_collab(t.path());
    let q = t.path().join("q");
    let args = with_train("train", &items, &q);
    run(&args);
    // Same data, config and seed: the same model, byte for byte.
    let q2 = t.path().join("q2");
    let args2 = with_train("train", &items, &q2);
    run(&args2);
    assert_eq!(
        std::fs::read(q.join("model.safetensors")).unwrap(),
        std::fs::read(q2.join("model.safetensors")).unwrap()
    );

    // Day 1: the first 400 items.
    let day1_items = t.path().join("day1.parquet");
    {
        let sem = clustered(600, 16, 12);
        let col = clustered(600, 6, 5);
        let col: Vec<Vec<f32>> = (0..600).map(|i| col[(i / 12) % 5].clone()).collect();
        write_batch(
            &day1_items,
            vec![
                ("item_id", int_ids(400)),
                ("embedding", fsl(&some(sem[..400].to_vec()), 16)),
                ("collab_embedding", fsl(&some(col[..400].to_vec()), 6)),
            ],
        );
    }
    let day1 = t.path().join("day1-sids.parquet");
    run(&[
        "assign".into(),
        s(&day1_items),
        "--quantizer".into(),
        s(&q),
        "--out".into(),
        s(&day1),
    ]);
    let day2 = t.path().join("day2-sids.parquet");
    run(&[
        "assign".into(),
        s(&items),
        "--quantizer".into(),
        s(&q),
        "--existing".into(),
        s(&day1),
        "--out".into(),
        s(&day2),
    ]);
    let (a, b) = (
        sid_table::read(&day1).unwrap(),
        sid_table::read(&day2).unwrap(),
    );
    check_dual(&b);
    assert_eq!(b.ids.len(), 600);
    assert_eq!(&b.codes[..400 * b.width], &a.codes[..]);
    let (ca, cb) = (a.cid.as_ref().unwrap(), b.cid.as_ref().unwrap());
    assert_eq!(&cb.codes[..400 * cb.width], &ca.codes[..]);

    // A table made with another level split is refused, naming what differs.
    let other = t.path().join("other");
    let mut args = with_train("train", &items, &other);
    args.extend(["--shared-levels".to_string(), "1".into()]);
    run(&args);
    let err = fails(&[
        "assign",
        &s(&items),
        "--quantizer",
        &s(&other),
        "--existing",
        &s(&day1),
        "--out",
        &s(&t.path().join("x.parquet")),
    ]);
    assert!(err.contains("existing IDs table"), "{err}");

    // Sampled training + reassign through the streamed, joined file.
    let out = t.path().join("sampled");
    let mut args = with_train("build", &items, &out);
    args.extend(
        ["--train-sample", "300", "--dedup", "reassign"]
            .iter()
            .map(|a| a.to_string()),
    );
    run(&args);
    let built = sid_table::read(&out.join("sids.parquet")).unwrap();
    check_dual(&built);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["items_without_collab_vector"], 0);
}

#[test]
fn mismatched_collaborative_vectors_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let items = items_with_collab(t.path());
    let q = t.path().join("q");
    let args = with_train("train", &items, &q);
    run(&args);
    let n = 600;
    let emb = t.path().join("emb.parquet");
    write_batch(
        &emb,
        vec![
            ("item_id", int_ids(n)),
            ("embedding", fsl(&some(clustered(n, 16, 12)), 16)),
        ],
    );
    // String ids never match integer ids: every CID would come from zeros.
    let strs = t.path().join("collab-str.parquet");
    write_batch(
        &strs,
        vec![
            ("item_id", str_ids(n)),
            ("collab_embedding", fsl(&some(clustered(n, 6, 5)), 6)),
        ],
    );
    let dest = t.path().join("x.parquet");
    let err = fails(&[
        "assign",
        &s(&emb),
        "--quantizer",
        &s(&q),
        "--collab",
        &s(&strs),
        "--out",
        &s(&dest),
    ]);
    assert!(
        err.contains("none of its 600 items") && err.contains("collab-str.parquet"),
        "{err}"
    );
    assert!(!dest.exists());
    // Collaborative vectors of another width: the error names that file and column.
    let wide = t.path().join("collab-wide.parquet");
    write_batch(
        &wide,
        vec![
            ("item_id", int_ids(n)),
            ("collab_embedding", fsl(&some(clustered(n, 8, 5)), 8)),
        ],
    );
    let err = fails(&[
        "assign",
        &s(&emb),
        "--quantizer",
        &s(&q),
        "--collab",
        &s(&wide),
        "--out",
        &s(&dest),
    ]);
    assert!(
        err.contains("collab-wide.parquet") && err.contains("trained on 6"),
        "{err}"
    );
}

/// A later build of another kind into the same directory leaves none of GenSAR's files.
#[test]
fn a_later_build_removes_outputs_it_does_not_write() {
    let t = tempfile::tempdir().unwrap();
    let items = items_with_collab(t.path());
    let out = t.path().join("out");
    let mut args = with_train("build", &items, &out);
    args.extend([
        "--tokenizer".to_string(),
        s(&testdata("tiny-qwen3/tokenizer.json")),
    ]);
    run(&args);
    assert!(out.join("collab.parquet").exists() && out.join("cid_trie.json").exists());
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    ok(&[
        "build",
        &s(&items),
        "--out",
        &s(&out),
        "--codebook-sizes",
        "16,8",
    ]);
    let mut names = entries(&out);
    names.sort();
    assert_eq!(
        names,
        [
            "embeddings.parquet",
            "manifest.json",
            "notes.txt",
            "quantizer",
            "sids.parquet",
            "stats.json"
        ]
    );
}

/// GenSAR through the distributed path: partitions coded apart (`assign --dedup none`: SID and
/// CID raw codes), resolved once, give the single-machine table byte for byte; and with
/// `--existing`, what `assign --existing` gives.
#[test]
fn partitions_resolve_to_the_single_machine_sids_and_cids() {
    let t = tempfile::tempdir().unwrap();
    let items = items_with_collab(t.path());
    let q = t.path().join("q");
    run(&with_train("train", &items, &q));
    let reference = t.path().join("ref.parquet");
    let assign = |input: &Path, out: &Path, more: &[&str]| {
        let mut a = vec![
            "assign",
            input.to_str().unwrap(),
            "--quantizer",
            q.to_str().unwrap(),
        ];
        a.extend(["--out", out.to_str().unwrap(), "-q"]);
        a.extend(more);
        ok(&a);
    };
    assign(&items, &reference, &[]);
    let parts = t.path().join("parts");
    let raw = t.path().join("raw");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::create_dir_all(&raw).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&items).unwrap(),
    )
    .unwrap()
    .with_batch_size(10_000)
    .build()
    .unwrap();
    let all = r.into_iter().next().unwrap().unwrap();
    for k in 0..3 {
        let b = all.slice(k * 200, 200);
        let part = parts.join(format!("part-{k}.parquet"));
        let cols = ["item_id", "embedding", "collab_embedding"];
        write_batch(
            &part,
            cols.iter()
                .map(|c| (*c, b.column_by_name(c).unwrap().clone()))
                .collect(),
        );
        assign(
            &part,
            &raw.join(format!("part-{k}.parquet")),
            &["--dedup", "none"],
        );
    }
    let resolved = t.path().join("sids.parquet");
    ok(&[
        "resolve",
        raw.to_str().unwrap(),
        "--out",
        resolved.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(
        std::fs::read(&resolved).unwrap(),
        std::fs::read(&reference).unwrap()
    );
    check_dual(&sid_table::read(&resolved).unwrap());
    // Day 2: the first two partitions were coded before; all three are resolved against them.
    let day1 = t.path().join("day1.parquet");
    let first_two = t.path().join("first-two.parquet");
    let b = all.slice(0, 400);
    let cols = ["item_id", "embedding", "collab_embedding"];
    write_batch(
        &first_two,
        cols.iter()
            .map(|c| (*c, b.column_by_name(c).unwrap().clone()))
            .collect(),
    );
    assign(&first_two, &day1, &[]);
    let (want, got) = (t.path().join("want.parquet"), t.path().join("got.parquet"));
    assign(&items, &want, &["--existing", day1.to_str().unwrap()]);
    ok(&[
        "resolve",
        raw.to_str().unwrap(),
        "--existing",
        day1.to_str().unwrap(),
        "--out",
        got.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());
    // Reassign: each colliding item's semantic + collaborative vector, read by item id from
    // the items file, gives `assign --dedup reassign`'s SIDs and CIDs.
    let (want, got) = (
        t.path().join("want-r.parquet"),
        t.path().join("got-r.parquet"),
    );
    let want_stats = t.path().join("want-r.json");
    assign(
        &items,
        &want,
        &[
            "--dedup",
            "reassign",
            "--stats",
            want_stats.to_str().unwrap(),
        ],
    );
    ok(&[
        "resolve",
        raw.to_str().unwrap(),
        "--dedup",
        "reassign",
        "--quantizer",
        q.to_str().unwrap(),
        "--embeddings",
        items.to_str().unwrap(),
        "--out",
        got.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());
    let st = read_json(&want_stats);
    eprintln!(
        "reassign moved: SID {} CID {}",
        st["resolution"]["moved_items"], st["cid"]["resolution"]["moved_items"]
    );
    assert!(st["resolution"]["moved_items"].as_u64().unwrap() > 0);
    assert!(st["cid"]["resolution"]["moved_items"].as_u64().unwrap() > 0);
}
