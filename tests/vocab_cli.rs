//! `sidtool vocab` and the vocabulary artefacts of `build`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Build from text with the tiny model, and its directory standing in for the LLM (1000
/// tokens, 1024 embedding rows).
fn built(t: &Path) -> std::path::PathBuf {
    let llm = s(&testdata("tiny-qwen3"));
    build_text(
        t,
        &["--llm", &llm, "--markers", "<|sid_begin|>,<|sid_end|>"],
    )
}

/// `build` of the shipped text catalogue with the tiny embedding model into `t/out`.
fn build_text(t: &Path, extra: &[&str]) -> std::path::PathBuf {
    let out = t.join("out");
    let (items, out_s, model) = (
        s(&testdata("items_text.parquet")),
        s(&out),
        s(&testdata("tiny-qwen3")),
    );
    let mut args = vec![
        "build",
        &items,
        "--out",
        &out_s,
        "--model",
        &model,
        "--codebook-sizes",
        "16,8,8",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

/// Every final ID → its token ids, from sids.parquet and sid_tokens.json.
fn expected_ids(out: &Path) -> HashMap<Vec<u32>, String> {
    let table = sidtool::ids::sid_table::read(&out.join("sids.parquet")).unwrap();
    let tokens = read_json(&out.join("sid_tokens.json"));
    let mut id_of = HashMap::new();
    for t in tokens["tokens"].as_array().unwrap() {
        // Levels are numbered from 1 in sid_tokens.json, as in stats.json.
        id_of.insert(
            (
                t["level"].as_u64().unwrap() as usize - 1,
                t["code"].as_u64().unwrap() as u16,
            ),
            t["id"].as_u64().unwrap() as u32,
        );
    }
    table
        .codes
        .chunks(table.width)
        .enumerate()
        .map(|(i, r)| {
            let ids = r.iter().enumerate().map(|(l, &c)| id_of[&(l, c)]).collect();
            (ids, raw_id(&table.ids, i))
        })
        .collect()
}

#[test]
fn build_extends_the_model_tokenizer_and_every_sid_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["vocab"]["base_vocab_size"], 1000);
    let r = read_json(&out.join("sid_tokens.json"));
    // --tokens all: 16 + 8 + 8 codes plus the suffix level's range, then the two markers.
    let sizes: Vec<u64> = r["level_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(&sizes[..3], &[16, 8, 8]);
    let total: u64 = sizes.iter().sum();
    assert_eq!(r["added"].as_u64().unwrap(), total + 2);
    assert_eq!(r["padded_vocab_size"].as_u64().unwrap() % 64, 0);
    // 1024 rows, more new tokens than the 24 reserved rows: grow, never shrink; ids on the
    // reserved rows are named for initialising.
    let vocab = r["vocab_size"].as_u64().unwrap();
    assert!(vocab > 1024);
    assert_eq!(r["embedding_rows"], 1024);
    assert_eq!(r["resize_embeddings_to"], vocab.div_ceil(64) * 64);
    assert_eq!(r["reused_rows"]["first"], 1000);
    assert_eq!(r["reused_rows"]["last"], 1023);
    assert_eq!(r["new_rows"]["first"], 1024);
    assert_eq!(r["new_rows"]["last"], vocab - 1);
    assert_eq!(m["vocab"]["llm"], s(&testdata("tiny-qwen3")));
    // Level-major, code-minor ids from the base vocabulary on.
    let mut offset = 0;
    for (l, &k) in sizes.iter().enumerate() {
        for t in r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["level"] == l + 1)
        {
            assert_eq!(
                t["id"].as_u64().unwrap(),
                1000 + offset + t["code"].as_u64().unwrap()
            );
        }
        offset += k;
    }
    // Independently of sidtool: the written tokenizer encodes each SID to one token per level,
    // and old tokens keep their ids.
    let base =
        tokenizers::Tokenizer::from_file(testdata("tiny-qwen3").join("tokenizer.json")).unwrap();
    let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let hello =
        |t: &tokenizers::Tokenizer| t.encode("Hello world", false).unwrap().get_ids().to_vec();
    assert_eq!(hello(&tok), hello(&base));
    // The embedding model's post-processor (`$A <|endoftext|>`) is not carried over.
    let with_specials =
        |t: &tokenizers::Tokenizer| t.encode("Hello world", true).unwrap().get_ids().to_vec();
    assert_eq!(with_specials(&base).last(), Some(&997));
    assert_eq!(with_specials(&tok), hello(&base));
    assert_eq!(
        r["dropped_post_processor"],
        serde_json::json!(["<|endoftext|>"])
    );
    let table = sidtool::ids::sid_table::read(&out.join("sids.parquet")).unwrap();
    let fmt = sidtool::ids::tokens::TokenFormat::new("<{level}_{code}>").unwrap();
    let expected = expected_ids(&out);
    let mut seen = BTreeSet::new();
    for row in table.codes.chunks(table.width) {
        let ids = tok
            .encode(fmt.sid(row).as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert!(
            expected.contains_key(&ids),
            "{ids:?} is not one token per level of a known SID"
        );
        seen.insert(ids);
    }
    assert_eq!(seen.len(), 400);
}

#[test]
fn walking_the_trie_enumerates_exactly_the_final_ids() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    let trie = read_json(&out.join("trie.json"));
    let next = trie["next"].as_object().unwrap();
    let items = trie["items"].as_object().unwrap();
    let mut found = BTreeSet::new();
    let mut stack = vec![String::new()];
    while let Some(key) = stack.pop() {
        if let Some(item) = items.get(&key) {
            found.insert((key.clone(), item.as_str().unwrap().to_string()));
            continue;
        }
        for id in next[&key].as_array().unwrap() {
            let id = id.as_u64().unwrap();
            stack.push(if key.is_empty() {
                id.to_string()
            } else {
                format!("{key},{id}")
            });
        }
    }
    let want: BTreeSet<(String, String)> = expected_ids(&out)
        .into_iter()
        .map(|(ids, item)| {
            (
                ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                item,
            )
        })
        .collect();
    assert_eq!(found, want);
    assert_eq!(
        trie["begin_token_id"],
        Value::from(trie["end_token_id"].as_u64().unwrap() - 1)
    );
    // The Parquet form has the same leaves.
    let (ids, _) = sidtool::io::embeddings::read_all(
        &out.join("embeddings.parquet"),
        "item_id",
        "embedding",
        1024,
    )
    .unwrap();
    assert_eq!(ids.len(), 400);
    let shown = sidtool(&["inspect", &s(&out.join("trie.parquet")), "--rows", "1"]);
    assert!(shown.status.success());
    let info = String::from_utf8(shown.stdout).unwrap();
    assert!(info.contains("allowed_next_token_ids"), "{info}");
}

