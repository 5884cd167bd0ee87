//! `sidtool embed` and `build` from item text, end to end through the binary.

mod common;

use common::*;
use sidtool::config::EmbedConfig;
use sidtool::embed::Encoder;
use std::path::{Path, PathBuf};

fn tiny() -> String {
    testdata("tiny-qwen3").to_string_lossy().into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copy the tiny model's files into `dir`.
fn copy_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(testdata("tiny-qwen3").join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn embed_writes_unit_vectors_in_input_order_matching_the_library() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("emb.parquet");
    let items = testdata("items_text.parquet");
    ok(&["embed", s(&items), "--out", s(&out), "--model", &tiny()]);
    let (ids, vecs) = read_embeddings(&out);
    assert_eq!(ids.len(), 400);
    assert_eq!(ids[0], "\"item-0001\"");
    assert_eq!(ids[399], "\"item-0400\"");
    for v in &vecs {
        assert_eq!(v.len(), 64);
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    }
    // Row 0 is the template over item 1's columns, embedded alone through the library.
    let enc = Encoder::load(&EmbedConfig {
        model: tiny(),
        ..EmbedConfig::default()
    })
    .unwrap();
    let text = "Title: Classic Watering Can (Small); Category: Garden; Description: A classic \
                watering can for watering in small and large gardens.";
    let alone = enc.embed_texts(&[text.to_string()]).unwrap();
    assert!(max_abs_diff(&alone, &vecs[..1]) < 1e-5);
    // How the vectors were made is in the footer.
    let shown = sidtool(&["inspect", s(&out), "--rows", "0"]);
    assert!(shown.status.success());
    let info = String::from_utf8(shown.stdout).unwrap();
    assert!(
        info.contains("sidtool:embed") && info.contains("\"pooling\":\"last\""),
        "{info}"
    );
}

#[test]
fn batch_size_and_window_size_do_not_change_vectors() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items_text.parquet");
    let a = t.path().join("a.parquet");
    let b = t.path().join("b.parquet");
    ok(&[
        "embed",
        s(&items),
        "--out",
        s(&a),
        "--model",
        &tiny(),
        "--batch-tokens",
        "1",
    ]);
    ok(&[
        "embed",
        s(&items),
        "--out",
        s(&b),
        "--model",
        &tiny(),
        "--batch-tokens",
        "100000",
        "--window-rows",
        "37",
    ]);
    let (ia, va) = read_embeddings(&a);
    let (ib, vb) = read_embeddings(&b);
    assert_eq!(ia, ib);
    let d = max_abs_diff(&va, &vb);
    assert!(d < 1e-5, "batch size changed results by {d}");
}

#[test]
fn pooling_dim_instruction_and_template_options() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items_text.parquet");
    let base = t.path().join("base.parquet");
    ok(&["embed", s(&items), "--out", s(&base), "--model", &tiny()]);
    let (_, vb) = read_embeddings(&base);
    let model = tiny();
    for (i, extra) in [
        vec!["--pooling", "mean"],
        vec!["--instruction", "Find similar products"],
        vec!["--template", "{title} [{category}]"],
        vec!["--max-length", "8"],
    ]
    .into_iter()
    .enumerate()
    {
        let out = t.path().join(format!("o{i}.parquet"));
        let mut args = vec!["embed", s(&items), "--out", s(&out), "--model", &model];
        args.extend(extra.iter().copied());
        ok(&args);
        let (_, v) = read_embeddings(&out);
        assert!(max_abs_diff(&v, &vb) > 1e-3, "{extra:?} changed nothing");
    }
    let out = t.path().join("d.parquet");
    ok(&[
        "embed",
        s(&items),
        "--out",
        s(&out),
        "--model",
        &tiny(),
        "--dim",
        "16",
    ]);
    let (_, v) = read_embeddings(&out);
    assert_eq!(v[0].len(), 16);
    // Truncation is reported.
    let out = t.path().join("t.parquet");
    let (report, _) = ok_out(&[
        "embed",
        s(&items),
        "--out",
        s(&out),
        "--model",
        &tiny(),
        "--max-length",
        "8",
    ]);
    assert!(report.contains("400 truncated to 8 tokens"), "{report}");
}

