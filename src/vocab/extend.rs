//! Adding SID tokens to a `tokenizer.json` without moving any existing token.

pub use crate::config::TokenSet;
use crate::error::{Error, Result};
use crate::ids::tokens::TokenFormat;
use crate::io::sid_table::SidTable;
use serde::Serialize;
use std::path::Path;
use tokenizers::{AddedToken, Tokenizer};

#[derive(Debug, Clone, Serialize)]
pub struct SidToken {
    pub token: String,
    pub id: u32,
    pub level: usize,
    pub code: u16,
}

/// `sid_tokens.json`.
#[derive(Debug, Clone, Serialize)]
pub struct VocabReport {
    pub base_vocab_size: usize,
    pub added: usize,
    pub vocab_size: usize,
    /// `vocab_size` rounded up to `pad_to_multiple`: what to resize the embedding matrix to.
    pub padded_vocab_size: usize,
    pub pad_to_multiple: usize,
    pub token_set: TokenSet,
    pub special: bool,
    pub token_format: String,
    /// Codes per level of the table (the suffix level's size is the largest rank used + 1).
    pub level_sizes: Vec<usize>,
    pub markers: Vec<Marker>,
    pub tokens: Vec<SidToken>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub token: String,
    pub id: u32,
}

impl VocabReport {
    /// Token id of (level, code), if added.
    pub fn id_of(&self, level: usize, code: u16) -> Option<u32> {
        self.tokens
            .iter()
            .find(|t| t.level == level && t.code == code)
            .map(|t| t.id)
    }
}

pub struct Options<'a> {
    pub tokens: TokenSet,
    pub special: bool,
    pub markers: &'a [String],
    pub pad_to_multiple: usize,
}

/// Codes per level of a table: the quantizer's K_l, then the suffix level's observed range.
pub fn level_sizes(table: &SidTable) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..table.width)
        .map(|l| {
            table
                .codes
                .chunks(table.width)
                .map(|r| r[l] as usize + 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    if let Some(meta) = &table.meta {
        for (l, &k) in meta.codebook_sizes.iter().enumerate().take(table.width) {
            sizes[l] = sizes[l].max(k);
        }
    }
    sizes
}

/// Load `tokenizer.json`, add the SID tokens, return it with the report.
pub fn extend(
    table: &SidTable,
    tokenizer_path: &Path,
    opts: &Options,
) -> Result<(Tokenizer, VocabReport)> {
    let mut tok = Tokenizer::from_file(tokenizer_path).map_err(|e| {
        Error::artifact(
            tokenizer_path,
            format!("not a Hugging Face tokenizer.json: {e}"),
        )
    })?;
    let format = TokenFormat::new(
        table
            .meta
            .as_ref()
            .map(|m| m.token_format.as_str())
            .unwrap_or(crate::ids::tokens::DEFAULT_TOKEN_FORMAT),
    )?;
    let sizes = level_sizes(table);
    let mut wanted: Vec<(usize, u16)> = Vec::new();
    for (l, &k) in sizes.iter().enumerate() {
        match opts.tokens {
            TokenSet::All => wanted.extend((0..k).map(|c| (l, c as u16))),
            TokenSet::Used => {
                let mut used = vec![false; k];
                table
                    .codes
                    .chunks(table.width)
                    .for_each(|r| used[r[l] as usize] = true);
                wanted.extend((0..k).filter(|&c| used[c]).map(|c| (l, c as u16)));
            }
        }
    }
    let base = tok.get_vocab_size(true);
    let strings: Vec<String> = wanted.iter().map(|&(l, c)| format.token(l, c)).collect();
    for s in strings.iter().chain(opts.markers) {
        if let Some(id) = tok.token_to_id(s) {
            return Err(Error::artifact(
                tokenizer_path,
                format!(
                    "already has a token `{s}` (id {id}); SID tokens must be new. Use another \
                     --token-format when assigning IDs, or start from the base tokenizer"
                ),
            ));
        }
    }
    let added: Vec<AddedToken> = strings
        .iter()
        .chain(opts.markers)
        .map(|s| AddedToken::from(s.clone(), opts.special))
        .collect();
    let count = added.len();
    let n = tok
        .add_tokens(added)
        .map_err(|e| Error::artifact(tokenizer_path, format!("cannot add SID tokens: {e}")))?;
    if n != count {
        return Err(Error::artifact(
            tokenizer_path,
            format!("only {n} of {count} SID tokens could be added"),
        ));
    }
    let id = |s: &str| tok.token_to_id(s).expect("just added");
    let tokens: Vec<SidToken> = wanted
        .iter()
        .zip(&strings)
        .map(|(&(level, code), s)| SidToken {
            token: s.clone(),
            id: id(s),
            level,
            code,
        })
        .collect();
    // Level-major, code-minor ids, right after the base vocabulary.
    debug_assert!(
        tokens
            .iter()
            .enumerate()
            .all(|(i, t)| t.id as usize == base + i)
    );
    let markers = opts
        .markers
        .iter()
        .map(|s| Marker {
            token: s.clone(),
            id: id(s),
        })
        .collect();
    let vocab_size = tok.get_vocab_size(true);
    let m = opts.pad_to_multiple.max(1);
    let report = VocabReport {
        base_vocab_size: base,
        added: count,
        vocab_size,
        padded_vocab_size: vocab_size.div_ceil(m) * m,
        pad_to_multiple: m,
        token_set: opts.tokens,
        special: opts.special,
        token_format: format.pattern().to_string(),
        level_sizes: sizes,
        markers,
        tokens,
    };
    Ok((tok, report))
}

/// An item whose SID string does not encode to its per-level token ids.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub row: usize,
    pub expected: Vec<u32>,
    pub got: Vec<u32>,
}

/// Check that every item's SID string encodes to exactly its per-level token ids; the first
/// item that does not, if any.
pub fn round_trip(
    tok: &Tokenizer,
    table: &SidTable,
    report: &VocabReport,
) -> Result<Option<Mismatch>> {
    let format = TokenFormat::new(&report.token_format)?;
    let mut lookup = std::collections::HashMap::new();
    for t in &report.tokens {
        lookup.insert((t.level, t.code), t.id);
    }
    let rows: Vec<&[u16]> = table.codes.chunks(table.width).collect();
    let texts: Vec<String> = rows.iter().map(|r| format.sid(r)).collect();
    let enc = tok
        .encode_batch(texts, false)
        .map_err(|e| Error::Model(format!("tokenizing SID strings failed: {e}")))?;
    for (i, (r, e)) in rows.iter().zip(enc).enumerate() {
        let want: Vec<u32> = r
            .iter()
            .enumerate()
            .map(|(l, &c)| lookup.get(&(l, c)).copied().unwrap_or(u32::MAX))
            .collect();
        if e.get_ids() != want.as_slice() {
            return Ok(Some(Mismatch {
                row: i,
                expected: want,
                got: e.get_ids().to_vec(),
            }));
        }
    }
    Ok(None)
}