#[test]
fn clashing_or_invalid_tokenizers_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    let sids = out.join("sids.parquet");
    // Extending an already extended tokenizer: `<a_0>` exists with another id.
    let err = fails(&[
        "vocab",
        "--sids",
        &s(&sids),
        "--tokenizer",
        &s(&out.join("tokenizer.json")),
        "--out",
        &s(&t.path().join("v2")),
    ]);
    assert!(err.contains("already has a token `<a_0>`"), "{err}");
    let err = fails(&[
        "vocab",
        "--sids",
        &s(&sids),
        "--tokenizer",
        &s(&out.join("stats.json")),
        "--out",
        &s(&t.path().join("v3")),
    ]);
    assert!(err.contains("not a Hugging Face tokenizer.json"), "{err}");
    assert!(!t.path().join("v2").exists() && !t.path().join("v3").exists());
    // --tokens used adds only codes some item holds.
    let v = t.path().join("used");
    ok(&[
        "vocab",
        "--sids",
        &s(&sids),
        "--tokenizer",
        &s(&testdata("tiny-qwen3").join("tokenizer.json")),
        "--out",
        &s(&v),
        "--tokens",
        "used",
    ]);
    let r = read_json(&v.join("sid_tokens.json"));
    let table = sidtool::ids::sid_table::read(&sids).unwrap();
    let used: BTreeSet<(usize, u16)> = table
        .codes
        .chunks(table.width)
        .flat_map(|r| {
            r.iter()
                .enumerate()
                .map(|(l, &c)| (l, c))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(r["added"].as_u64().unwrap() as usize, used.len());
}

#[test]
fn real_qwen3_tokenizer_round_trips() {
    let Some(tok) = asset("qwen-tokenizer/tokenizer.json") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    ok(&[
        "build",
        &s(&testdata("items.parquet")),
        "--out",
        &s(&out),
        "--codebook-sizes",
        "32,16,16",
        "--tokenizer",
        &s(&tok),
    ]);
    let r = read_json(&out.join("sid_tokens.json"));
    assert_eq!(r["base_vocab_size"], 151669);
    let ext = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let table = sidtool::ids::sid_table::read(&out.join("sids.parquet")).unwrap();
    let fmt = sidtool::ids::tokens::TokenFormat::new("<{level}_{code}>").unwrap();
    for row in table.codes.chunks(table.width) {
        let ids = ext
            .encode(fmt.sid(row).as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids.len(), table.width);
        assert!(ids.iter().all(|&i| i >= 151669));
    }
}

#[test]
fn the_output_is_a_tokenizer_folder_with_the_llms_settings() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    let base = read_json(&testdata("tiny-qwen3").join("tokenizer_config.json"));
    let cfg = read_json(&out.join("tokenizer_config.json"));
    for key in [
        "tokenizer_class",
        "eos_token",
        "pad_token",
        "bos_token",
        "model_max_length",
        "padding_side",
    ] {
        assert_eq!(cfg[key], base[key], "{key}");
    }
    let decoder = cfg["added_tokens_decoder"].as_object().unwrap();
    // The LLM's own special token, unchanged.
    assert_eq!(decoder["997"]["content"], "<|endoftext|>");
    assert_eq!(decoder["997"]["special"], true);
    // Every SID token and marker: atomic, not normalized, not special (no --special).
    let r = read_json(&out.join("sid_tokens.json"));
    let listed = r["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["markers"].as_array().unwrap());
    let mut n = 0;
    for tok in listed {
        let e = &decoder[&tok["id"].to_string()];
        assert_eq!(e["content"], tok["token"]);
        assert_eq!(e["normalized"], false);
        assert_eq!(e["special"], false);
        n += 1;
    }
    assert_eq!(n, r["added"].as_u64().unwrap());
    let map = read_json(&out.join("special_tokens_map.json"));
    assert_eq!(map["eos_token"], "<|im_end|>");
    assert_eq!(map["pad_token"], "<|endoftext|>");
    assert!(
        map.get("bos_token").is_none(),
        "null tokens are left out: {map}"
    );
}

#[test]
fn build_without_an_llm_writes_no_vocabulary_and_vocab_asks_for_one() {
    let t = tempfile::tempdir().unwrap();
    let out = build_text(t.path(), &[]);
    // The embedding model is not the LLM: no tokenizer is extended by default.
    assert!(out.join("sids.parquet").is_file());
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "sid_tokens.json",
        "trie.json",
    ] {
        assert!(!out.join(f).exists(), "{f}");
    }
    assert!(read_json(&out.join("manifest.json")).get("vocab").is_none());
    let err = fails(&[
        "vocab",
        "--sids",
        &s(&out.join("sids.parquet")),
        "--out",
        &s(&t.path().join("v")),
    ]);
    assert!(err.contains("--llm is required"), "{err}");
    // The help says so (the flag itself stays optional: a config file can name the LLM).
    let help = sidtool(&["vocab", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Requires --llm"), "{help}");
}

#[test]
fn init_embeddings_are_the_mean_of_the_llms_token_rows() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    let v = t.path().join("v");
    ok(&[
        "vocab",
        "--sids",
        &s(&out.join("sids.parquet")),
        "--llm",
        &s(&testdata("tiny-qwen3")),
        "--out",
        &s(&v),
        "--init-embeddings",
    ]);
    let dev = candle_core::Device::Cpu;
    let init = candle_core::safetensors::load(v.join("sid_embeddings.safetensors"), &dev).unwrap();
    let ids: Vec<i64> = init["token_ids"].to_vec1().unwrap();
    let r = read_json(&v.join("sid_tokens.json"));
    let (base, vocab) = (
        r["base_vocab_size"].as_i64().unwrap(),
        r["vocab_size"].as_i64().unwrap(),
    );
    assert_eq!(ids, (base..vocab).collect::<Vec<_>>());
    let rows: Vec<Vec<f32>> = init["embeddings"].to_vec2().unwrap();
    // Independently: the mean of the model's first `base` embedding rows.
    let w = candle_core::safetensors::load(testdata("tiny-qwen3").join("model.safetensors"), &dev)
        .unwrap();
    let table: Vec<Vec<f32>> = w["embed_tokens.weight"].to_vec2().unwrap();
    let dim = table[0].len();
    for j in 0..dim {
        let mean = table[..base as usize]
            .iter()
            .map(|r| r[j] as f64)
            .sum::<f64>()
            / base as f64;
        for row in &rows {
            assert!(
                (row[j] as f64 - mean).abs() < 1e-3,
                "dim {j}: {} vs {mean}",
                row[j]
            );
        }
    }
    assert_eq!(rows.len(), ids.len());
    assert_eq!(rows[0].len(), dim);
}

fn raw_id(ids: &sidtool::item_id::ItemIds, row: usize) -> String {
    match ids {
        sidtool::item_id::ItemIds::Str(v) => v[row].clone(),
        sidtool::item_id::ItemIds::Int(v) => v[row].to_string(),
    }
}

/// `sorted(set(tokens))` of an `.index.json`, as MiniOneRec and LC-Rec add them.
fn python_sorted(index: &Value) -> Vec<String> {
    let set: BTreeSet<String> = index
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
        })
        .collect();
    set.into_iter().collect()
}