#[test]
fn bad_embed_inputs_name_the_problem_and_leave_nothing() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items_text.parquet");
    let out = t.path().join("emb.parquet");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--template".into(), "{title} {colour}".into()],
            "column `colour`",
        ),
        (vec!["--template".into(), "{title".into()], "unclosed"),
        (
            vec![
                "--model".into(),
                t.path().join("nope").to_string_lossy().into(),
            ],
            "no such directory",
        ),
        (
            vec!["--model".into(), "not-a/hub-id/at-all".into()],
            "not a hub id",
        ),
        (
            vec!["--device".into(), "cuda".into()],
            "built without CUDA support",
        ),
        (
            vec!["--device".into(), "metal".into()],
            "built without Metal support",
        ),
        (vec!["--pooling".into(), "cls".into()], "causal"),
        (
            vec!["--dim".into(), "65".into()],
            "exceeds the model's hidden size 64",
        ),
        (
            vec!["--max-length".into(), "1".into()],
            "max_length must be",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec![
            "embed".to_string(),
            s(&items).into(),
            "--out".into(),
            s(&out).into(),
        ];
        if !extra.contains(&"--model".to_string()) {
            args.extend(["--model".into(), tiny()]);
        }
        args.extend(extra.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(&refs);
        assert!(
            err.contains(want),
            "{extra:?}: expected {want:?} in:\n{err}"
        );
        assert!(
            entries(t.path()).is_empty(),
            "{extra:?} left {:?}",
            entries(t.path())
        );
    }
    // An id column that is null in one row, and duplicate ids.
    let bad = t.path().join("bad.parquet");
    let ids: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::StringArray::from(vec![
        Some("a"),
        None,
        Some("c"),
    ]));
    let titles: arrow_array::ArrayRef =
        std::sync::Arc::new(arrow_array::StringArray::from(vec!["x", "y", "z"]));
    write_batch(&bad, vec![("item_id", ids), ("title", titles.clone())]);
    let err = fails(&["embed", s(&bad), "--out", s(&out), "--model", &tiny()]);
    assert!(
        err.contains("column `item_id`, row 1") && err.contains("null"),
        "{err}"
    );
    let dup: arrow_array::ArrayRef =
        std::sync::Arc::new(arrow_array::StringArray::from(vec!["a", "b", "a"]));
    write_batch(&bad, vec![("item_id", dup), ("title", titles)]);
    let err = fails(&["embed", s(&bad), "--out", s(&out), "--model", &tiny()]);
    assert!(err.contains("row 2") && err.contains("duplicate"), "{err}");
    // No text columns at all.
    let err = fails(&[
        "embed",
        s(&testdata("items.parquet")),
        "--out",
        s(&out),
        "--model",
        &tiny(),
        "--template",
        "{embedding}",
    ]);
    assert!(
        err.contains("column `embedding`") && err.contains("cannot be used as item text"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn broken_model_directories_are_explained() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items_text.parquet");
    let out = t.path().join("emb.parquet");
    let run = |dir: &Path| fails(&["embed", s(&items), "--out", s(&out), "--model", s(dir)]);

    let m = t.path().join("missing");
    copy_model(&m);
    std::fs::remove_file(m.join("tokenizer.json")).unwrap();
    assert!(run(&m).contains("no `tokenizer.json`"));

    let m = t.path().join("arch");
    copy_model(&m);
    let cfg = std::fs::read_to_string(m.join("config.json")).unwrap();
    std::fs::write(m.join("config.json"), cfg.replace("\"qwen3\"", "\"llama\"")).unwrap();
    let err = run(&m);
    assert!(
        err.contains("unsupported architecture (model_type `llama`)"),
        "{err}"
    );

    let m = t.path().join("shape");
    copy_model(&m);
    std::fs::write(
        m.join("config.json"),
        cfg.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .unwrap();
    let err = run(&m);
    assert!(
        err.contains(
            "`layers.0.mlp.gate_proj.weight` has shape [128, 64] but config.json implies [96, 64]"
        ),
        "{err}"
    );
    assert!(!out.exists());
}

/// Lay the tiny model out as the HF cache does: blobs, a snapshot of links, refs/main.
fn hf_cache(root: &Path, repo: &str, commit: &str) -> PathBuf {
    let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
    let snap = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        let blob = repo_dir.join("blobs").join(format!("blob-{f}"));
        std::fs::copy(testdata("tiny-qwen3").join(f), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob-{f}"), snap.join(f)).unwrap();
    }
    std::fs::write(repo_dir.join("refs").join("main"), commit).unwrap();
    snap
}

#[test]
fn hub_ids_resolve_through_a_local_hf_cache_without_network() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    hf_cache(&cache, "test-org/tiny-qwen3", commit);
    let items = testdata("items_text.parquet");
    let direct = t.path().join("direct.parquet");
    ok(&["embed", s(&items), "--out", s(&direct), "--model", &tiny()]);
    let (_, want) = read_embeddings(&direct);
    let dead = ("HF_ENDPOINT", "http://127.0.0.1:9");
    type Run<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let runs: Vec<Run> = vec![
        // Offline, through HF_HUB_CACHE and refs/main.
        (
            vec![],
            vec![("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1"), dead],
        ),
        // A commit revision goes straight to its snapshot.
        (
            vec!["--revision", commit],
            vec![("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1"), dead],
        ),
        // Not offline, but cached: no download is attempted (the endpoint is dead).
        (vec![], vec![("HF_HUB_CACHE", s(&cache)), dead]),
    ];
    for (i, (extra, env)) in runs.into_iter().enumerate() {
        let out = t.path().join(format!("hub{i}.parquet"));
        let mut args = vec![
            "embed",
            s(&items),
            "--out",
            s(&out),
            "--model",
            "test-org/tiny-qwen3",
        ];
        args.extend(extra);
        let o = sidtool_env(&args, &env);
        assert!(
            o.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (_, got) = read_embeddings(&out);
        assert_eq!(got, want, "run {i}");
        // The footer names the commit the revision resolved to, not the moving `main`.
        let meta: serde_json::Value =
            serde_json::from_str(&footer_metadata(&out)["sidtool:embed"]).unwrap();
        assert_eq!(
            meta["encoder"]["model"],
            format!("test-org/tiny-qwen3@{commit}"),
            "run {i}"
        );
    }
    // So does a build's manifest, beside the revision it was asked for.
    let built = t.path().join("built");
    let o = sidtool_env(
        &[
            "build",
            s(&items),
            "--out",
            s(&built),
            "--model",
            "test-org/tiny-qwen3",
            "--codebook-sizes",
            "16,8",
            "-q",
        ],
        &[("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1"), dead],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read_json(&built.join("manifest.json"));
    assert_eq!(
        m["embed"]["encoder"]["model"],
        format!("test-org/tiny-qwen3@{commit}")
    );
    assert_eq!(m["config"]["embed"]["revision"], "main");
    // HF_HOME/hub is the cache when HF_HUB_CACHE is unset.
    let home = t.path().join("home");
    hf_cache(&home.join("hub"), "test-org/tiny-qwen3", commit);
    let out = t.path().join("home.parquet");
    let o = sidtool_env(
        &[
            "embed",
            s(&items),
            "--out",
            s(&out),
            "--model",
            "test-org/tiny-qwen3",
        ],
        &[("HF_HOME", s(&home)), ("HF_HUB_OFFLINE", "1"), dead],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Offline and not cached: a clear message, nothing written.
    let out = t.path().join("miss.parquet");
    let o = sidtool_env(
        &[
            "embed",
            s(&items),
            "--out",
            s(&out),
            "--model",
            "test-org/other-model",
        ],
        &[("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1"), dead],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("test-org/other-model")
            && err.contains("not in the Hugging Face cache")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains("(`hf download test-org/other-model --revision main`)")
            && !err.contains("huggingface-cli"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn sharded_and_prefixed_weights_load_the_same_model() {
    use candle_core::{Device, Tensor};
    use std::collections::HashMap;
    let t = tempfile::tempdir().unwrap();
    let tensors = candle_core::safetensors::load(
        testdata("tiny-qwen3").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let m = t.path().join("sharded");
    copy_model(&m);
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    // Two shards, every name with the `model.` prefix of *ForCausalLM checkpoints.
    let mut shards: [HashMap<String, Tensor>; 2] = [HashMap::new(), HashMap::new()];
    let mut map = serde_json::Map::new();
    for (i, (name, tensor)) in tensors.into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        map.insert(format!("model.{name}"), file.clone().into());
        shards[i % 2].insert(format!("model.{name}"), tensor);
    }
    for (i, shard) in shards.iter().enumerate() {
        candle_core::safetensors::save(
            shard,
            m.join(format!("model-0000{}-of-00002.safetensors", i + 1)),
        )
        .unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(m.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let items = testdata("items_text.parquet");
    let a = t.path().join("a.parquet");
    let b = t.path().join("b.parquet");
    ok(&["embed", s(&items), "--out", s(&a), "--model", &tiny()]);
    ok(&["embed", s(&items), "--out", s(&b), "--model", s(&m)]);
    assert_eq!(read_embeddings(&a), read_embeddings(&b));
}

#[test]
fn a_killed_run_resumes_where_it_stopped() {
    let t = tempfile::tempdir().unwrap();
    let items = testdata("items_text.parquet");
    let full = t.path().join("full.parquet");
    ok(&[
        "embed",
        s(&items),
        "--out",
        s(&full),
        "--model",
        &tiny(),
        "--window-rows",
        "50",
    ]);
    let out = t.path().join("emb.parquet");
    let partial = t.path().join(".emb.parquet.partial");
    let args = [
        "embed",
        s(&items),
        "--out",
        s(&out),
        "--model",
        &tiny(),
        "--window-rows",
        "50",
    ];
    // Kill a slowed-down run once it has finished a few parts.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sidtool"))
        .args(args)
        .env("SIDTOOL_TEST_PART_DELAY_MS", "300")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A part is finished once its checksum record is written (after the part itself): a kill
    // between the two leaves a part that a resume embeds again.
    let parts = |d: &Path| {
        entries(d)
            .iter()
            .filter(|n| n.starts_with("check-"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while parts(&partial) < 3 {
        assert!(std::time::Instant::now() < deadline, "no parts appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = parts(&partial);
    assert!((3..8).contains(&done), "{done} parts");
    assert!(!out.exists());
    // Resume: the finished parts are reused, the result equals an uninterrupted run.
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let (report, _) = ok_out(&resumed);
    assert!(
        report.contains(&format!("({} from an earlier run)", done * 50)),
        "{report}"
    );
    assert_eq!(read_embeddings(&out), read_embeddings(&full));
    assert!(!partial.exists());
    // A partial run with different settings is refused on --resume.
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("run.json"), "{}").unwrap();
    let err = fails(&resumed);
    assert!(
        err.contains("different input or different settings"),
        "{err}"
    );
    // ... and discarded without it.
    ok(&args);
    assert!(!partial.exists());
}

#[test]
fn build_embeds_text_only_catalogues() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    ok(&[
        "build",
        s(&testdata("items_text.parquet")),
        "--out",
        s(&out),
        "--model",
        &tiny(),
        "--codebook-sizes",
        "16,8",
    ]);
    for f in [
        "embeddings.parquet",
        "sids.parquet",
        "stats.json",
        "manifest.json",
        "quantizer",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["embed"]["items"], 400);
    assert_eq!(m["embed"]["encoder"]["architecture"], "qwen3");
    assert!(
        m["timings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["stage"] == "embed")
    );
    let (ids, _) = read_embeddings(&out.join("embeddings.parquet"));
    assert_eq!(ids.len(), 400);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["after"]["n_items"], 400);
    assert_eq!(stats["after"]["collision_rate"], 0.0);
}

#[test]
fn real_qwen3_tokenizer_appends_the_end_token() {
    let Some(tok_path) = asset("qwen-tokenizer/tokenizer.json") else {
        return;
    };
    // With the post-processor Qwen3-Embedding's tokenizer.json carries.
    let mut tok = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    let pp = tokenizers::processors::template::TemplateProcessing::builder()
        .try_single("$A <|endoftext|>")
        .unwrap()
        .special_tokens(vec![("<|endoftext|>", 151643)])
        .build()
        .unwrap();
    tok.with_post_processor(Some(pp));
    let ids = tok.encode("Hello world", true).unwrap().get_ids().to_vec();
    assert_eq!(ids, vec![9707, 1879, 151643]);
    assert_eq!(tok.get_vocab_size(true), 151669);
    // sidtool's own tokenization appends it when the file's post-processor does not.
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    copy_model(&m);
    std::fs::copy(&tok_path, m.join("tokenizer.json")).unwrap();
    let enc = Encoder::load(&EmbedConfig {
        model: s(&m).into(),
        max_length: 3,
        ..EmbedConfig::default()
    })
    .unwrap();
    let ids = enc
        .tokenize(&["Hello world".into(), "Hello world again".into()])
        .unwrap();
    assert_eq!(ids[0], vec![9707, 1879, 151643]);
    assert_eq!(
        ids[1],
        vec![9707, 1879, 151643],
        "truncation keeps max_length - 1 text tokens"
    );
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = asset("minilm") else {
        return;
    };
    let r = read_json(&testdata("minilm_reference.json"));
    let texts: Vec<String> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let enc = Encoder::load(&EmbedConfig {
        model: s(&dir).into(),
        ..EmbedConfig::default()
    })
    .unwrap();
    assert_eq!(
        enc.info.pooling,
        sidtool::embed::Pooling::Mean,
        "from 1_Pooling/config.json"
    );
    let ids = enc.tokenize(&texts).unwrap();
    for (i, want) in r["input_ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want, "text {i}");
    }
    let got = enc.embed_texts(&texts).unwrap();
    let want: Vec<Vec<f32>> = r["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let d = max_abs_diff(&got, &want);
    assert!(d < 1e-4, "max |Δ| vs sentence-transformers = {d}");
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    // Two sentences about eating score higher than eating vs headphones.
    assert!(cos(&got[0], &got[1]) > cos(&got[0], &got[4]) + 0.3);
    // Through the CLI too.
    let t = tempfile::tempdir().unwrap();
    let items = t.path().join("items.parquet");
    let ids: arrow_array::ArrayRef = std::sync::Arc::new(
        arrow_array::Int64Array::from_iter_values(0..texts.len() as i64),
    );
    let title: arrow_array::ArrayRef =
        std::sync::Arc::new(arrow_array::StringArray::from(texts.clone()));
    write_batch(&items, vec![("item_id", ids), ("title", title)]);
    let out = t.path().join("emb.parquet");
    ok(&[
        "embed",
        s(&items),
        "--out",
        s(&out),
        "--model",
        s(&dir),
        "--template",
        "{title}",
    ]);
    let (_, cli) = read_embeddings(&out);
    assert!(max_abs_diff(&cli, &want) < 1e-4);
}

#[test]
fn item_text_from_awkward_columns() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use std::sync::Arc;
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("items.parquet");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let titles: ArrayRef = Arc::new(StringArray::from(vec!["Heat", "Up", "Big"]));
    let years: ArrayRef = Arc::new(Float64Array::from(vec![Some(1995.0), Some(f64::NAN), None]));
    let mut genres = ListBuilder::new(StringBuilder::new());
    for row in [vec!["Crime", " "], vec![], vec!["", "Drama", "Comedy"]] {
        for g in row {
            genres.values().append_value(g);
        }
        genres.append(true);
    }
    let genres: ArrayRef = Arc::new(genres.finish());
    write_batch(
        &path,
        vec![
            ("item_id", ids),
            ("movie.title", titles),
            ("year", years),
            ("genres", genres),
        ],
    );
    let template =
        sidtool::embed::template::Template::parse("{movie.title} ({year}). Genres: {genres}")
            .unwrap();
    let reader =
        sidtool::embed::items::ItemTextReader::open(&path, "item_id", &template, true, 1024)
            .unwrap();
    let texts: Vec<String> = reader.flat_map(|b| b.unwrap().texts).collect();
    assert_eq!(
        texts,
        vec![
            "Heat (1995). Genres: Crime",
            "Up",
            "Big. Genres: Drama, Comedy"
        ]
    );
    // Through the CLI too (a dotted column name used to be split at the dot).
    let out = t.path().join("emb.parquet");
    ok(&[
        "embed",
        s(&path),
        "--out",
        s(&out),
        "--model",
        &tiny(),
        "--template",
        "{movie.title} ({year})",
    ]);
    assert_eq!(read_embeddings(&out).0.len(), 3);
}

#[test]
fn outputs_that_cannot_work_are_refused_before_embedding() {
    let t = tempfile::tempdir().unwrap();
    let items = t.path().join("items.parquet");
    std::fs::copy(testdata("items_text.parquet"), &items).unwrap();
    let err = fails(&["embed", s(&items), "--out", s(t.path()), "--model", &tiny()]);
    assert!(err.contains("is a directory"), "{err}");
    let err = fails(&["embed", s(&items), "--out", s(&items), "--model", &tiny()]);
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(entries(t.path()), vec!["items.parquet".to_string()]);
    // A typo in an explicit --embedding-column is an error, not a silent text-embedding run.
    let out = t.path().join("out");
    let err = fails(&[
        "build",
        s(&testdata("items.parquet")),
        "--out",
        s(&out),
        "--embedding-column",
        "embeding",
    ]);
    assert!(
        err.contains("column `embeding`") && err.contains("no such column"),
        "{err}"
    );
}
