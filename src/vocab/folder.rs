//! The Hugging Face tokenizer folder: what `AutoTokenizer.from_pretrained(dir)` reads besides
//! `tokenizer.json` — `tokenizer_config.json` (class, eos/pad/bos, chat template,
//! `model_max_length`, and every added token in `added_tokens_decoder`),
//! `special_tokens_map.json`, and the chat template file when the LLM keeps it apart.

use crate::error::{Error, Result};
use crate::vocab::llm::{Llm, read_json};
use serde_json::{Map, Value, json};
use std::path::Path;
use tokenizers::Tokenizer;

/// The special-token keys transformers reads from `tokenizer_config.json` into
/// `special_tokens_map.json`.
const SPECIAL_KEYS: [&str; 8] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
];

/// Write `tokenizer_config.json`, `special_tokens_map.json` and (when the LLM has one)
/// `chat_template.jinja` into `out`; returns the names written.
pub(crate) fn write(llm: &Llm, tok: &Tokenizer, out: &Path) -> Result<Vec<&'static str>> {
    let mut config = match llm.file("tokenizer_config.json")? {
        Some(p) => match read_json(&p)? {
            Value::Object(m) => m,
            _ => return Err(Error::artifact(&p, "is not a JSON object")),
        },
        None => Map::new(),
    };
    // A bare tokenizer.json has no class: the generic fast tokenizer reads it as it is.
    config
        .entry("tokenizer_class")
        .or_insert_with(|| json!("PreTrainedTokenizerFast"));
    config.insert("added_tokens_decoder".into(), added_tokens_decoder(tok));
    let mut written = vec!["tokenizer_config.json"];
    write_json(
        &out.join("tokenizer_config.json"),
        &Value::Object(config.clone()),
    )?;
    let map = match llm.file("special_tokens_map.json")? {
        Some(p) => read_json(&p)?,
        None => Value::Object(
            SPECIAL_KEYS
                .iter()
                .filter_map(|k| {
                    Some((
                        k.to_string(),
                        config.get(*k).filter(|v| !v.is_null())?.clone(),
                    ))
                })
                .collect(),
        ),
    };
    write_json(&out.join("special_tokens_map.json"), &map)?;
    written.push("special_tokens_map.json");
    if let Some(p) = llm.file("chat_template.jinja")? {
        let text = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        crate::fs::atomic::write_file(&out.join("chat_template.jinja"), &text)?;
        written.push("chat_template.jinja");
    }
    Ok(written)
}

/// Every added token of `tok` by id, as transformers saves them: the LLM's own special tokens
/// and the SID tokens (which are `normalized: false`, so no normalizer or pre-tokenizer can
/// split them).
fn added_tokens_decoder(tok: &Tokenizer) -> Value {
    let mut added: Vec<_> = tok.get_added_tokens_decoder().into_iter().collect();
    added.sort_by_key(|(id, _)| *id);
    Value::Object(
        added
            .into_iter()
            .map(|(id, t)| {
                (
                    id.to_string(),
                    json!({
                        "content": t.content,
                        "lstrip": t.lstrip,
                        "normalized": t.normalized,
                        "rstrip": t.rstrip,
                        "single_word": t.single_word,
                        "special": t.special,
                    }),
                )
            })
            .collect(),
    )
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    crate::fs::atomic::write_file(path, text.as_bytes())
}

/// An embedding model's post-processor appends an end token to every text (Qwen3-Embedding:
/// `$A <|endoftext|>`), which last-token pooling needs and an LLM must not inherit: its prompts
/// would end in "end of text" before it generates. Decoder-only LLMs at most prepend a BOS, so
/// a template's special tokens *after* a sequence are dropped (those before it kept). Returns
/// the tokens dropped, if any.
pub(crate) fn drop_appended_specials(tokenizer: &mut Value) -> Vec<String> {
    let mut dropped = Vec::new();
    let pp = &mut tokenizer["post_processor"];
    match pp.get("type").and_then(Value::as_str) {
        Some("TemplateProcessing") => {
            // Nothing left but the sequences themselves: no post-processor at all.
            let nothing_left = strip_template(pp, &mut dropped);
            if nothing_left {
                *pp = Value::Null;
            }
        }
        Some("Sequence") => {
            if let Some(list) = pp.get_mut("processors").and_then(Value::as_array_mut) {
                list.retain_mut(|p| {
                    p.get("type").and_then(Value::as_str) != Some("TemplateProcessing")
                        || !strip_template(p, &mut dropped)
                });
            }
        }
        _ => {}
    }
    dropped.sort();
    dropped.dedup();
    dropped
}

/// Strip special tokens after any sequence from a TemplateProcessing's `single` and `pair`;
/// true when nothing of it is left to do (only sequences remain).
fn strip_template(pp: &mut Value, dropped: &mut Vec<String>) -> bool {
    let mut only_sequences = true;
    for key in ["single", "pair"] {
        let Some(pieces) = pp.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        let mut seen_sequence = false;
        pieces.retain(|piece| {
            if piece.get("Sequence").is_some() {
                seen_sequence = true;
                return true;
            }
            let id = piece
                .pointer("/SpecialToken/id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if seen_sequence {
                dropped.push(id.to_string());
                false
            } else {
                true
            }
        });
        only_sequences &= pieces.iter().all(|p| p.get("Sequence").is_some());
    }
    only_sequences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(single: Value) -> Value {
        json!({"post_processor": {"type": "TemplateProcessing", "single": single, "pair": [],
               "special_tokens": {}}})
    }

    #[test]
    fn an_appended_end_token_is_dropped_and_a_bos_kept() {
        let a = json!({"Sequence": {"id": "A", "type_id": 0}});
        let eot = json!({"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}});
        let bos = json!({"SpecialToken": {"id": "<s>", "type_id": 0}});
        let mut t = template(json!([a, eot]));
        assert_eq!(drop_appended_specials(&mut t), vec!["<|endoftext|>"]);
        assert!(t["post_processor"].is_null());
        let mut t = template(json!([bos, a, eot]));
        assert_eq!(drop_appended_specials(&mut t), vec!["<|endoftext|>"]);
        assert_eq!(t["post_processor"]["single"], json!([bos, a]));
        let mut t = template(json!([bos, a]));
        assert!(drop_appended_specials(&mut t).is_empty());
        // ByteLevel (the Qwen3 LLM's own) is left alone; a Sequence loses only the template.
        let mut t = json!({"post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel"}, template(json!([a, eot]))["post_processor"].clone()]}});
        assert_eq!(drop_appended_specials(&mut t), vec!["<|endoftext|>"]);
        assert_eq!(
            t["post_processor"]["processors"],
            json!([{"type": "ByteLevel"}])
        );
        let mut t = json!({"post_processor": {"type": "ByteLevel"}});
        assert!(drop_appended_specials(&mut t).is_empty());
    }
}
