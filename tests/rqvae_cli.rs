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
    let table = sidtool::io::sid_table::read(&out.join("sids.parquet")).unwrap();
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
    let b = sidtool::io::sid_table::read(&again).unwrap();
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
