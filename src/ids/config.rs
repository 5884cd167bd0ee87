//! The IDs section (`[ids]`): collision resolution and token spelling.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How items that received the same code tuple get distinct final IDs (docs/methods.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Dedup {
    /// Append a level holding the item's rank within its collision group (TIGER).
    #[default]
    Suffix,
    /// Move colliding items to the nearest free last-level code of the same prefix (LC-Rec).
    Reassign,
    /// Keep duplicates and only report them.
    None,
}

impl Dedup {
    /// The spelling in config files and `sids.parquet` footers (`suffix`, `reassign`, `none`).
    pub fn name(self) -> String {
        crate::names::name(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdsConfig {
    pub dedup: Dedup,
    /// Token pattern: `{level}` is the level letter (a, b, c, ...), `{code}` the code.
    pub token_format: String,
    /// GenSAR: what goes before the letter of the SID's own (non-shared) levels: `<sc_3>`.
    pub sid_prefix: String,
    /// GenSAR: the same for the CID's own levels: `<uc_3>`.
    pub cid_prefix: String,
}

impl Default for IdsConfig {
    fn default() -> Self {
        IdsConfig {
            dedup: Dedup::Suffix,
            token_format: super::tokens::DEFAULT_TOKEN_FORMAT.into(),
            sid_prefix: "s".into(),
            cid_prefix: "u".into(),
        }
    }
}

impl IdsConfig {
    /// Check the token settings for codes of `levels` levels (the suffix level, when used,
    /// takes one more letter).
    pub fn validate(&self, levels: usize) -> Result<()> {
        if self.sid_prefix == self.cid_prefix {
            return Err(Error::Config(format!(
                "sid_prefix and cid_prefix are both {:?}: SID and CID tokens would clash",
                self.sid_prefix
            )));
        }
        let fmt = super::tokens::TokenFormat::new(&self.token_format)?;
        fmt.check_levels(levels + 1)?;
        Ok(())
    }
}

impl IdsConfig {
    /// An `--existing` table fixes how IDs look: take its dedup strategy and token format
    /// (unless the user set them: `dedup_set`, `format_set`) and its GenSAR prefixes, so new
    /// items get IDs spelled like the old ones.
    pub fn follow_existing(
        &mut self,
        meta: &super::sid_table::SidMeta,
        dedup_set: bool,
        format_set: bool,
    ) -> Result<()> {
        if !dedup_set {
            self.dedup = crate::names::parse(&meta.dedup).ok_or_else(|| {
                Error::Config(format!(
                    "unknown dedup strategy {:?} (suffix, reassign, none)",
                    meta.dedup
                ))
            })?;
        }
        if !format_set {
            self.token_format = meta.token_format.clone();
        }
        if let Some(d) = &meta.dual {
            self.sid_prefix = d.sid_prefix.clone();
            self.cid_prefix = d.cid_prefix.clone();
        }
        Ok(())
    }
}
