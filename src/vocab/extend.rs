//! Adding SID tokens to a `tokenizer.json` without moving any existing token.

use crate::error::{Error, Result};
use crate::ids::sid_table::SidTable;
use crate::ids::tokens::TokenFormat;
use crate::quant::kind::IdKind;
pub use crate::vocab::config::{TokenOrder, TokenSet};
use crate::vocab::embeddings::Resize;
use crate::vocab::llm::Llm;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::{AddedToken, Tokenizer};

#[derive(Debug, Clone, Serialize)]
pub struct SidToken {
    pub token: String,
    pub id: u32,
    /// Level in its ID, counted from 0 here and written counted from 1 (as everywhere in
    /// sidtool's outputs: stats.json, messages).
    #[serde(serialize_with = "one_based")]
    pub level: usize,
    pub code: u16,
    /// GenSAR tables: `sid` or `cid` for a token of one ID's own levels; absent for the shared
    /// levels (and for single-ID tables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdKind>,
}

fn one_based<S: serde::Serializer>(level: &usize, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(*level as u64 + 1)
}

/// `sid_tokens.json`.
#[derive(Debug, Clone, Serialize)]
pub struct VocabReport {
    /// The LLM whose tokenizer was extended (`id@commit` for a hub model).
    pub llm: String,
    pub base_vocab_size: usize,
    pub added: usize,
    pub vocab_size: usize,
    /// `vocab_size` rounded up to `pad_to_multiple`.
    pub padded_vocab_size: usize,
    pub pad_to_multiple: usize,
    /// The embedding matrix: its rows, what to resize it to, which new ids need initialising.
    #[serde(flatten)]
    pub resize: Resize,
    /// Special tokens the LLM's tokenizer appended to every text (an embedding model's
    /// post-processor), dropped from the written tokenizer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_post_processor: Vec<String>,
    pub token_set: TokenSet,
    /// How the new tokens' ids were ordered (`level-major`, `sorted`, or the file given).
    pub token_order: String,
    pub special: bool,
    pub token_format: String,
    /// Codes per level of the table (the suffix level's size is the largest rank used + 1).
    pub level_sizes: Vec<usize>,
    /// GenSAR tables: the same for the CID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid_level_sizes: Option<Vec<usize>>,
    /// GenSAR tables: how token strings spell each ID's own levels (after `shared_levels`
    /// plain letters, `{prefix}{letter}`), so SID and CID strings can be rebuilt from codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dual: Option<DualSpelling>,
    pub markers: Vec<Marker>,
    pub tokens: Vec<SidToken>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DualSpelling {
    pub shared_levels: usize,
    pub sid_prefix: String,
    pub cid_prefix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub token: String,
    pub id: u32,
}

impl VocabReport {
    /// Token ids by (ID kind, level, code), for lookups over many IDs.
    pub(crate) fn lookup(&self) -> TokenIds {
        let mut map = HashMap::new();
        for t in &self.tokens {
            let kinds: &[IdKind] = match t.kind {
                None => &IdKind::BOTH,
                Some(IdKind::Sid) => &IdKind::BOTH[..1],
                Some(IdKind::Cid) => &IdKind::BOTH[1..],
            };
            for &k in kinds {
                map.insert((k, t.level, t.code), t.id);
            }
        }
        TokenIds(map)
    }
}

/// See [`VocabReport::lookup`].
pub(crate) struct TokenIds(HashMap<(IdKind, usize, u16), u32>);

impl TokenIds {
    /// Token id of `code` at depth `level` of an ID of `kind` (u32::MAX if not added).
    pub fn id(&self, kind: IdKind, level: usize, code: u16) -> u32 {
        self.0
            .get(&(kind, level, code))
            .copied()
            .unwrap_or(u32::MAX)
    }
}

/// One ID column of a table, with how its tokens are spelled.
pub struct IdView<'a> {
    pub kind: IdKind,
    pub codes: &'a [u16],
    pub width: usize,
    pub format: TokenFormat,
    /// Levels shared with the other ID (GenSAR); their tokens belong to both.
    pub shared: usize,
    /// K_l of the quantizer levels, where known.
    pub sizes: Vec<usize>,
}

