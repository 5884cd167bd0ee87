//! Bad, inconsistent or unlucky inputs that used to be accepted silently (or explained badly),
//! end to end through the binary: issue 13's validation findings.

mod common;

use arrow_array::{ArrayRef, StringArray};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A catalogue and interactions in which 3 taste groups each use 10 of 30 items.
fn collab_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let items = dir.join("items.parquet");
    write_batch(&items, vec![("item_id", str_ids(30))]);
    let (u, it, ts) = taste_groups();
    let inter = dir.join("interactions.parquet");
    write_interactions(&inter, u, it, Some(ts));
    (items, inter)
}

#[test]
fn collab_output_is_byte_identical_across_runs() {
    let t = tempfile::tempdir().unwrap();
    let (items, inter) = collab_inputs(t.path());
    let run = |name: &str| {
        let out = t.path().join(name);
        let err = ok(&[
            "collab",
            p(&inter),
            "--items",
            p(&items),
            "--out",
            p(&out),
            "--collab-dim",
            "4",
            "--seed",
            "5",
        ]);
        // The run time is still reported, just not stored in the file.
        assert!(err.contains("s\n") || err.contains("wrote"), "{err}");
        std::fs::read(out).unwrap()
    };
    let a = run("a.parquet");
    // Let the clock move on, so a stored run time would differ.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = run("b.parquet");
    assert!(
        a == b,
        "two runs with the same input and seed differ in bytes"
    );
}

#[test]
fn duplicate_column_names_are_refused_naming_file_and_column() {
    let t = tempfile::tempdir().unwrap();
    let v = clustered(64, 4, 4);
    let shifted: Vec<Vec<f32>> = v
        .iter()
        .map(|r| r.iter().map(|x| x + 9.0).collect())
        .collect();
    // Two `embedding` columns: which one is meant cannot be told.
    let emb = t.path().join("emb.parquet");
    write_batch(
        &emb,
        vec![
            ("item_id", str_ids(64)),
            ("embedding", fsl(&some(v.clone()), 4)),
            ("embedding", fsl(&some(shifted), 4)),
        ],
    );
    let q = t.path().join("q");
    let err = fails(&["train", p(&emb), "--out", p(&q), "--codebook-sizes", "4,2"]);
    assert!(
        err.contains("emb.parquet") && err.contains("column `embedding`") && err.contains("twice"),
        "{err}"
    );
    assert!(!q.exists());
    // The id column twice, in a text catalogue.
    let items = t.path().join("items.parquet");
    write_batch(
        &items,
        vec![
            ("item_id", str_ids(8)),
            (
                "title",
                Arc::new(StringArray::from_iter_values(
                    (0..8).map(|i| format!("t{i}")),
                )),
            ),
            ("item_id", int_ids(8)),
        ],
    );
    let out = t.path().join("e.parquet");
    let model = testdata("tiny-qwen3");
    let err = fails(&["embed", p(&items), "--out", p(&out), "--model", p(&model)]);
    assert!(
        err.contains("items.parquet") && err.contains("column `item_id`") && err.contains("twice"),
        "{err}"
    );
    // And in interactions.
    let (cat, _) = collab_inputs(t.path());
    let inter = t.path().join("inter.parquet");
    write_batch(
        &inter,
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec!["u", "u"])) as ArrayRef,
            ),
            (
                "item_id",
                Arc::new(StringArray::from(vec!["item-0000", "item-0001"])),
            ),
            (
                "item_id",
                Arc::new(StringArray::from(vec!["item-0002", "item-0003"])),
            ),
        ],
    );
    let err = fails(&[
        "collab",
        p(&inter),
        "--items",
        p(&cat),
        "--out",
        p(&t.path().join("c.parquet")),
    ]);
    assert!(
        err.contains("inter.parquet") && err.contains("column `item_id`") && err.contains("twice"),
        "{err}"
    );
}

#[test]
fn diverging_rq_vae_training_fails_and_saves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items.parquet");
    let q = t.path().join("q");
    let train = |extra: &[&str]| {
        let mut a = vec![
            "train",
            p(&items),
            "--out",
            p(&q),
            "--method",
            "rq-vae",
            "--codebook-sizes",
            "8,4",
            "--epochs",
            "3",
            "--hidden",
            "16",
            "--latent-dim",
            "4",
        ];
        a.extend_from_slice(extra);
        fails(&a)
    };
    let err = train(&["--lr", "1e30"]);
    assert!(
        err.contains("diverged at epoch")
            && err.contains("--lr, now 1e30")
            && err.contains("--beta"),
        "{err}"
    );
    assert!(!q.exists(), "a diverged model was saved");
    let err = train(&["--beta", "inf"]);
    assert!(err.contains("beta must be a finite number"), "{err}");
    assert!(!q.exists());
}

