//! `sidtool vocab` and the vocabulary artefacts of `build`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Build from text with the tiny model; its tokenizer is extended automatically.
fn built(t: &Path) -> std::path::PathBuf {
    let out = t.join("out");
    ok(&[
        "build",
        &s(&testdata("items_text.parquet")),
        "--out",
        &s(&out),
        "--model",
        &s(&testdata("tiny-qwen3")),
        "--codebook-sizes",
        "16,8,8",
        "--markers",
        "<|sid_begin|>,<|sid_end|>",
    ]);
    out
}

/// Every final ID → its token ids, from sids.parquet and sid_tokens.json.
fn expected_ids(out: &Path) -> HashMap<Vec<u32>, String> {
    let table = sidtool::ids::sid_table::read(&out.join("sids.parquet")).unwrap();
    let tokens = read_json(&out.join("sid_tokens.json"));
    let mut id_of = HashMap::new();
    for t in tokens["tokens"].as_array().unwrap() {
        id_of.insert(
            (
                t["level"].as_u64().unwrap() as usize,
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
            let name = match &table.ids {
                sidtool::item_id::ItemIds::Str(v) => v[i].clone(),
                sidtool::item_id::ItemIds::Int(v) => v[i].to_string(),
            };
            (ids, name)
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
    // Level-major, code-minor ids from the base vocabulary on.
    let mut offset = 0;
    for (l, &k) in sizes.iter().enumerate() {
        for t in r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["level"] == l)
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