/// The table's IDs: the SID, and for GenSAR tables the CID.
pub(crate) fn views(table: &SidTable) -> Result<Vec<IdView<'_>>> {
    let pattern = table
        .meta
        .as_ref()
        .map(|m| m.token_format.as_str())
        .unwrap_or(crate::ids::tokens::DEFAULT_TOKEN_FORMAT);
    let format = |kind: IdKind| -> Result<TokenFormat> {
        match &table.meta {
            Some(m) => m.format(kind),
            None => TokenFormat::new(pattern),
        }
    };
    let sizes = |kind: IdKind| -> Vec<usize> {
        table
            .meta
            .as_ref()
            .map(|m| m.sizes(kind).to_vec())
            .unwrap_or_default()
    };
    let shared = table
        .meta
        .as_ref()
        .and_then(|m| m.dual.as_ref())
        .map_or(0, |d| d.shared_levels);
    let mut out = vec![IdView {
        kind: IdKind::Sid,
        codes: &table.codes,
        width: table.width,
        format: format(IdKind::Sid)?,
        shared,
        sizes: sizes(IdKind::Sid),
    }];
    if let Some(c) = &table.cid {
        out.push(IdView {
            kind: IdKind::Cid,
            codes: &c.codes,
            width: c.width,
            format: format(IdKind::Cid)?,
            shared,
            sizes: sizes(IdKind::Cid),
        });
    }
    Ok(out)
}

pub struct Options<'a> {
    pub tokens: TokenSet,
    pub token_order: &'a TokenOrder,
    pub special: bool,
    pub markers: &'a [String],
    pub pad_to_multiple: usize,
    /// See [`crate::vocab::config::VocabConfig::allow_duplicates`].
    pub allow_duplicates: bool,
    /// Write `sid_embeddings.safetensors`, drawn with this seed.
    pub init_embeddings: bool,
    pub seed: u64,
}

impl<'a> Options<'a> {
    pub fn new(v: &'a crate::vocab::config::VocabConfig, seed: u64) -> Self {
        Options {
            tokens: v.tokens,
            token_order: &v.token_order,
            init_embeddings: v.init_embeddings,
            seed,
            special: v.special,
            markers: &v.markers,
            pad_to_multiple: v.pad_to_multiple,
            allow_duplicates: v.allow_duplicates,
        }
    }
}