/// Run the binary with files limited to `kib` KiB (RLIMIT_FSIZE): writes past it fail with
/// EFBIG, as they would on a full disk, without needing one.
fn with_file_limit(kib: u32, args: &[&str]) -> String {
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_sidtool"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

#[test]
fn write_failures_name_the_output_being_written() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items.parquet");
    // The quantizer's weights (64-dim codebooks, 48 codewords: 12 KiB) do not fit in 4 KiB.
    let q = t.path().join("q");
    let err = with_file_limit(
        4,
        &[
            "train",
            p(&items),
            "--out",
            p(&q),
            "--codebook-sizes",
            "32,16",
        ],
    );
    assert!(
        err.contains(&format!(
            "cannot write {}",
            q.join("model.safetensors").display()
        )) && err.contains("File too large")
            && !err.contains("tensor computation failed"),
        "{err}"
    );
    assert!(!q.exists());
    // A Parquet output: a write error is not "not a readable Parquet file".
    let emb = t.path().join("emb.parquet");
    let err = with_file_limit(
        4,
        &[
            "embed",
            p(&testdata("items_text.parquet")),
            "--out",
            p(&emb),
            "--model",
            p(&testdata("tiny-qwen3")),
        ],
    );
    assert!(
        err.contains("cannot write")
            && err.contains("File too large")
            && !err.contains("not a readable"),
        "{err}"
    );
    assert!(!emb.exists());
    // An output whose directory cannot be made names the output, not its parent.
    let file = t.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let dest = file.join("collab.parquet");
    let (cat, inter) = collab_inputs(t.path());
    let err = fails(&[
        "collab",
        p(&inter),
        "--items",
        p(&cat),
        "--out",
        p(&dest),
        "--collab-dim",
        "4",
    ]);
    assert!(
        err.contains(&format!("cannot write {}", dest.display())),
        "{err}"
    );
}

/// `build` on the shipped vectors (RQ-KMeans, small codebooks so items collide) into `dir`.
fn build_vectors(dir: &Path, dedup: &str) -> PathBuf {
    let out = dir.join(format!("out-{dedup}"));
    ok(&[
        "build",
        p(&testdata("items.parquet")),
        "--out",
        p(&out),
        "--codebook-sizes",
        "8,4",
        "--dedup",
        dedup,
    ]);
    out
}

/// A copy of a sids.parquet (footer kept) with `edit` applied to its ids and final codes.
fn edited_table(
    src: &Path,
    dest: &Path,
    edit: impl FnOnce(&mut sidtool::item_id::ItemIds, &mut Vec<u16>, usize),
) {
    use sidtool::ids::dedup::Resolution;
    let mut t = sidtool::ids::sid_table::read(src).unwrap();
    let meta = t.meta.clone().unwrap();
    edit(&mut t.ids, &mut t.codes, t.width);
    let levels = meta.codebook_sizes.len();
    let raw: Vec<u16> = match &t.original_codes {
        Some(o) => o.clone(),
        None => t
            .codes
            .chunks(t.width)
            .flat_map(|r| r[..levels].to_vec())
            .collect(),
    };
    let res = Resolution {
        codes: t.codes.clone(),
        width: t.width,
        suffix_level: meta.suffix_level,
        group_size: t.group_size.clone(),
        moved: 0,
        unresolved: 0,
    };
    sidtool::ids::sid_table::write(dest, &t.ids, &res, &raw, &meta, None).unwrap();
}

fn tokenizer() -> PathBuf {
    testdata("tiny-qwen3").join("tokenizer.json")
}

