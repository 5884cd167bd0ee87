//! LLM vocabulary artefacts (docs/methods.md §8): the LLM's Hugging Face tokenizer folder with
//! the SID tokens added, the embedding-size advice (and initial rows), and the
//! constrained-decoding trie over the final IDs.

pub mod config;
pub mod embeddings;
pub mod extend;
pub mod folder;
pub mod llm;
pub mod trie;

use crate::error::{Error, Result};
use crate::ids::sid_table::SidTable;
use crate::quant::kind::IdKind;
use std::path::Path;

/// What `sidtool vocab` can write into its output directory (GenSAR tables also get
/// [`CID_TRIE_OUTPUTS`]): the tokenizer folder, the token list, the trie, and initial rows.
pub(crate) const VOCAB_OUTPUTS: [&str; 8] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "sid_tokens.json",
    "trie.parquet",
    "trie.json",
    embeddings::INIT_FILE,
];

/// The CID's constrained-decoding trie, for GenSAR tables.
pub(crate) const CID_TRIE_OUTPUTS: [&str; 2] = ["cid_trie.parquet", "cid_trie.json"];

/// The files [`write_all`] wrote into `out`, in [`VOCAB_OUTPUTS`] order.
pub fn outputs(out: &Path) -> Vec<&'static str> {
    VOCAB_OUTPUTS
        .iter()
        .chain(&CID_TRIE_OUTPUTS)
        .copied()
        .filter(|f| out.join(f).is_file())
        .collect()
}

/// [`write_into`] the output directory `out`, atomically: the files are staged beside it and
/// swapped in together (`fs::dir`). Other files in `out` are kept; vocabulary files this run
/// does not write (the CID trie of an earlier GenSAR table) are removed.
pub fn write_all(
    table: &SidTable,
    llm: &llm::Llm,
    out: &Path,
    opts: &extend::Options,
) -> Result<extend::VocabReport> {
    crate::fs::inputs::check_output(
        out,
        crate::fs::inputs::OutputKind::Dir,
        &[llm.tokenizer.as_path()],
    )?;
    let dir = crate::fs::dir::AtomicDir::create(out)?;
    let report = write_into(table, llm, dir.path(), opts)?;
    dir.commit_keeping(|name| {
        !VOCAB_OUTPUTS.contains(&name)
            && !CID_TRIE_OUTPUTS.contains(&name)
            && !crate::fs::dir::is_legacy_scratch(name)
    })?;
    Ok(report)
}

/// Extend the LLM's tokenizer with the SID tokens of `table` (and CID tokens for GenSAR
/// tables), check the round trip on every item, and write the tokenizer folder,
/// `sid_tokens.json`, the tries (`trie.parquet`, `trie.json`; `cid_trie.*` for CIDs) and, when
/// asked, `sid_embeddings.safetensors` into the existing directory `out`.
pub(crate) fn write_into(
    table: &SidTable,
    llm: &llm::Llm,
    out: &Path,
    opts: &extend::Options,
) -> Result<extend::VocabReport> {
    let tokenizer = llm.tokenizer.as_path();
    table.validate(&crate::ids::sid_table::Expect {
        allow_shared_ids: opts.allow_duplicates,
        ..Default::default()
    })?;
    if !opts.allow_duplicates {
        refuse_shared_ids(table)?;
    }
    let (tok, mut report) = extend::extend(table, llm, opts)?;
    if let Some(extend::Mismatch {
        kind,
        row,
        expected: want,
        got,
    }) = extend::round_trip(&tok, table, &report)?
    {
        return Err(Error::artifact(
            tokenizer,
            format!(
                "the {} of item {} does not tokenize to one token per level with this \
                 tokenizer (expected ids {want:?}, got {got:?}); its normalizer or \
                 pre-tokenizer changes the added tokens",
                kind.name().to_uppercase(),
                table.ids.display(row)
            ),
        ));
    }
    let json = tok
        .to_string(false)
        .map_err(|e| Error::artifact(tokenizer, format!("cannot serialise the tokenizer: {e}")))?;
    let mut json: serde_json::Value = serde_json::from_str(&json).expect("tokenizers wrote JSON");
    report.dropped_post_processor = folder::drop_appended_specials(&mut json);
    if !report.dropped_post_processor.is_empty() {
        let dropped = report.dropped_post_processor.join(", ");
        if llm.is_embedding_model()? {
            tracing::warn!(
                "{} is a sentence-transformers embedding model, not an LLM: its tokenizer \
                 appends {dropped} to every text, which the written tokenizer does not (name \
                 the LLM that will learn the SIDs with --llm)",
                llm.source
            );
        } else {
            tracing::warn!(
                "the tokenizer of {} appends {dropped} to every text (an embedding model's \
                 post-processor); an LLM must not learn that, so the written tokenizer does not",
                llm.source
            );
        }
    }
    let json = serde_json::to_string(&json).expect("serialisable");
    crate::fs::atomic::write_file(&out.join("tokenizer.json"), json.as_bytes())?;
    folder::write(llm, &tok, out)?;
    if opts.init_embeddings {
        let ids: Vec<u32> = (report.base_vocab_size..report.vocab_size)
            .map(|i| i as u32)
            .collect();
        embeddings::init_rows(
            llm,
            report.base_vocab_size,
            &ids,
            opts.seed,
            &out.join(embeddings::INIT_FILE),
        )?;
    }
    let text = serde_json::to_string_pretty(&report).expect("serialisable") + "\n";
    crate::fs::atomic::write_file(&out.join("sid_tokens.json"), text.as_bytes())?;
    for v in extend::views(table)? {
        let stem = match v.kind {
            IdKind::Sid => "trie",
            IdKind::Cid => "cid_trie",
        };
        let nodes = trie::build(&v, Some(&report));
        trie::write_parquet(&nodes, &table.ids, &out.join(format!("{stem}.parquet")))?;
        let tj = trie::to_json(&nodes, &table.ids, &report, v.kind)?;
        crate::fs::atomic::write_file(
            &out.join(format!("{stem}.json")),
            tj.to_string().as_bytes(),
        )?;
    }
    Ok(report)
}

/// A trie leaf names one item, so a table in which items share an ID (`--dedup none`, or an
/// edited table) would silently lose all but one of them; refuse it unless told otherwise.
fn refuse_shared_ids(table: &SidTable) -> Result<()> {
    for kind in IdKind::BOTH {
        if let Some(s) = table.shared_ids(kind) {
            let (a, b) = s.example;
            return Err(Error::input(
                &table.path,
                Some(match kind {
                    IdKind::Sid => "codes",
                    IdKind::Cid => "cid_codes",
                }),
                Some(b as u64),
                format!(
                    "{} items share {} {}s (e.g. rows {a} and {b}, items {} and {}), so an ID \
                     cannot name one item and the trie would drop all but one of them. Assign \
                     IDs with --dedup suffix or reassign to give every item its own, or set \
                     --allow-duplicates (`allow_duplicates = true` in [vocab]) to keep them: each trie \
                     leaf then lists every item holding its ID",
                    s.items,
                    s.ids,
                    kind.name().to_uppercase(),
                    table.ids.display(a),
                    table.ids.display(b)
                ),
            ));
        }
    }
    Ok(())
}