/// Codes per level of one ID: the quantizer's K_l, then the suffix level's observed range.
pub fn level_sizes(v: &IdView) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..v.width)
        .map(|l| {
            v.codes
                .chunks(v.width)
                .map(|r| r[l] as usize + 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (l, &k) in v.sizes.iter().enumerate().take(v.width) {
        sizes[l] = sizes[l].max(k);
    }
    sizes
}

/// Load the LLM's `tokenizer.json`, add the SID tokens, return it with the report.
pub fn extend(table: &SidTable, llm: &Llm, opts: &Options) -> Result<(Tokenizer, VocabReport)> {
    let tokenizer_path = llm.tokenizer.as_path();
    let mut tok = Tokenizer::from_file(tokenizer_path).map_err(|e| {
        Error::artifact(
            tokenizer_path,
            format!("not a Hugging Face tokenizer.json: {e}"),
        )
    })?;
    let views = views(table)?;
    let dual = views.len() > 1;
    let mut all_sizes = Vec::new();
    // (kind of an ID's own level, level, code): shared levels are added once, by the SID.
    let mut wanted: Vec<(Option<IdKind>, usize, u16)> = Vec::new();
    let mut strings: Vec<String> = Vec::new();
    for v in &views {
        let sizes = level_sizes(v);
        for (l, &k) in sizes.iter().enumerate() {
            let kind = if !dual || l < v.shared {
                if v.kind == IdKind::Cid {
                    continue;
                }
                None
            } else {
                Some(v.kind)
            };
            let codes: Vec<u16> = match opts.tokens {
                TokenSet::All => (0..k as u16).collect(),
                TokenSet::Used => {
                    let mut used = vec![false; k];
                    v.codes
                        .chunks(v.width)
                        .for_each(|r| used[r[l] as usize] = true);
                    (0..k).filter(|&c| used[c]).map(|c| c as u16).collect()
                }
            };
            for c in codes {
                wanted.push((kind, l, c));
                strings.push(v.format.token(l, c));
            }
        }
        all_sizes.push(sizes);
    }
    let order = ordering(opts.token_order, &strings)?;
    let wanted: Vec<_> = order.iter().map(|&i| wanted[i]).collect();
    let strings: Vec<String> = order.iter().map(|&i| strings[i].clone()).collect();
    let base = tok.get_vocab_size(true);
    check_markers(opts.markers, &strings, &wanted, &tok, tokenizer_path)?;
    for s in &strings {
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
        // Not normalized: the LLM's normalizer must never see (and change) a SID token.
        .map(|s| AddedToken::from(s.clone(), opts.special).normalized(false))
        .collect();
    let count = added.len();
    let n = tok
        .add_tokens(added)
        .map_err(|e| Error::artifact(tokenizer_path, format!("cannot add SID tokens: {e}")))?;
    if n != count {
        // Every known cause is refused above with its reason; this is what remains.
        return Err(Error::artifact(
            tokenizer_path,
            format!(
                "only {n} of {count} SID tokens and markers could be added: the tokenizer \
                 refused or merged some of them"
            ),
        ));
    }
    let id = |s: &str| tok.token_to_id(s).expect("just added");
    let tokens: Vec<SidToken> = wanted
        .iter()
        .zip(&strings)
        .map(|(&(kind, level, code), s)| SidToken {
            token: s.clone(),
            id: id(s),
            level,
            code,
            kind,
        })
        .collect();
    // In the order chosen, right after the base vocabulary.
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
        llm: llm.source.clone(),
        base_vocab_size: base,
        added: count,
        vocab_size,
        padded_vocab_size: vocab_size.div_ceil(m) * m,
        pad_to_multiple: m,
        resize: crate::vocab::embeddings::advise(base, vocab_size, llm.embedding_rows()?, m),
        dropped_post_processor: Vec::new(),
        token_set: opts.tokens,
        token_order: String::from(opts.token_order.clone()),
        special: opts.special,
        token_format: views[0].format.pattern().to_string(),
        cid_level_sizes: all_sizes.get(1).cloned(),
        dual: table
            .meta
            .as_ref()
            .and_then(|m| m.dual.as_ref())
            .map(|d| DualSpelling {
                shared_levels: d.shared_levels,
                sid_prefix: d.sid_prefix.clone(),
                cid_prefix: d.cid_prefix.clone(),
            }),
        level_sizes: all_sizes.swap_remove(0),
        markers,
        tokens,
    };
    Ok((tok, report))
}

/// The order of the new tokens, as indices into `strings` (level-major, code-minor).
fn ordering(order: &TokenOrder, strings: &[String]) -> Result<Vec<usize>> {
    let mut idx: Vec<usize> = (0..strings.len()).collect();
    match order {
        TokenOrder::LevelMajor => {}
        // Byte order of UTF-8 is code-point order: Python's `sorted` on the same strings.
        TokenOrder::Sorted => idx.sort_by(|&a, &b| strings[a].cmp(&strings[b])),
        TokenOrder::File(path) => {
            let pos: HashMap<&str, usize> = strings
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            let mut seen = vec![false; strings.len()];
            idx.clear();
            for t in read_order(path)? {
                let Some(&i) = pos.get(t.as_str()) else {
                    return Err(Error::artifact(
                        path,
                        format!(
                            "lists `{t}`, which is not a SID token of this table (its tokens \
                             run {} … {}): the order must come from IDs of the same levels and \
                             token format",
                            strings.first().map_or("", String::as_str),
                            strings.last().map_or("", String::as_str)
                        ),
                    ));
                };
                if !std::mem::replace(&mut seen[i], true) {
                    idx.push(i);
                }
            }
            // Tokens the file does not list follow, level-major: the listed ones keep the ids
            // the model was tuned with.
            idx.extend((0..strings.len()).filter(|&i| !seen[i]));
        }
    }
    Ok(idx)
}

/// The token strings of a `--token-order` file, in id order: an `.index.json` (item → tokens;
/// `sorted(set(...))`, as MiniOneRec, LC-Rec and LETTER add them), a `sid_tokens.json` (by id),
/// a JSON list of strings, or a text file of one token per line.
fn read_order(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: &str| {
        Error::artifact(
            path,
            format!(
                "is not a token order: {what} (give an .index.json, a sid_tokens.json, a \
                     JSON list of tokens or one token per line)"
            ),
        )
    };
    let strings = |v: &serde_json::Value| -> Result<Vec<String>> {
        v.as_array()
            .ok_or_else(|| bad("expected a list of tokens"))?
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("a token is not a string"))
            })
            .collect()
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(a)) => strings(&serde_json::Value::Array(a)),
        Ok(serde_json::Value::Object(o)) => {
            if let Some(tokens) = o.get("tokens").and_then(|t| t.as_array()) {
                let mut by_id: Vec<(u64, String)> = tokens
                    .iter()
                    .map(|t| {
                        Some((
                            t.get("id")?.as_u64()?,
                            t.get("token")?.as_str()?.to_string(),
                        ))
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("`tokens` entries need `token` and `id`"))?;
                by_id.sort();
                return Ok(by_id.into_iter().map(|(_, t)| t).collect());
            }
            let mut all = std::collections::BTreeSet::new();
            for v in o.values() {
                all.extend(strings(v)?);
            }
            Ok(all.into_iter().collect())
        }
        Ok(_) => Err(bad("a JSON value that is neither a list nor an object")),
        Err(_) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
    }
}

