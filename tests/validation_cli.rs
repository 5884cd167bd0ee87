//! Bad, inconsistent or unlucky inputs that used to be accepted silently (or explained badly),
//! end to end through the binary: issue 13's validation findings.

mod common;

use arrow_array::{ArrayRef, Int64Array, StringArray};
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
    let (mut u, mut it, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for user in 0..60 {
        for t in 0..8 {
            u.push(format!("u{user}"));
            it.push(format!(
                "item-{:04}",
                (user % 3) * 10 + (user * 3 + t * 7) % 10
            ));
            ts.push(1_700_000_000 + t as i64 * 60);
        }
    }
    let inter = dir.join("interactions.parquet");
    write_batch(
        &inter,
        vec![
            ("user_id", Arc::new(StringArray::from(u)) as ArrayRef),
            ("item_id", Arc::new(StringArray::from(it))),
            ("timestamp", Arc::new(Int64Array::from(ts))),
        ],
    );
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
