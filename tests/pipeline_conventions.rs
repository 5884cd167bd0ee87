//! What a data pipeline and a shell user see: `-` as an output means stdout, and then stdout
//! carries nothing else; reports go to stdout, progress and logs to stderr; without a terminal
//! the log shows progress lines (count, total, rate, ETA) while a stage runs and no bar escape
//! codes; help is grouped by stage; completions and manual pages come from the same flags.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run in `dir` (so a file named `-` would land there), checking stats outputs as every run.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sidtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sidtool {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    check_stats_outputs(args, &o, Some(dir));
    o
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn dash_writes_json_to_stdout_and_no_file_named_dash() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_small(&out);
    let sids = out.join("sids.parquet");
    let o = run_in(t.path(), &["stats", s(&sids), "--json", "-"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let built = read_json(&out.join("stats.json"));
    assert_eq!(
        (&v["before"], &v["after"]),
        (&built["before"], &built["after"]),
        "the statistics build wrote (less the error, which needs the vectors)"
    );
    // Stdout carries the data only; the table moved to stderr.
    assert!(text(&o.stderr).contains("collision rate"));
    let o = run_in(t.path(), &["eval", s(&sids), "--out", "-"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["t0"]["items"], 400);
    assert!(text(&o.stderr).contains("unique-item rate"));
    let o = run_in(t.path(), &["report", s(&out), "--out", "-"]);
    let html = text(&o.stdout);
    assert!(
        html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"),
        "{}",
        &html[..html.len().min(200)]
    );
    // The code-usage chart names levels by number, then token letter.
    assert!(
        html.contains(">\n1 (a)\n<") && html.contains(">\n2 (b)\n<"),
        "level labels"
    );
    assert!(!t.path().join("-").exists(), "no file named `-`");
}

#[test]
fn assign_and_resolve_write_parquet_and_stats_to_stdout() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_small(&out);
    let items = testdata("items.parquet");
    let q = out.join("quantizer");
    let assign = |extra: &[&str]| {
        let mut a = vec!["assign", s(&items), "--quantizer", s(&q)];
        a.extend_from_slice(extra);
        run_in(t.path(), &a)
    };
    // `--out -`: the same bytes as the file, and nothing else on stdout.
    let file = t.path().join("a.parquet");
    let stats_file = t.path().join("a.json");
    assign(&["--out", s(&file)]);
    let o = assign(&["--out", "-", "--stats", s(&stats_file)]);
    assert_eq!(o.stdout, std::fs::read(&file).unwrap());
    assert!(text(&o.stderr).contains("collision rate") && text(&o.stderr).contains("wrote stdout"));
    // `--stats -`: the statistics on stdout, the table on stderr, the IDs in their file.
    let o = assign(&["--out", s(&file), "--stats", "-"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, read_json(&stats_file));
    assert!(text(&o.stderr).contains("collision rate"));
    // Both on stdout is refused before any work.
    let e = fails(&[
        "assign",
        s(&items),
        "--quantizer",
        s(&q),
        "--out",
        "-",
        "--stats",
        "-",
    ]);
    assert!(e.contains("only one output can go to stdout"), "{e}");

    // resolve: raw codes of the whole catalogue as one part.
    let raw = t.path().join("raw.parquet");
    assign(&["--out", s(&raw), "--dedup", "none"]);
    let resolved = t.path().join("r.parquet");
    run_in(t.path(), &["resolve", s(&raw), "--out", s(&resolved)]);
    let o = run_in(t.path(), &["resolve", s(&raw), "--out", "-"]);
    assert_eq!(o.stdout, std::fs::read(&resolved).unwrap());
    let o = run_in(
        t.path(),
        &["resolve", s(&raw), "--out", s(&resolved), "--stats", "-"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["after"]["n_items"], 400, "{v}");
    assert!(!t.path().join("-").exists(), "no file named `-`");
    assert_eq!(
        entries(&std::env::temp_dir())
            .iter()
            .filter(|n| n.starts_with(&format!("sidtool-{}", std::process::id())))
            .count(),
        0
    );
}

#[test]
fn reports_go_to_stdout_and_logs_to_stderr() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_small(&out);
    let (report, log) = ok_out(&["stats", s(&out.join("sids.parquet"))]);
    assert!(report.contains("collision rate") && report.contains("perplexity"));
    assert!(log.is_empty(), "{log}");
    // Levels by number from 1, as in stats.json; the letter names the level's tokens.
    let rows = regex::Regex::new(r"(?m)^level +token .*\n1 +a +8 .*\n2 +b +4 .*\n3 +c ").unwrap();
    assert!(rows.is_match(&report), "{report}");
    let q = t.path().join("q");
    let (report, log) = ok_out(&[
        "train",
        s(&out.join("embeddings.parquet")),
        "--codebook-sizes",
        "8,4",
        "--out",
        s(&q),
    ]);
    assert_eq!(report, "trained 2 levels: [8, 4]\n");
    assert!(
        log.contains("read embeddings (rows): started")
            && log.contains(&format!("wrote {}", s(&q))),
        "{log}"
    );
    // -q: errors only, on either stream.
    let o = sidtool(&["stats", s(&out.join("sids.parquet")), "-q"]);
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

#[test]
fn a_pipeline_log_shows_progress_with_rate_and_eta_while_a_stage_runs() {
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
    let err = text(&o.stderr);
    let line = regex::Regex::new(r"read embeddings \(rows\): 400/400 \(100\.0%\), \d+/s, eta 0s\n")
        .unwrap();
    assert!(
        err.contains("read embeddings (rows): started")
            && line.is_match(&err)
            && err.contains("read embeddings (rows): done in"),
        "{err}"
    );
}

#[test]
fn verbose_logs_without_a_terminal_have_no_bar_or_colour_codes() {
    let t = tempfile::tempdir().unwrap();
    let o = sidtool(&[
        "build",
        s(&testdata("items.parquet")),
        "--codebook-sizes",
        "8,4",
        "--out",
        s(&t.path().join("out")),
        "-vv",
    ]);
    assert!(o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("k-means level fitted"), "{err}");
    assert!(
        !err.contains('\x1b') && !err.contains('\r'),
        "escape codes in a log: {err:?}"
    );
}

#[test]
fn build_help_groups_flags_by_stage_with_global_options_apart() {
    let (help, _) = ok_out(&["build", "--help"]);
    let at = |heading: &str| {
        help.find(&format!("\n{heading}:\n"))
            .unwrap_or_else(|| panic!("no heading {heading:?} in:\n{help}"))
    };
    // Where a flag's entry starts: `  --out <OUT>`, `  -q, --quiet`.
    let flag = |f: &str| {
        regex::Regex::new(&format!(r"\n +(-\w, )?{f}[ .\n]"))
            .unwrap()
            .find(&help)
            .unwrap_or_else(|| panic!("no {f} in:\n{help}"))
            .start()
    };
    // Each flag under its own heading, i.e. after it and before the next one.
    let order = [
        ("Output", "--out"),
        ("Input", "--id-column"),
        ("Embedding", "--model"),
        ("Quantizer", "--codebook-sizes"),
        ("RQ-VAE", "--epochs"),
        ("GenSAR", "--shared-levels"),
        ("IDs", "--dedup"),
        ("Vocabulary", "--tokens"),
        ("Collaborative", "--collab-dim"),
        ("Global options", "--seed"),
    ];
    for w in order.windows(2) {
        let ((h, f), (next, _)) = (w[0], w[1]);
        assert!(
            at(h) < flag(f) && flag(f) < at(next),
            "{f} not under {h}:\n{help}"
        );
    }
    let globals = at("Global options");
    for f in ["--config", "--seed", "--quiet", "--verbose", "--threads"] {
        assert!(flag(f) > globals, "{f} not under Global options");
    }
}

#[test]
fn completions_and_manual_pages_come_from_the_flags() {
    let (bash, _) = ok_out(&["completions", "bash"]);
    assert!(bash.contains("_sidtool()") && bash.contains("complete -F _sidtool"));
    for sub in ["build", "assign", "resolve", "eval", "completions", "man"] {
        assert!(bash.contains(sub), "{sub} missing from the bash completion");
    }
    assert!(bash.contains("--codebook-sizes"));
    let (zsh, _) = ok_out(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef sidtool"));

    let (page, _) = ok_out(&["man"]);
    assert_roff(&page, "sidtool");
    assert!(page.contains("sidtool\\-build(1)"), "subcommands listed");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    ok(&["man", "--out", s(&dir)]);
    let pages = entries(&dir);
    for name in ["sidtool", "sidtool-build", "sidtool-bench-kmeans"] {
        assert!(pages.contains(&format!("{name}.1")), "{pages:?}");
        let text = std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap();
        assert_roff(&text, name);
    }
    let build = std::fs::read_to_string(dir.join("sidtool-build.1")).unwrap();
    assert!(build.contains("\\-\\-codebook\\-sizes"));
}

/// A roff man page: only requests, escapes and text; its first macro is `.TH NAME 1` (after
/// the string definitions clap_mangen puts first), then `.SH NAME`.
fn assert_roff(page: &str, name: &str) {
    let requests: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with('.') || l.starts_with('\''))
        .collect();
    let th = requests
        .iter()
        .position(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH in:\n{page}"));
    assert!(
        requests[..th]
            .iter()
            .all(|l| l.starts_with(".ie ") || l.starts_with(".el ")),
        "only string definitions before .TH: {:?}",
        &requests[..th]
    );
    assert!(
        requests[th].starts_with(&format!(".TH {name} 1 ")),
        "{}",
        requests[th]
    );
    assert_eq!(requests[th + 1], ".SH NAME");
    let known = [
        ".ie", ".el", ".TH", ".SH", ".SS", ".TP", ".PP", ".IP", ".RS", ".RE", ".br", ".B", ".I",
        ".nf", ".fi", ".sp", ".in",
    ];
    for r in &requests {
        let m = r.split_whitespace().next().unwrap();
        assert!(known.contains(&m), "unexpected roff request {r:?}");
    }
}

#[test]
fn every_parquet_output_has_its_footer_metadata_in_the_arrow_schema_too() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_small(&out);
    let data = t.path().join("data");
    ok(&[
        "import-recbole",
        s(&testdata("recbole-tiny")),
        "--out",
        s(&data),
        "-q",
    ]);
    let collab = t.path().join("collab.parquet");
    ok(&[
        "collab",
        s(&data.join("interactions.parquet")),
        "--items",
        s(&data.join("items.parquet")),
        "--out",
        s(&collab),
        "--collab-dim",
        "2",
        "-q",
    ]);
    let embedded = t.path().join("emb.parquet");
    ok(&[
        "embed",
        s(&testdata("items_text.parquet")),
        "--out",
        s(&embedded),
        "--model",
        s(&testdata("tiny-qwen3")),
        "-q",
    ]);
    let raw = t.path().join("raw.parquet");
    ok(&[
        "assign",
        s(&out.join("embeddings.parquet")),
        "--quantizer",
        s(&out.join("quantizer")),
        "--dedup",
        "none",
        "--out",
        s(&raw),
        "-q",
    ]);
    let resolved = t.path().join("resolved.parquet");
    ok(&["resolve", s(&raw), "--out", s(&resolved), "-q"]);
    for (f, key) in [
        (out.join("sids.parquet"), "sidtool:sids"),
        (out.join("embeddings.parquet"), "sidtool:version"),
        (data.join("items.parquet"), "sidtool:recbole"),
        (data.join("interactions.parquet"), "sidtool:recbole"),
        (collab.clone(), "sidtool:collab"),
        (embedded.clone(), "sidtool:embed"),
        (raw.clone(), "sidtool:sids"),
        (resolved.clone(), "sidtool:sids"),
    ] {
        let footer = footer_metadata(&f);
        assert!(footer.contains_key(key), "{}: {footer:?}", f.display());
        assert_eq!(arrow_schema_metadata(&f), footer, "{}", f.display());
    }
}
