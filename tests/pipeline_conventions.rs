//! What a data pipeline sees: `-` as an output means stdout, and without a terminal the log
//! shows progress lines while a stage runs, not only `started` and `done`.

mod common;

use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn dash_writes_json_to_stdout_and_no_file_named_dash() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_small(&out);
    let sids = out.join("sids.parquet");
    let run_in = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sidtool"))
            .args(args)
            .current_dir(t.path())
            .output()
            .unwrap()
    };
    let o = run_in(&["stats", s(&sids), "--json", "-", "-q"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let built = read_json(&out.join("stats.json"));
    assert_eq!(
        (&v["before"], &v["after"]),
        (&built["before"], &built["after"]),
        "the statistics build wrote (less the error, which needs the vectors)"
    );
    let o = run_in(&["eval", s(&sids), "--out", "-"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["t0"]["items"], 400);
    assert!(!t.path().join("-").exists(), "no file named `-`");
}

#[test]
fn a_pipeline_log_shows_progress_while_a_stage_runs() {
    let t = tempfile::tempdir().unwrap();
    // Every advance prints at an interval of 0 s; stderr is a pipe here, not a terminal.
    let o = sidtool_env(
        &[
            "build",
            s(&testdata("items.parquet")),
            "--codebook-sizes",
            "8,4",
            "--out",
            s(&t.path().join("out")),
        ],
        &[("SIDTOOL_PROGRESS_SECONDS", "0")],
    );
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("read embeddings (rows): started")
            && err.contains("read embeddings (rows): 400/400 (")
            && err.contains("read embeddings (rows): done in"),
        "{err}"
    );
}
