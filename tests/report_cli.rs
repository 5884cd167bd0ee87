//! `sidtool report`: one self-contained HTML page for several builds side by side, rendered in
//! a real browser (headless Chromium from Debian; skipped when absent, required under CI=true).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|n| Path::new("/usr/bin").join(n))
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "chromium is missing (apt-get install chromium)"
        );
        eprintln!("skipping the browser check: no chromium");
    }
    found
}

/// A PNG screenshot of `page` at 1400 × 1800, its size in bytes.
fn screenshot(browser: &Path, page: &Path, png: &Path) -> u64 {
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,1800",
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::metadata(png).unwrap().len()
}

#[test]
fn report_shows_runs_side_by_side_and_renders_in_a_browser() {
    let t = tempfile::tempdir().unwrap();
    let (km, vae) = (t.path().join("kmeans"), t.path().join("rqvae"));
    let items = testdata("items.parquet");
    ok(&[
        "build",
        s(&items),
        "--codebook-sizes",
        "16,8,8",
        "--out",
        s(&km),
        "-q",
    ]);
    ok(&[
        "build",
        s(&items),
        "--method",
        "rq-vae",
        "--codebook-sizes",
        "16,8,8",
        "--epochs",
        "10",
        "--hidden",
        "64,32",
        "--latent-dim",
        "16",
        "--batch-size",
        "64",
        "--out",
        s(&vae),
        "-q",
    ]);
    ok(&[
        "eval",
        s(&km.join("sids.parquet")),
        "--items",
        s(&items),
        "--category-column",
        "category",
        "--out",
        s(&km.join("eval.json")),
    ]);
    let html_path = t.path().join("report.html");
    ok(&["report", s(&km), s(&vae), "--out", s(&html_path), "-q"]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    // k-means: usage, group sizes, fan-out, error; RQ-VAE adds two training curves.
    assert_eq!(html.matches("<svg").count(), 4 + 6, "charts per run");
    assert!(html.contains("training: codebook utilisation") && html.contains("category lift"));
    assert!(html.contains("<h2>kmeans</h2>") && html.contains("<h2>rqvae</h2>"));
    // Self-contained: nothing is fetched (the SVG namespace is a name, not a request).
    for attr in ["src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(attr),
            "the report refers to something outside: {attr}"
        );
    }
    let err = fails(&["report", s(t.path()), "--out", s(&t.path().join("x.html"))]);
    assert!(err.contains("has no stats.json"), "{err}");

    let Some(browser) = chromium() else { return };
    let blank = t.path().join("blank.html");
    std::fs::write(&blank, "<!doctype html><html><body></body></html>").unwrap();
    let empty = screenshot(&browser, &blank, &t.path().join("blank.png"));
    let shot = screenshot(&browser, &html_path, &t.path().join("report.png"));
    // Charts, axes and text compress far worse than an empty white page.
    assert!(
        shot > 8 * empty && shot > 40_000,
        "the rendered report looks empty ({shot} bytes vs {empty} for a blank page)"
    );
}

#[test]
fn build_report_is_part_of_the_output() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run-a");
    let items = testdata("items.parquet");
    let build = |extra: &[&str]| {
        let mut a = vec![
            "build",
            s(&items),
            "--codebook-sizes",
            "8,4",
            "--out",
            s(&out),
            "-q",
        ];
        a.extend_from_slice(extra);
        ok(&a);
    };
    build(&["--report"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<h2>run-a</h2>"),
        "titled by the output, not the staging dir"
    );
    assert_eq!(html.matches("<svg").count(), 4);
    let m = read_json(&out.join("manifest.json"));
    assert!(
        m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "report.html")
    );
    assert_eq!(m["config"]["report"], true);
    // A build without --report leaves no stale report of the earlier one.
    build(&[]);
    assert!(!out.join("report.html").exists());
}
