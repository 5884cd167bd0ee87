//! `--method rq-vae` end to end through the binary.

mod common;

use common::*;
use std::collections::HashSet;

#[test]
fn build_train_and_assign_with_rq_vae() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let items = testdata("items.parquet");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let common = [
        "--method",
        "rq-vae",
        "--codebook-sizes",
        "16,8",
        "--epochs",
        "15",
        "--hidden",
        "64,32",
        "--latent-dim",
        "8",
        "--batch-size",
        "128",
        "--prefix-masking",
        "uniform",
        "--seed",
        "3",
    ];
    let mut args = vec!["build".to_string(), s(&items), "--out".into(), s(&out)];
    args.extend(common.iter().map(|a| a.to_string()));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let cfg = read_json(&out.join("quantizer").join("config.json"));
    assert_eq!(cfg["method"], "rq-vae");
    assert_eq!(cfg["latent_dim"], 8);
    assert_eq!(cfg["train"]["prefix_masking"], "uniform");
    assert!(!cfg["evaluations"].as_array().unwrap().is_empty());
    let manifest = read_json(&out.join("manifest.json"));
    assert_eq!(manifest["config"]["quantizer"]["rqvae"]["epochs"], 15);

    // Unique final IDs.
    let table = sidtool::ids::sid_table::read(&out.join("sids.parquet")).unwrap();
    let ids: HashSet<&[u16]> = table.codes.chunks(table.width).collect();
    assert_eq!(ids.len(), 400);

    // The saved model assigns the same IDs again.
    let again = t.path().join("again.parquet");
    ok(&[
        "assign",
        &s(&out.join("embeddings.parquet")),
        "--quantizer",
        &s(&out.join("quantizer")),
        "--out",
        &s(&again),
    ]);
    let b = sidtool::ids::sid_table::read(&again).unwrap();
    assert_eq!(b.codes, table.codes);

    // train alone, same seed and settings, one thread instead of all: the same model.
    let q = t.path().join("q");
    let mut args = vec![
        "train".to_string(),
        s(&items),
        "--out".into(),
        s(&q),
        "--threads".into(),
        "1".into(),
    ];
    args.extend(common.iter().map(|a| a.to_string()));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (a, b) = (
        std::fs::read(out.join("quantizer").join("model.safetensors")).unwrap(),
        std::fs::read(q.join("model.safetensors")).unwrap(),
    );
    assert!(
        a == b,
        "same seed and data gave different weights with 1 thread"
    );
}

#[test]
fn bad_rq_vae_settings_are_refused_before_training() {
    let items = testdata("items.parquet");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = out.to_string_lossy().into_owned();
    let i = items.to_string_lossy().into_owned();
    for (flag, value, want) in [
        ("--latent-dim", "0", "latent_dim"),
        ("--lr", "0", "lr must be > 0"),
        ("--hidden", "64,0", "hidden widths"),
        ("--codebook-sizes", "512", "is larger than the"),
    ] {
        let err = fails(&["build", &i, "--out", &o, "--method", "rq-vae", flag, value]);
        assert!(err.contains(want), "{flag} {value}: {err}");
        assert!(entries(&out).is_empty());
    }
}

#[test]
fn interactions_feed_the_contrastive_loss() {
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;
    let t = tempfile::tempdir().unwrap();
    let inter = t.path().join("interactions.parquet");
    // Users who each browse one category's items in id order; one item id is unknown.
    let mut users = Vec::new();
    let mut items = Vec::new();
    let mut times = Vec::new();
    for u in 0..40 {
        for k in 0..10 {
            users.push(format!("u{u}"));
            items.push(format!("item-{:04}", 1 + (u * 7 + k * 40) % 400));
            times.push((u * 100 + k) as i64);
        }
    }
    users.push("u0".into());
    items.push("no-such-item".into());
    times.push(5);
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(StringArray::from(users))),
        ("item_id", Arc::new(StringArray::from(items))),
        ("timestamp", Arc::new(Int64Array::from(times))),
    ];
    write_batch(&inter, cols);
    let out = t.path().join("out");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let err = ok(&[
        "build",
        &s(&testdata("items.parquet")),
        "--out",
        &s(&out),
        "--method",
        "rq-vae",
        "--codebook-sizes",
        "16,8",
        "--epochs",
        "5",
        "--hidden",
        "64,32",
        "--latent-dim",
        "8",
        "--interactions",
        &s(&inter),
        "--contrastive-weight",
        "0.5",
    ]);
    assert!(
        err.contains("1 of 401 interactions name items that are not among"),
        "{err}"
    );
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(
        m["inputs"].as_array().unwrap().len(),
        2,
        "interactions file hashed too"
    );
    assert_eq!(m["config"]["quantizer"]["rqvae"]["contrastive_weight"], 0.5);

    // No usable pair: a clear error naming the file.
    let lonely = t.path().join("lonely.parquet");
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(StringArray::from(vec!["a", "b"]))),
        (
            "item_id",
            Arc::new(StringArray::from(vec!["item-0001", "item-0002"])),
        ),
    ];
    write_batch(&lonely, cols);
    let err = fails(&[
        "train",
        &s(&testdata("items.parquet")),
        "--out",
        &s(&t.path().join("q")),
        "--method",
        "rq-vae",
        "--codebook-sizes",
        "8",
        "--interactions",
        &s(&lonely),
    ]);
    assert!(
        err.contains("lonely.parquet") && err.contains("no co-occurring pair"),
        "{err}"
    );
    // A missing column.
    let err = fails(&[
        "train",
        &s(&testdata("items.parquet")),
        "--out",
        &s(&t.path().join("q")),
        "--method",
        "rq-vae",
        "--interactions",
        &s(&testdata("items.parquet")),
    ]);
    assert!(err.contains("column `user_id`"), "{err}");
}