#[test]
fn every_reader_of_a_sid_table_applies_the_same_validation() {
    let t = tempfile::tempdir().unwrap();
    let out = build_vectors(t.path(), "suffix");
    let sids = out.join("sids.parquet");
    let emb = testdata("items.parquet");
    let q = out.join("quantizer");
    let assign_existing = |existing: &Path| {
        let dest = t.path().join("assigned.parquet");
        let err = fails(&[
            "assign",
            p(&emb),
            "--quantizer",
            p(&q),
            "--existing",
            p(existing),
            "--out",
            p(&dest),
        ]);
        assert!(!dest.exists());
        err
    };
    let stats = |table: &Path| fails(&["stats", p(table)]);
    let vocab = |table: &Path| {
        let v = t.path().join("vocab");
        let err = fails(&[
            "vocab",
            "--sids",
            p(table),
            "--tokenizer",
            p(&tokenizer()),
            "--out",
            p(&v),
        ]);
        assert!(!v.exists());
        err
    };

    // A duplicated item id (used to give an output with a duplicate id).
    let dup_id = t.path().join("dup-id.parquet");
    edited_table(&sids, &dup_id, |ids, _, _| {
        if let sidtool::item_id::ItemIds::Str(v) = ids {
            v[7] = v[3].clone();
        }
    });
    for err in [assign_existing(&dup_id), stats(&dup_id), vocab(&dup_id)] {
        assert!(
            err.contains("dup-id.parquet, column `item_id`, row 7")
                && err.contains("appears twice (rows 3 and 7)"),
            "{err}"
        );
    }

    // A code outside the quantizer's range (vocab used to add 60 035 tokens for it).
    let big = t.path().join("big-code.parquet");
    edited_table(&sids, &big, |_, codes, w| codes[5 * w] = 60_000);
    for err in [assign_existing(&big), stats(&big), vocab(&big)] {
        assert!(
            err.contains("big-code.parquet, column `codes`, row 5")
                && err.contains("code 60000 at level 1 is outside the quantizer's 8 codes"),
            "{err}"
        );
    }

    // Two rows sharing a final ID in a table that says `dedup suffix` (used to give duplicate
    // SIDs under --existing).
    let shared = t.path().join("shared.parquet");
    edited_table(&sids, &shared, |_, codes, w| {
        let first = codes[..w].to_vec();
        codes[9 * w..10 * w].copy_from_slice(&first);
    });
    for err in [assign_existing(&shared), stats(&shared), vocab(&shared)] {
        assert!(
            err.contains("shared.parquet, column `codes`, row 9")
                && err.contains("rows 0 and 9")
                && err.contains("share one SID")
                && err.contains("--dedup suffix"),
            "{err}"
        );
    }
    // The untouched table passes everywhere.
    ok(&["stats", p(&sids)]);
}