#[test]
fn exports_load_as_the_other_stacks_read_them_and_their_token_order_is_reproduced() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    let sids = s(&out.join("sids.parquet"));
    let table = sidtool::ids::sid_table::read(&out.join("sids.parquet")).unwrap();
    let fmt = sidtool::ids::tokens::TokenFormat::new("<{level}_{code}>").unwrap();
    // index-json: item → its tokens, to a file and to stdout alike.
    let index = t.path().join("items.index.json");
    ok(&[
        "export",
        &sids,
        "--format",
        "minionerec",
        "--out",
        &s(&index),
    ]);
    let shown = sidtool(&["export", &sids, "--format", "index-json", "--out", "-"]);
    assert!(shown.status.success());
    assert_eq!(shown.stdout, std::fs::read(&index).unwrap());
    let idx = read_json(&index);
    assert_eq!(idx.as_object().unwrap().len(), 400);
    for (row, codes) in table.codes.chunks(table.width).enumerate() {
        let joined: String = idx[raw_id(&table.ids, row)]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(joined, fmt.sid(codes));
    }
    // codes-npy: the matrix and its ids, row for row.
    let npy = t.path().join("npy");
    ok(&["export", &sids, "--format", "codes-npy", "--out", &s(&npy)]);
    let codes = candle_core::Tensor::read_npy(npy.join("codes.npy")).unwrap();
    let codes: Vec<Vec<i64>> = codes.to_vec2().unwrap();
    let ids: Vec<String> = serde_json::from_value(read_json(&npy.join("item_ids.json"))).unwrap();
    for (row, c) in table.codes.chunks(table.width).enumerate() {
        assert_eq!(ids[row], raw_id(&table.ids, row));
        assert_eq!(codes[row], c.iter().map(|&x| x as i64).collect::<Vec<_>>());
    }
    let err = fails(&[
        "export",
        &sids,
        "--format",
        "index-json",
        "--out",
        "x.json",
        "--cid",
    ]);
    assert!(err.contains("has no CIDs"), "{err}");

    // A model tuned on MiniOneRec's order keeps its ids: the .index.json's sorted tokens get
    // ids base, base + 1, … in that order; `sorted` gives the same without the file.
    let order = python_sorted(&idx);
    for (how, dir) in [(s(&index), "from-file"), ("sorted".to_string(), "sorted")] {
        let v = t.path().join(dir);
        ok(&[
            "vocab",
            "--sids",
            &sids,
            "--llm",
            &s(&testdata("tiny-qwen3")),
            "--out",
            &s(&v),
            "--tokens",
            "used",
            "--token-order",
            &how,
        ]);
        let r = read_json(&v.join("sid_tokens.json"));
        let got: Vec<(u64, String)> = r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_u64().unwrap(),
                    t["token"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(u64, String)> = order
            .iter()
            .enumerate()
            .map(|(i, t)| (1000 + i as u64, t.clone()))
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want, "{how}");
        let tok = tokenizers::Tokenizer::from_file(v.join("tokenizer.json")).unwrap();
        for (id, t) in &want {
            assert_eq!(tok.token_to_id(t), Some(*id as u32));
        }
    }
    // A token the table cannot have is refused, by name.
    let bad = t.path().join("bad.json");
    std::fs::write(&bad, r#"["<a_0>", "<zz_1>"]"#).unwrap();
    let err = fails(&[
        "vocab",
        "--sids",
        &sids,
        "--llm",
        &s(&testdata("tiny-qwen3")),
        "--out",
        &s(&t.path().join("bad")),
        "--token-order",
        &s(&bad),
    ]);
    assert!(
        err.contains("lists `<zz_1>`, which is not a SID token"),
        "{err}"
    );
}

