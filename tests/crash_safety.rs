//! Crash safety through the real binary (docs/reliability.md): outputs are committed
//! atomically whatever moment the process dies, one writer per output, inputs are never
//! overwritten. Kills are injected with the test-only hooks of `src/fs/fault.rs`.
#![cfg(unix)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sidtool"));
    c.args(args).arg("--quiet");
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let o = c.output().expect("run sidtool");
    check_stats_outputs(args, &o, cwd);
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` (relative path → bytes; directories as `path/`), with the
/// manifest's run-dependent fields (time of day, stage timings) dropped.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &e.path(), out);
            } else {
                let mut bytes = std::fs::read(e.path()).unwrap();
                if rel == "manifest.json" {
                    let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    let o = m.as_object_mut().unwrap();
                    assert!(o.remove("created_unix_s").is_some() && o.remove("timings").is_some());
                    bytes = serde_json::to_vec(&m).unwrap();
                }
                out.insert(rel, bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Stopped by the fault hook's abort, not by an error of its own.
fn killed(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(libc::SIGABRT)
}

/// A pristine copy of the old output to put back before each try.
struct Scenario<'a> {
    /// The directory holding only the output (hidden leftovers would show up here).
    parent: PathBuf,
    out: PathBuf,
    old: PathBuf,
    args: Vec<&'a str>,
    /// Extra environment of every run (the fallback test forces the rename-aside path).
    env: Vec<(&'a str, &'a str)>,
    /// The same command failing after it took the lock (fallback test: recovery must restore
    /// the old output even then).
    failing: Option<Vec<&'a str>>,
}

/// Kill the command at its 1st, 2nd, ... filesystem commit step until a run completes. After
/// each kill the output must be exactly the old or exactly the new one, and a normal rerun must
/// succeed, give the new output and leave no hidden files. Returns (kills, of them leaving old).
fn kill_at_every_step(sc: &Scenario, expect_old: &BTreeMap<String, Vec<u8>>) -> (usize, usize) {
    let rerun_args: Vec<&str> = sc.args.clone();
    let mut new: Option<BTreeMap<String, Vec<u8>>> = None;
    let (mut kills, mut olds) = (0, 0);
    for n in 1..200 {
        let _ = std::fs::remove_dir_all(&sc.parent);
        copy_tree(&sc.old, &sc.out);
        let steps = n.to_string();
        let mut env = sc.env.clone();
        env.push(("SIDTOOL_FAULT_AFTER_STEPS", steps.as_str()));
        let o = run(&sc.args, &env, None);
        if o.status.success() {
            let got = snapshot(&sc.out);
            if let Some(new) = &new {
                assert_eq!(&got, new, "completed run at N={n}");
            }
            assert_eq!(
                names(&sc.parent),
                [sc.out.file_name().unwrap().to_str().unwrap()]
            );
            assert!(kills > 0, "the commit took no step");
            eprintln!(
                "{:?}: {kills} kills, {olds} left the old output",
                sc.args[0]
            );
            return (kills, olds);
        }
        assert!(killed(&o), "N={n}: not killed by the hook: {}", stderr(&o));
        kills += 1;
        if !sc.out.exists() {
            // Only the fallback has this window: the old output is set aside, complete, and
            // the next writer, even one that fails, puts it back first.
            let aside: Vec<String> = names(&sc.parent)
                .into_iter()
                .filter(|n| n.contains(".sidtool-old-"))
                .collect();
            assert_eq!(aside.len(), 1, "N={n}: no output and no set-aside one");
            assert_eq!(&snapshot(&sc.parent.join(&aside[0])), expect_old, "N={n}");
            let failing = sc
                .failing
                .as_ref()
                .expect("only the fallback leaves no output");
            let o = run(failing, &sc.env, None);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert_eq!(&snapshot(&sc.out), expect_old, "N={n}: old output restored");
            assert_eq!(
                names(&sc.parent),
                [sc.out.file_name().unwrap().to_str().unwrap()]
            );
            olds += 1;
            continue;
        }
        let after_kill = snapshot(&sc.out);
        // The next normal run completes and gives the new output, with nothing left over.
        let o = run(&rerun_args, &sc.env, None);
        assert!(o.status.success(), "rerun after N={n}: {}", stderr(&o));
        let fresh = snapshot(&sc.out);
        let new = new.get_or_insert(fresh.clone());
        assert_eq!(&fresh, new, "rerun after N={n} gives the new output");
        assert_eq!(
            names(&sc.parent),
            [sc.out.file_name().unwrap().to_str().unwrap()],
            "hidden leftovers after the rerun (N={n})"
        );
        if &after_kill == expect_old {
            olds += 1;
        } else {
            assert_eq!(
                &after_kill, new,
                "N={n}: neither the old nor the new output"
            );
        }
    }
    panic!("never completed");
}

fn items() -> PathBuf {
    testdata("items.parquet")
}

/// The example config without its `[vocab] llm`, so a build writes vocabulary files only
/// when given `--tokenizer` (written once per test process, beside the other temp files).
fn config() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let text = std::fs::read_to_string(testdata("sidtool.toml")).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("llm = ")).collect();
        assert!(
            kept.len() < text.lines().count(),
            "the example config names an LLM"
        );
        let path = std::env::temp_dir().join(format!("sidtool-crash-{}.toml", std::process::id()));
        std::fs::write(&path, kept.join("\n")).unwrap();
        path
    })
    .clone()
}

fn tokenizer() -> PathBuf {
    testdata("tiny-qwen3").join("tokenizer.json")
}

#[test]
fn build_into_an_existing_output_is_old_or_new_at_every_kill() {
    build_scenario(false);
}

/// The portable commit (rename aside, rename in) has a moment without an output: a kill there
/// leaves the complete old output aside, and the next run restores it before anything else.
#[test]
fn build_without_exchange_recovers_the_old_output_after_every_kill() {
    build_scenario(true);
}

fn build_scenario(fallback: bool) {
    let t = tempfile::tempdir().unwrap();
    let parent = t.path().join("work");
    let out = parent.join("out");
    // Old: another seed, with vocabulary files, plus the user's own file and folder.
    let old = t.path().join("old");
    let o = run(
        &[
            "build",
            s(&items()),
            "--out",
            s(&old),
            "--config",
            s(&config()),
            "--codebook-sizes",
            "8,4,4",
            "--seed",
            "1",
            "--tokenizer",
            s(&tokenizer()),
        ],
        &[],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(old.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(old.join("mine")).unwrap();
    std::fs::write(old.join("mine").join("a.txt"), "also mine").unwrap();
    let expect_old = snapshot(&old);
    let (it, cfg) = (items(), config());
    let args = vec![
        "build",
        s(&it),
        "--out",
        s(&out),
        "--config",
        s(&cfg),
        "--codebook-sizes",
        "8,4,4",
        "--seed",
        "2",
    ];
    let mut failing = args.clone();
    failing.extend(["--tokenizer", "no-such-tokenizer.json"]);
    let sc = Scenario {
        parent: parent.clone(),
        out: out.clone(),
        old: old.clone(),
        args,
        env: if fallback {
            vec![("SIDTOOL_TEST_NO_EXCHANGE", "1")]
        } else {
            Vec::new()
        },
        failing: fallback.then_some(failing),
    };
    let (kills, olds) = kill_at_every_step(&sc, &expect_old);
    assert!(
        olds > 0 && olds < kills,
        "{olds} of {kills} kills left the old build"
    );
    // The new build dropped the old vocabulary files and kept the user's own.
    let new = snapshot(&out);
    assert!(!new.contains_key("tokenizer.json") && expect_old.contains_key("tokenizer.json"));
    assert_eq!(new["notes.txt"], b"mine");
    assert_eq!(new["mine/a.txt"], b"also mine");
    assert_ne!(new["sids.parquet"], expect_old["sids.parquet"]);
}

#[test]
fn train_out_is_old_or_new_at_every_kill_and_reruns_succeed() {
    let t = tempfile::tempdir().unwrap();
    let parent = t.path().join("work");
    let out = parent.join("q");
    let old = t.path().join("old-q");
    let train = |out: &Path, sizes: &'static str| {
        vec![
            "train".to_string(),
            s(&items()).to_string(),
            "--out".into(),
            s(out).to_string(),
            "--config".into(),
            s(&config()).to_string(),
            "--codebook-sizes".into(),
            sizes.into(),
        ]
    };
    let a = train(&old, "8,4,4");
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let expect_old = snapshot(&old);
    let b = train(&out, "4,4");
    let sc = Scenario {
        parent,
        out: out.clone(),
        old,
        args: b.iter().map(String::as_str).collect(),
        env: Vec::new(),
        failing: None,
    };
    let (kills, olds) = kill_at_every_step(&sc, &expect_old);
    assert!(
        olds > 0 && olds < kills,
        "{olds} of {kills} kills left the old quantizer"
    );
    // Training into the same directory again and again works (it used to fail every second
    // time after a kill).
    for _ in 0..2 {
        let o = run(&sc.args, &[], None);
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn vocab_out_is_old_or_new_at_every_kill() {
    let t = tempfile::tempdir().unwrap();
    let mut sids = Vec::new();
    for seed in ["1", "2"] {
        let b = t.path().join(format!("build-{seed}"));
        let o = run(
            &[
                "build",
                s(&items()),
                "--out",
                s(&b),
                "--codebook-sizes",
                "8,4,4",
                "--seed",
                seed,
            ],
            &[],
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        sids.push(b.join("sids.parquet"));
    }
    let old = t.path().join("old-v");
    let o = run(
        &[
            "vocab",
            "--sids",
            s(&sids[0]),
            "--tokenizer",
            s(&tokenizer()),
            "--out",
            s(&old),
        ],
        &[],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(old.join("README"), "kept").unwrap();
    let expect_old = snapshot(&old);
    let parent = t.path().join("work");
    let out = parent.join("v");
    let tok = tokenizer();
    let sc = Scenario {
        parent,
        out: out.clone(),
        old,
        args: vec![
            "vocab",
            "--sids",
            s(&sids[1]),
            "--tokenizer",
            s(&tok),
            "--out",
            s(&out),
        ],
        env: Vec::new(),
        failing: None,
    };
    let (kills, olds) = kill_at_every_step(&sc, &expect_old);
    assert!(
        olds > 0 && olds < kills,
        "{olds} of {kills} kills left the old vocabulary"
    );
    assert_eq!(snapshot(&out)["README"], b"kept");
}

#[test]
fn a_second_writer_of_the_same_output_fails_at_once_naming_the_holder() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let it = items();
    let args = [
        "build",
        s(&it),
        "--out",
        s(&out),
        "--codebook-sizes",
        "8,4,4",
    ];
    let first = Command::new(env!("CARGO_BIN_EXE_sidtool"))
        .args(args)
        .arg("--quiet")
        .env("SIDTOOL_TEST_HOLD_LOCK_MS", "3000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = first.id();
    // Wait until the first build holds the lock (its pid is in the lock file).
    let lock = t.path().join(".out.sidtool.lock");
    let start = Instant::now();
    while std::fs::read_to_string(&lock)
        .map(|s| s.trim().to_string())
        .ok()
        != Some(pid.to_string())
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no lock taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let second = run(&args, &[], None);
    let took = start.elapsed();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("is being written by sidtool process {pid}"))
            && err.contains("wait for it or stop it"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the second writer waited {took:?}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    check_stats_outputs(&args, &first, None);
    assert!(out.join("manifest.json").exists() && out.join("sids.parquet").exists());
    assert_eq!(names(t.path()), ["out"], "lock file and staging removed");
}

/// A small catalogue and interactions for `collab`.
fn collab_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let items = dir.join("items.parquet");
    write_batch(&items, vec![("item_id", str_ids(20))]);
    let (mut u, mut it) = (Vec::new(), Vec::new());
    for user in 0..20 {
        for k in 0..5 {
            u.push(format!("u{user}"));
            it.push(format!("item-{:04}", (user + k * 3) % 20));
        }
    }
    let inter = dir.join("interactions.parquet");
    write_interactions(&inter, u, it, None);
    (items, inter)
}

#[test]
fn outputs_that_are_inputs_are_refused_and_the_input_is_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let emb = d.join("emb.parquet");
    std::fs::copy(items(), &emb).unwrap();
    std::os::unix::fs::symlink(&emb, d.join("link.parquet")).unwrap();
    std::fs::hard_link(&emb, d.join("hard.parquet")).unwrap();
    let q = d.join("q");
    ok(&[
        "train",
        s(&emb),
        "--out",
        s(&q),
        "--codebook-sizes",
        "8,4,4",
    ]);
    let emb_bytes = std::fs::read(&emb).unwrap();
    let refused = |args: &[&str], cwd: Option<&Path>| {
        let o = run(args, &[], cwd);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?} should fail: {err}");
        assert!(
            err.contains("is the input") || err.contains("contains the input"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&emb).unwrap(),
            emb_bytes,
            "{args:?} changed the input"
        );
    };
    // assign: the same path, another spelling, a symlink, a hard link, --existing.
    for out in [
        "emb.parquet",
        "./emb.parquet",
        "link.parquet",
        "hard.parquet",
    ] {
        refused(
            &["assign", "emb.parquet", "--quantizer", "q", "--out", out],
            Some(d),
        );
    }
    refused(
        &[
            "assign",
            s(&emb),
            "--quantizer",
            s(&q),
            "--out",
            "x.parquet",
            "--stats",
            "emb.parquet",
        ],
        Some(d),
    );
    assert!(
        !d.join("x.parquet").exists(),
        "nothing written when --stats is refused"
    );
    let sids = d.join("sids.parquet");
    ok(&["assign", s(&emb), "--quantizer", s(&q), "--out", s(&sids)]);
    let sids_bytes = std::fs::read(&sids).unwrap();
    let o = run(
        &[
            "assign",
            s(&emb),
            "--quantizer",
            s(&q),
            "--existing",
            s(&sids),
            "--out",
            s(&sids),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read(&sids).unwrap(), sids_bytes);
    // collab: --out is the catalogue or the interactions.
    let (cat, inter) = collab_inputs(d);
    for victim in [&cat, &inter] {
        let before = std::fs::read(victim).unwrap();
        let o = run(
            &[
                "collab",
                s(&inter),
                "--items",
                s(&cat),
                "--out",
                s(victim),
                "--collab-dim",
                "4",
            ],
            &[],
            None,
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("is the input"), "{}", stderr(&o));
        assert_eq!(std::fs::read(victim).unwrap(), before);
    }
    let o = run(
        &[
            "collab",
            "interactions.parquet",
            "--items",
            "items.parquet",
            "--out",
            "./items.parquet",
            "--collab-dim",
            "4",
        ],
        &[],
        Some(d),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Directory outputs that contain an input: train, build.
    refused(
        &[
            "train",
            "emb.parquet",
            "--out",
            ".",
            "--codebook-sizes",
            "8,4,4",
        ],
        Some(d),
    );
    refused(
        &[
            "build",
            "emb.parquet",
            "--out",
            ".",
            "--codebook-sizes",
            "8,4,4",
        ],
        Some(d),
    );
    assert!(q.join("config.json").exists());
}

#[test]
fn bare_relative_outputs_leave_no_temporary_files() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Leftovers of a killed run (a pid that no longer exists) are cleaned by the next one.
    let dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait_with_output().unwrap();
    std::fs::write(d.join(format!(".o.parquet.tmp-{dead_pid}")), "half").unwrap();
    let it = s(&items()).to_string();
    for _ in 0..2 {
        let o = run(
            &["train", &it, "--out", "q", "--codebook-sizes", "8,4,4"],
            &[],
            Some(d),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(
        &[
            "assign",
            &it,
            "--quantizer",
            "q",
            "--out",
            "o.parquet",
            "--stats",
            "s.json",
        ],
        &[],
        Some(d),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(d), ["o.parquet", "q", "s.json"]);
    assert_eq!(names(&d.join("q")), ["config.json", "model.safetensors"]);
}

/// `embed --out FILE` over an existing embeddings file: killed after any of its commit steps
/// (each finished part, then the output itself), the file is the complete old one or the
/// complete new one, and a plain rerun finishes the new one.
#[test]
fn embed_out_is_old_or_new_at_every_kill() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("emb.parquet");
    let text = testdata("items_text.parquet");
    let model = testdata("tiny-qwen3");
    let embed = |template: &str, env: &[(&str, &str)]| {
        run(
            &[
                "embed",
                s(&text),
                "--model",
                s(&model),
                "--template",
                template,
                "--window-rows",
                "100",
                "--out",
                s(&out),
            ],
            env,
            None,
        )
    };
    assert!(embed("{title}", &[]).status.success());
    let old = std::fs::read(&out).unwrap();
    let new_template = "{title}. {description}";
    let (mut kills, mut olds) = (0, 0);
    let mut new: Option<Vec<u8>> = None;
    for n in 1..50 {
        std::fs::write(&out, &old).unwrap();
        let steps = n.to_string();
        let o = embed(
            new_template,
            &[("SIDTOOL_FAULT_AFTER_STEPS", steps.as_str())],
        );
        if o.status.success() {
            assert_eq!(&std::fs::read(&out).unwrap(), new.as_ref().unwrap());
            break;
        }
        assert!(killed(&o), "N={n}: not killed by the hook: {}", stderr(&o));
        kills += 1;
        let after = std::fs::read(&out).unwrap();
        let o = embed(new_template, &[]);
        assert!(o.status.success(), "rerun after N={n}: {}", stderr(&o));
        let fresh = std::fs::read(&out).unwrap();
        let new = new.get_or_insert(fresh.clone());
        assert_eq!(&fresh, new, "rerun after N={n} gives the new output");
        if after == old {
            olds += 1;
        } else {
            assert_eq!(&after, new, "N={n}: neither the old nor the new file");
        }
    }
    // 400 items in windows of 100: four parts, then the output.
    assert!(
        kills >= 4 && olds >= 4,
        "{kills} kills, {olds} left the old file"
    );
}
