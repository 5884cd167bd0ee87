//! The vocabulary section (`[vocab]`).

use serde::{Deserialize, Serialize};

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

/// LLM vocabulary artefacts (`sidtool vocab`, and `build` with a tokenizer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VocabConfig {
    /// The LLM's `tokenizer.json`. `build` uses the embedding model's own when it embedded text.
    pub tokenizer: Option<std::path::PathBuf>,
    pub tokens: TokenSet,
    /// Add the SID tokens as special tokens.
    pub special: bool,
    /// Begin/end markers to add after the SID tokens, e.g. ["<|sid_begin|>", "<|sid_end|>"].
    pub markers: Vec<String>,
    /// Report the vocabulary size rounded up to this multiple (embedding-matrix size).
    pub pad_to_multiple: usize,
    /// Accept a table in which items share a final ID (`--dedup none`): each trie leaf then
    /// lists every item holding that ID. Off by default: such an ID cannot name one item.
    pub allow_duplicates: bool,
}

impl Default for VocabConfig {
    fn default() -> Self {
        VocabConfig {
            tokenizer: None,
            tokens: TokenSet::All,
            special: false,
            markers: Vec::new(),
            pad_to_multiple: 64,
            allow_duplicates: false,
        }
    }
}