/// Markers must be new, distinct tokens: the tokenizer would silently merge a repeated one, or
/// one equal to a SID token, and the count of added tokens would then come up short with no
/// reason given.
fn check_markers(
    markers: &[String],
    sid_tokens: &[String],
    wanted: &[(Option<IdKind>, usize, u16)],
    tok: &Tokenizer,
    tokenizer_path: &Path,
) -> Result<()> {
    for (i, m) in markers.iter().enumerate() {
        if markers[..i].contains(m) {
            return Err(Error::Config(format!(
                "vocab marker `{m}` is listed twice (markers {} and {}); markers must be distinct",
                markers[..i].iter().position(|x| x == m).expect("found") + 1,
                i + 1
            )));
        }
        if let Some(j) = sid_tokens.iter().position(|s| s == m) {
            let (kind, level, code) = wanted[j];
            return Err(Error::Config(format!(
                "vocab marker `{m}` is also the {} token of level {} code {code}; pick a \
                 marker that cannot be a SID token (e.g. `<|sid_begin|>`)",
                match kind {
                    Some(IdKind::Cid) => "CID",
                    _ => "SID",
                },
                level + 1
            )));
        }
        if let Some(id) = tok.token_to_id(m) {
            return Err(Error::artifact(
                tokenizer_path,
                format!(
                    "already has the token `{m}` (id {id}) that is given as a vocab marker; \
                     markers must be new tokens: pick another, or leave the marker out and use \
                     the existing token yourself"
                ),
            ));
        }
    }
    Ok(())
}

/// An item whose SID (or CID) string does not encode to its per-level token ids.
#[derive(Debug, Clone)]
pub(crate) struct Mismatch {
    pub kind: IdKind,
    pub row: usize,
    pub expected: Vec<u32>,
    pub got: Vec<u32>,
}

/// Check that every item's SID string encodes to exactly its per-level token ids; the first
/// item that does not, if any.
pub(crate) fn round_trip(
    tok: &Tokenizer,
    table: &SidTable,
    report: &VocabReport,
) -> Result<Option<Mismatch>> {
    let lookup = report.lookup();
    for v in views(table)? {
        let rows: Vec<&[u16]> = v.codes.chunks(v.width).collect();
        let texts: Vec<String> = rows.iter().map(|r| v.format.sid(r)).collect();
        let enc = tok
            .encode_batch(texts, false)
            .map_err(|e| Error::Model(format!("tokenizing SID strings failed: {e}")))?;
        for (i, (r, e)) in rows.iter().zip(enc).enumerate() {
            let want: Vec<u32> = r
                .iter()
                .enumerate()
                .map(|(l, &c)| lookup.id(v.kind, l, c))
                .collect();
            if e.get_ids() != want.as_slice() {
                return Ok(Some(Mismatch {
                    kind: v.kind,
                    row: i,
                    expected: want,
                    got: e.get_ids().to_vec(),
                }));
            }
        }
    }
    Ok(None)
}
