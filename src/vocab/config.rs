//! The vocabulary section (`[vocab]`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which SID tokens to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum TokenSet {
    /// Every code of every level (level-major, code-minor): ids do not depend on which codes
    /// this catalogue used, so later catalogues from the same quantizer fit the same model.
    All,
    /// Only the (level, code) pairs some item uses.
    Used,
}

/// In which order the new tokens get their ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum TokenOrder {
    /// Level-major, code-minor (`<a_0> <a_1> … <b_0> …`): sidtool's own order.
    LevelMajor,
    /// By token string, as MiniOneRec, LC-Rec and LETTER add the tokens of their `.index.json`
    /// (`sorted(set(tokens))`: `<a_10>` before `<a_2>`).
    Sorted,
    /// The order of an existing file: an `.index.json` (item → token list, taken sorted as
    /// those projects do), a JSON list of token strings, a `sid_tokens.json`, or a text file
    /// with one token per line.
    File(PathBuf),
}

impl From<TokenOrder> for String {
    fn from(o: TokenOrder) -> String {
        match o {
            TokenOrder::LevelMajor => "level-major".into(),
            TokenOrder::Sorted => "sorted".into(),
            TokenOrder::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

impl From<String> for TokenOrder {
    fn from(s: String) -> TokenOrder {
        match s.as_str() {
            "level-major" => TokenOrder::LevelMajor,
            "sorted" => TokenOrder::Sorted,
            _ => TokenOrder::File(PathBuf::from(s)),
        }
    }
}

impl std::str::FromStr for TokenOrder {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(TokenOrder::from(s.to_string()))
    }
}

/// LLM vocabulary artefacts (`sidtool vocab`, and `build` with an LLM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VocabConfig {
    /// The LLM whose tokenizer gets the SID tokens: a hub id (through the HF cache), a model or
    /// tokenizer directory, or a bare `tokenizer.json`. `build` writes no vocabulary without it.
    #[serde(alias = "tokenizer")]
    pub llm: Option<PathBuf>,
    /// Hub revision of `llm` (branch, tag or commit).
    pub llm_revision: String,
    pub tokens: TokenSet,
    pub token_order: TokenOrder,
    /// Add the SID tokens as special tokens.
    pub special: bool,
    /// Begin/end markers to add after the SID tokens, e.g. ["<|sid_begin|>", "<|sid_end|>"].
    pub markers: Vec<String>,
    /// Round the new vocabulary up to this multiple when the embedding matrix must grow.
    pub pad_to_multiple: usize,
    /// Also write `sid_embeddings.safetensors`: initial embedding rows for the new tokens from
    /// the LLM's own input embeddings (mean + covariance), which needs the LLM's weights.
    pub init_embeddings: bool,
    /// Accept a table in which items share a final ID (`--dedup none`): each trie leaf then
    /// lists every item holding that ID. Off by default: such an ID cannot name one item.
    pub allow_duplicates: bool,
}

impl Default for VocabConfig {
    fn default() -> Self {
        VocabConfig {
            llm: None,
            llm_revision: "main".into(),
            tokens: TokenSet::All,
            token_order: TokenOrder::LevelMajor,
            special: false,
            markers: Vec::new(),
            pad_to_multiple: 64,
            init_embeddings: false,
            allow_duplicates: false,
        }
    }
}