#[test]
fn a_hub_llm_resolves_through_the_local_cache_and_records_its_commit() {
    let t = tempfile::tempdir().unwrap();
    let out = built(t.path());
    // The HF cache layout: blobs, a snapshot of links, refs/main.
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = t.path().join("hub").join("models--test-org--tiny-llm");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(testdata("tiny-qwen3").join(f), repo.join("blobs").join(f)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{f}"), snap.join(f)).unwrap();
    }
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    let v = t.path().join("v");
    let hub = s(&t.path().join("hub"));
    let args = [
        "vocab",
        "--sids",
        &s(&out.join("sids.parquet")),
        "--llm",
        "test-org/tiny-llm",
        "--out",
        &s(&v),
    ];
    let env = [
        ("HF_HUB_CACHE", hub.as_str()),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
    ];
    let o = sidtool_env(&args, &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = read_json(&v.join("sid_tokens.json"));
    assert_eq!(r["llm"], format!("test-org/tiny-llm@{commit}"));
    assert_eq!(r["embedding_rows"], 1024);
    assert_eq!(
        read_json(&v.join("tokenizer_config.json"))["eos_token"],
        "<|im_end|>"
    );
    // Not in the cache, offline: the error says how to get it.
    let mut args = args;
    args[4] = "test-org/absent";
    let o = sidtool_env(&args, &env);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("hf download test-org/absent"),
        "{err}"
    );
}
