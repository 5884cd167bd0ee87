//! Corrupted inputs never crash sidtool: Parquet files, TOML configs and tokenizer.json files
//! with bytes flipped or cut off at seeded random places give either a clean result or a clean
//! error (exit 1, an `error:` line), never a panic, a signal or a hang, and never an output.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

/// Seeded corruptions of `bytes`: every third one truncated, the others with a few bytes
/// overwritten (always inside the part that holds data, not only at the end).
fn corruptions(bytes: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed;
    let mut next = |m: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) % m.max(1) as u64) as usize
    };
    (0..n)
        .map(|i| {
            let mut b = bytes.to_vec();
            if i % 3 == 0 {
                b.truncate(next(bytes.len()));
            } else {
                for _ in 0..1 + next(4) {
                    let at = next(b.len());
                    b[at] = next(256) as u8;
                }
            }
            b
        })
        .collect()
}

/// A clean outcome: success, or exit 1 with an `error:` message and no panic.
fn clean(o: &Output, what: &str) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: panic\n{err}"
    );
    match o.status.code() {
        Some(0) => true,
        Some(1) => {
            assert!(
                err.contains("error:"),
                "{what}: exit 1 without a message\n{err}"
            );
            false
        }
        other => panic!("{what}: exit {other:?} (a signal or an unexpected code)\n{err}"),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A temporary directory holding one good build of the shipped catalogue, `good/`.
fn good_build() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good");
    build_small(&good);
    (t, good)
}

#[test]
fn corrupted_parquet_inputs_fail_cleanly() {
    let (t, good) = good_build();
    let cases = [
        ("items", std::fs::read(testdata("items.parquet")).unwrap()),
        ("sids", std::fs::read(good.join("sids.parquet")).unwrap()),
    ];
    let mut failed = 0;
    for (kind, bytes) in cases {
        for (i, b) in corruptions(&bytes, 30, 11).into_iter().enumerate() {
            let f = t.path().join(format!("{kind}-{i}.parquet"));
            std::fs::write(&f, b).unwrap();
            let out = t.path().join(format!("out-{kind}-{i}"));
            let o = match kind {
                "items" => sidtool(&[
                    "build",
                    s(&f),
                    "--codebook-sizes",
                    "8,4",
                    "--out",
                    s(&out),
                    "-q",
                ]),
                _ => sidtool(&["stats", s(&f), "--json", s(&out.with_extension("json"))]),
            };
            if !clean(&o, &format!("{kind} corruption {i}")) {
                failed += 1;
                assert!(!out.exists(), "a failed run left {}", out.display());
            }
            let o = sidtool(&["inspect", s(&f)]);
            clean(&o, &format!("inspect of {kind} corruption {i}"));
        }
    }
    assert!(
        failed > 10,
        "the corruptions should mostly be caught ({failed})"
    );
}

#[test]
fn corrupted_configs_and_tokenizers_fail_cleanly() {
    let (t, good) = good_build();
    let toml = std::fs::read(testdata("sidtool.toml")).unwrap();
    let mut failed = 0;
    for (i, b) in corruptions(&toml, 30, 5).into_iter().enumerate() {
        let f = t.path().join(format!("c{i}.toml"));
        std::fs::write(&f, b).unwrap();
        let out = t.path().join(format!("out-c{i}"));
        // Small codebooks keep a config that still parses fast to build.
        let o = sidtool(&[
            "build",
            s(&testdata("items.parquet")),
            "--config",
            s(&f),
            "--codebook-sizes",
            "8,4",
            "--epochs",
            "2",
            "--out",
            s(&out),
            "-q",
        ]);
        if !clean(&o, &format!("config corruption {i}")) {
            failed += 1;
            assert!(!out.exists(), "a failed run left {}", out.display());
        }
    }
    let tok = std::fs::read(testdata("tiny-qwen3/tokenizer.json")).unwrap();
    for (i, b) in corruptions(&tok, 20, 3).into_iter().enumerate() {
        let f = t.path().join(format!("t{i}.json"));
        std::fs::write(&f, b).unwrap();
        let out = t.path().join(format!("out-t{i}"));
        let o = sidtool(&[
            "vocab",
            "--sids",
            s(&good.join("sids.parquet")),
            "--tokenizer",
            s(&f),
            "--out",
            s(&out),
        ]);
        if !clean(&o, &format!("tokenizer corruption {i}")) {
            failed += 1;
            assert!(!out.exists(), "a failed run left {}", out.display());
        }
    }
    assert!(
        failed > 10,
        "the corruptions should mostly be caught ({failed})"
    );
}