#[test]
fn vocab_refuses_shared_ids_unless_allowed_and_then_lists_every_item() {
    let t = tempfile::tempdir().unwrap();
    let out = build_vectors(t.path(), "none");
    let sids = out.join("sids.parquet");
    let table = sidtool::ids::sid_table::read(&sids).unwrap();
    let shared = table.shared_ids(sidtool::quant::kind::IdKind::Sid).unwrap();
    assert!(shared.items > 0);
    let v = t.path().join("vocab");
    let tok = tokenizer();
    let args = [
        "vocab",
        "--sids",
        p(&sids),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&v),
    ];
    // Used to exit 0 with a trie naming only one item per shared ID.
    let err = fails(&args);
    assert!(
        err.contains(&format!("{} items share {} SIDs", shared.items, shared.ids))
            && err.contains("--dedup suffix")
            && err.contains("--allow-duplicates")
            && err.contains("allow_duplicates = true"),
        "{err}"
    );
    assert!(!v.exists());
    // The flag and the config key are one setting.
    let mut flagged = args.to_vec();
    flagged.push("--allow-duplicates");
    ok(&flagged);
    let by_flag = std::fs::read(v.join("trie.json")).unwrap();
    std::fs::remove_dir_all(&v).unwrap();
    let cfg = t.path().join("allow.toml");
    std::fs::write(&cfg, "[vocab]\nallow_duplicates = true\n").unwrap();
    let mut allowed = args.to_vec();
    allowed.extend(["--config", p(&cfg)]);
    ok(&allowed);
    assert_eq!(std::fs::read(v.join("trie.json")).unwrap(), by_flag);
    // Every item is reachable: trie.json lists all 400 under their IDs ...
    let trie = read_json(&v.join("trie.json"));
    let mut listed: Vec<String> = trie["items"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    let mut all: Vec<String> = (0..table.ids.len())
        .map(|i| table.ids.display(i).trim_matches('"').to_string())
        .collect();
    all.sort();
    assert_eq!(listed, all);
    // ... and so does trie.parquet's `item_ids`.
    let f = std::fs::File::open(v.join("trie.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut n = 0;
    for b in reader {
        let b = b.unwrap();
        let lists = b.column_by_name("item_ids").expect("item_ids column");
        let lists = arrow_array::cast::AsArray::as_list::<i32>(lists.as_ref());
        n += lists.values().len();
    }
    assert_eq!(n, 400);
}

#[test]
fn clashing_vocab_markers_are_named_with_the_reason() {
    let t = tempfile::tempdir().unwrap();
    let out = build_vectors(t.path(), "suffix");
    let sids = out.join("sids.parquet");
    let v = t.path().join("vocab");
    let run = |markers: &str| {
        fails(&[
            "vocab",
            "--sids",
            p(&sids),
            "--tokenizer",
            p(&tokenizer()),
            "--out",
            p(&v),
            "--markers",
            markers,
        ])
    };
    let err = run("<a_1>,<a_2>");
    assert!(
        err.contains("marker `<a_1>` is also the SID token of level 1 code 1"),
        "{err}"
    );
    let err = run("<s>,<s>");
    assert!(
        err.contains("marker `<s>` is listed twice (markers 1 and 2)"),
        "{err}"
    );
    let err = run("<|sid_begin|>,<|endoftext|>");
    assert!(
        err.contains("already has the token `<|endoftext|>`") && err.contains("marker"),
        "{err}"
    );
    assert!(!v.exists());
}

#[test]
fn build_warns_about_items_without_text_and_fails_when_none_has_any() {
    let t = tempfile::tempdir().unwrap();
    let model = testdata("tiny-qwen3");
    let items = t.path().join("items.parquet");
    let titles = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from((0..40).map(f).collect::<Vec<_>>()))
    };
    // Every template field null for every item: used to give 40 identical vectors silently.
    write_batch(
        &items,
        vec![
            ("item_id", str_ids(40)),
            ("title", titles(&|_| None)),
            ("category", titles(&|_| None)),
        ],
    );
    let out = t.path().join("out");
    let args = [
        "build",
        p(&items),
        "--out",
        p(&out),
        "--model",
        p(&model),
        "--template",
        "{title} / {category}",
        "--codebook-sizes",
        "4,2",
    ];
    let err = fails(&args);
    assert!(
        err.contains("items.parquet")
            && err.contains("none of its 40 items has any text")
            && err.contains("`title`, `category`"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(
        !entries(t.path()).iter().any(|e| e.contains("partial")),
        "{:?}",
        entries(t.path())
    );
    let e = t.path().join("e.parquet");
    let err = fails(&[
        "embed",
        p(&items),
        "--out",
        p(&e),
        "--model",
        p(&model),
        "--template",
        "{title}",
    ]);
    assert!(err.contains("none of its 40 items has any text"), "{err}");
    // Some items without text: build says so, as embed does.
    write_batch(
        &items,
        vec![
            ("item_id", str_ids(40)),
            (
                "title",
                titles(&|i| (i % 4 != 0).then(|| format!("title {i}"))),
            ),
            ("category", titles(&|_| None)),
        ],
    );
    let err = ok(&args);
    assert!(err.contains("10 of 40 items had no text"), "{err}");
}

#[test]
fn a_truncated_resume_part_is_embedded_again_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items_text.parquet");
    let model = testdata("tiny-qwen3");
    let full = t.path().join("full.parquet");
    let out = t.path().join("emb.parquet");
    let base = |o: &Path| -> Vec<String> {
        [
            "embed",
            p(&items),
            "--out",
            p(o),
            "--model",
            p(&model),
            "--window-rows",
            "50",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let a = base(&full);
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let args = base(&out);
    let partial = t.path().join(".emb.parquet.partial");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sidtool"))
        .args(&args)
        .env("SIDTOOL_TEST_PART_DELAY_MS", "300")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let checks = |d: &Path| {
        entries(d)
            .iter()
            .filter(|n| n.starts_with("check-"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while checks(&partial) < 3 {
        assert!(std::time::Instant::now() < deadline, "no parts appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Cut a finished part short, as a full disk or a copy gone wrong would.
    let part = partial.join("part-000001.parquet");
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
    let mut resumed: Vec<&str> = args.iter().map(String::as_str).collect();
    resumed.push("--resume");
    // Used to fail on the part every time, while advising to rerun with --resume.
    let err = ok(&resumed);
    assert!(
        err.contains("discarding") && err.contains("part-000001.parquet") && err.contains("bytes"),
        "{err}"
    );
    assert_eq!(read_embeddings(&out), read_embeddings(&full));
    assert!(!partial.exists());
}
