//! Typed configuration: defaults, the TOML file (`--config sidtool.toml`), and validation that
//! runs before any heavy work so a bad value fails in milliseconds, not after training.

use crate::embed::device::{DeviceKind, EmbedDType};
use crate::embed::pooling::Pooling;
use crate::error::{Error, Result};
use crate::ids::tokens::TokenFormat;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Default seed, so two runs without `--seed` agree.
pub const DEFAULT_SEED: u64 = 42;
/// MiniOneRec's default: 3 levels of 256 codes.
pub const DEFAULT_CODEBOOK_SIZES: [usize; 3] = [256, 256, 256];
/// Train on at most this many rows by default (METHODS.md §2).
pub const DEFAULT_TRAIN_SAMPLE: usize = 1_000_000;
/// Codes are stored as UInt16, and the largest code must stay representable.
pub const MAX_CODEBOOK_SIZE: usize = 65_535;
/// Rows per Parquet row group in outputs (DESIGN.md).
pub const ROW_GROUP_ROWS: usize = 65_536;
/// Rows per record batch when streaming Parquet: large enough to amortise per-batch work,
/// small enough that a batch of 1024-dim vectors stays at 32 MiB.
pub const DEFAULT_BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[derive(clap::ValueEnum)]
pub enum Method {
    /// Residual k-means (OneRec / MiniOneRec).
    #[default]
    RqKmeans,
    /// Residual-quantized VAE (TIGER), with PLUM's progressive prefix masking.
    RqVae,
    /// GenSAR dual quantization: a semantic ID and a collaborative ID with a shared prefix.
    Gensar,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::RqKmeans => "rq-kmeans",
            Method::RqVae => "rq-vae",
            Method::Gensar => "gensar",
        }
    }
}

/// How items that received the same code tuple get distinct final IDs (METHODS.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Dedup {
    /// Append a level holding the item's rank within its collision group (TIGER).
    #[default]
    Suffix,
    /// Move colliding items to the nearest free last-level code of the same prefix (LC-Rec).
    Reassign,
    /// Keep duplicates and only report them.
    None,
}

impl std::str::FromStr for Dedup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "suffix" => Ok(Dedup::Suffix),
            "reassign" => Ok(Dedup::Reassign),
            "none" => Ok(Dedup::None),
            other => Err(format!(
                "unknown dedup strategy {other:?} (suffix, reassign, none)"
            )),
        }
    }
}

impl Dedup {
    pub fn name(self) -> &'static str {
        match self {
            Dedup::Suffix => "suffix",
            Dedup::Reassign => "reassign",
            Dedup::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub seed: u64,
    pub input: InputConfig,
    pub quantizer: QuantizerConfig,
    pub ids: IdsConfig,
    pub embed: EmbedConfig,
    pub vocab: VocabConfig,
    pub collab: CollabConfig,
}

/// Collaborative embeddings from interactions (`sidtool collab`; METHODS.md §6):
/// co-occurrence counts → PPMI → truncated randomized SVD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollabConfig {
    /// Dimensions d of the item vectors (METHODS.md §6: 64).
    pub dim: usize,
    /// Items at most this many positions apart in a history co-occur (METHODS.md §4: 5).
    pub window: usize,
    /// Extra sketch columns p of the randomized SVD (Halko et al. 2011 recommend 5–10).
    pub oversample: usize,
    /// Power iterations q of the randomized SVD (Halko et al.: 1–2 for slowly decaying
    /// spectra such as PPMI's).
    pub power_iterations: usize,
    /// Name of the vector column: written by `sidtool collab`, and the column of
    /// user-supplied collaborative vectors in a catalogue.
    pub column: String,
}

impl Default for CollabConfig {
    fn default() -> Self {
        CollabConfig {
            dim: 64,
            window: 5,
            oversample: 10,
            power_iterations: 2,
            column: "collab_embedding".into(),
        }
    }
}

impl CollabConfig {
    /// Check the values that can be checked without data.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.window == 0 {
            return Err(Error::Config(format!(
                "collab dim and window must be ≥ 1, got dim {} and window {}",
                self.dim, self.window
            )));
        }
        if self.column.is_empty() || self.column == "item_id" {
            return Err(Error::Config(format!(
                "collab column must be a non-empty name other than item_id, got {:?}",
                self.column
            )));
        }
        Ok(())
    }
}

/// Which SID tokens to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl Default for VocabConfig {
    fn default() -> Self {
        VocabConfig {
            tokenizer: None,
            tokens: TokenSet::All,
            special: false,
            markers: Vec::new(),
            pad_to_multiple: 64,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: DEFAULT_SEED,
            input: InputConfig::default(),
            quantizer: QuantizerConfig::default(),
            ids: IdsConfig::default(),
            embed: EmbedConfig::default(),
            vocab: VocabConfig::default(),
            collab: CollabConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// Column holding the item identifier (Utf8/LargeUtf8/Utf8View or Int64/Int32).
    pub id_column: String,
    /// Column holding precomputed vectors (FixedSizeList or List of Float32/Float64).
    pub embedding_column: String,
    /// Rows per record batch when streaming Parquet.
    pub batch_rows: usize,
    /// `interactions.parquet` (user_id, item_id, optional timestamp): co-occurrence pairs for
    /// the contrastive alignment (RQ-VAE, GenSAR), and in `build --method gensar` the source of
    /// the collaborative vectors when no others are given.
    pub interactions: Option<std::path::PathBuf>,
    /// GenSAR's collaborative vectors: a Parquet file with the id column and
    /// `[collab] column` (what `sidtool collab` writes). Unset: the input's own column of that
    /// name, else (in `build`) computed from `interactions`.
    pub collab: Option<std::path::PathBuf>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            id_column: "item_id".into(),
            embedding_column: "embedding".into(),
            batch_rows: DEFAULT_BATCH_ROWS,
            interactions: None,
            collab: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizerConfig {
    pub method: Method,
    /// K_l per level; may shrink with depth (PLUM's multi-resolution codebooks).
    pub codebook_sizes: Vec<usize>,
    /// Train on a seeded random sample of at most this many rows (0 = all rows).
    pub train_sample: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub balanced: bool,
    /// RQ-VAE training (`method = "rq-vae"`; GenSAR trains with the same settings).
    pub rqvae: RqVaeConfig,
    /// GenSAR's level split (`method = "gensar"`).
    pub gensar: GensarConfig,
}

/// GenSAR (METHODS.md §5): codebook levels shared by both IDs, then levels of the semantic ID
/// and of the collaborative ID. `codebook_sizes` lists K for all of them in that order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GensarConfig {
    pub shared_levels: usize,
    pub semantic_levels: usize,
    pub collab_levels: usize,
}

impl Default for GensarConfig {
    fn default() -> Self {
        GensarConfig {
            shared_levels: 2,
            semantic_levels: 2,
            collab_levels: 2,
        }
    }
}

impl GensarConfig {
    pub fn levels(&self) -> usize {
        self.shared_levels + self.semantic_levels + self.collab_levels
    }
}

impl QuantizerConfig {
    /// For GenSAR, a single size (`--codebook-sizes 256`), or the untouched default
    /// 256,256,256, stands for that size at every level; other lists are kept as they are (and
    /// must then name every level). Other methods keep the list as is.
    pub fn broadcast_sizes(&mut self) {
        if self.broadcastable() {
            self.codebook_sizes = vec![self.codebook_sizes[0]; self.gensar.levels()];
        }
    }

    fn broadcastable(&self) -> bool {
        let s = &self.codebook_sizes;
        self.method == Method::Gensar
            && s.len() != self.gensar.levels()
            && (s.len() == 1 || s[..] == DEFAULT_CODEBOOK_SIZES)
    }
}

/// How training picks the prefix each example reconstructs from (PLUM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[derive(clap::ValueEnum)]
pub enum PrefixMasking {
    /// Always all L levels.
    #[default]
    None,
    /// Per example, m uniform in 1..=L (all L with probability `full_prefix_prob`).
    Uniform,
}

/// RQ-VAE (TIGER) architecture and training; METHODS.md §3–4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RqVaeConfig {
    /// Encoder hidden widths (the decoder mirrors them).
    pub hidden: Vec<usize>,
    pub latent_dim: usize,
    /// Maximum epochs; training stops earlier when the loss plateaus.
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Commitment weight β.
    pub beta: f64,
    /// Linear learning-rate warm-up, in optimiser steps.
    pub warmup_steps: usize,
    /// Cosine decay of the learning rate to a tenth over the maximum epochs.
    pub cosine_decay: bool,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
    /// Evaluate (and keep the best checkpoint) every this many epochs.
    pub eval_every: usize,
    /// Stop after this many evaluations without a better reconstruction error.
    pub patience: usize,
    pub prefix_masking: PrefixMasking,
    /// With uniform masking: probability that an example uses all L levels anyway.
    pub full_prefix_prob: f64,
    /// λ of the co-occurrence contrastive loss (used when interactions are given).
    pub contrastive_weight: f64,
    /// τ of the InfoNCE softmax over cosine similarities.
    pub temperature: f64,
    /// Items within this many positions of each other in a history form a pair.
    pub window: usize,
    /// Keep at most this many pairs per item (0 = all).
    pub max_pairs_per_item: usize,
}

impl Default for RqVaeConfig {
    fn default() -> Self {
        RqVaeConfig {
            hidden: vec![512, 256, 128],
            latent_dim: 32,
            epochs: 200,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 1024,
            beta: 0.25,
            warmup_steps: 100,
            cosine_decay: true,
            grad_clip: 1.0,
            eval_every: 5,
            patience: 10,
            prefix_masking: PrefixMasking::None,
            full_prefix_prob: 0.0,
            contrastive_weight: 0.1,
            temperature: 0.07,
            window: 5,
            max_pairs_per_item: 0,
        }
    }
}

impl Default for QuantizerConfig {
    fn default() -> Self {
        QuantizerConfig {
            method: Method::RqKmeans,
            codebook_sizes: DEFAULT_CODEBOOK_SIZES.to_vec(),
            train_sample: DEFAULT_TRAIN_SAMPLE,
            max_iter: crate::quant::kmeans::DEFAULT_MAX_ITER,
            tol: crate::quant::kmeans::DEFAULT_TOL,
            balanced: false,
            rqvae: RqVaeConfig::default(),
            gensar: GensarConfig::default(),
        }
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
            token_format: crate::ids::tokens::DEFAULT_TOKEN_FORMAT.into(),
            sid_prefix: "s".into(),
            cid_prefix: "u".into(),
        }
    }
}

/// The embedding stage (`sidtool embed`, and `build` on items without vectors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// A hub id (resolved through the Hugging Face cache) or a local model directory.
    pub model: String,
    /// Hub revision: branch, tag or 40-hex commit.
    pub revision: String,
    /// `last`, `mean` or `cls`; unset = the model's own (sentence-transformers config, else
    /// `last` for Qwen3 and `mean` for BERT).
    pub pooling: Option<Pooling>,
    /// Matryoshka truncation to the first `dim` components (then re-normalised).
    pub dim: Option<usize>,
    /// Item text template over item columns; unset = METHODS.md §1 default.
    pub template: Option<String>,
    /// Qwen3-Embedding query instruction: text becomes `Instruct: {instruction}\nQuery:{text}`.
    pub instruction: Option<String>,
    /// Tokens per text, counting the appended end token.
    pub max_length: usize,
    /// Padded tokens per forward batch (batch rows × longest row).
    pub batch_tokens: usize,
    pub device: DeviceKind,
    /// Unset = f32 on CPU, bf16 on a GPU.
    pub dtype: Option<EmbedDType>,
    /// Items per resumable unit (one part of the temporary output).
    pub window_rows: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            model: crate::embed::DEFAULT_MODEL.into(),
            revision: "main".into(),
            pooling: None,
            dim: None,
            template: None,
            instruction: None,
            max_length: crate::embed::DEFAULT_MAX_LENGTH,
            batch_tokens: crate::embed::DEFAULT_BATCH_TOKENS,
            device: DeviceKind::Cpu,
            dtype: None,
            window_rows: crate::embed::DEFAULT_WINDOW_ROWS,
        }
    }
}

impl Config {
    /// Read a TOML config file; unknown keys are errors so typos do not pass silently.
    pub fn from_toml_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Check everything that can be checked without reading data.
    pub fn validate(&self) -> Result<()> {
        let q = &self.quantizer;
        if q.codebook_sizes.is_empty() {
            return Err(Error::Config(
                "codebook_sizes needs at least one level".into(),
            ));
        }
        for (l, &k) in q.codebook_sizes.iter().enumerate() {
            if k == 0 {
                return Err(Error::Config(format!(
                    "codebook size of level {} is 0",
                    l + 1
                )));
            }
            if k > MAX_CODEBOOK_SIZE {
                return Err(Error::Config(format!(
                    "codebook size {k} at level {} exceeds {MAX_CODEBOOK_SIZE}: codes are stored as UInt16",
                    l + 1
                )));
            }
        }
        let v = &q.rqvae;
        if v.latent_dim == 0 || v.batch_size == 0 || v.epochs == 0 || v.eval_every == 0 {
            return Err(Error::Config(
                "rqvae latent_dim, batch_size, epochs and eval_every must be ≥ 1".into(),
            ));
        }
        if v.temperature.is_nan()
            || v.temperature <= 0.0
            || v.contrastive_weight < 0.0
            || v.window == 0
        {
            return Err(Error::Config(
                "rqvae temperature must be > 0, contrastive_weight ≥ 0 and window ≥ 1".into(),
            ));
        }
        if v.hidden.contains(&0) {
            return Err(Error::Config("rqvae hidden widths must be ≥ 1".into()));
        }
        if v.lr.is_nan()
            || v.lr <= 0.0
            || !(0.0..=1.0).contains(&v.full_prefix_prob)
            || v.beta < 0.0
        {
            return Err(Error::Config(
                "rqvae lr must be > 0, beta ≥ 0 and full_prefix_prob in [0, 1]".into(),
            ));
        }
        if q.method == Method::Gensar {
            let g = &q.gensar;
            if g.semantic_levels == 0 || g.collab_levels == 0 {
                return Err(Error::Config(
                    "gensar needs semantic_levels ≥ 1 and collab_levels ≥ 1".into(),
                ));
            }
            if q.codebook_sizes.len() != g.levels() && !q.broadcastable() {
                return Err(Error::Config(format!(
                    "gensar has {} shared + {} semantic + {} collaborative levels, so codebook_sizes needs {} sizes (or one size for every level), not {}",
                    g.shared_levels,
                    g.semantic_levels,
                    g.collab_levels,
                    g.levels(),
                    q.codebook_sizes.len()
                )));
            }
        }
        if q.tol.is_nan() || q.tol < 0.0 {
            return Err(Error::Config(format!("tol must be ≥ 0, got {}", q.tol)));
        }
        if self.input.batch_rows == 0 {
            return Err(Error::Config("batch_rows must be ≥ 1".into()));
        }
        let e = &self.embed;
        if e.max_length < 2 {
            return Err(Error::Config(format!(
                "max_length must be ≥ 2 (one text token plus the end token), got {}",
                e.max_length
            )));
        }
        if e.batch_tokens == 0 || e.window_rows == 0 {
            return Err(Error::Config(
                "batch_tokens and window_rows must be ≥ 1".into(),
            ));
        }
        if e.dim == Some(0) {
            return Err(Error::Config("dim must be ≥ 1".into()));
        }
        if let Some(t) = &e.template {
            crate::embed::template::Template::parse(t)?;
        }
        if self.ids.sid_prefix == self.ids.cid_prefix {
            return Err(Error::Config(format!(
                "sid_prefix and cid_prefix are both {:?}: SID and CID tokens would clash",
                self.ids.sid_prefix
            )));
        }
        self.collab.validate()?;
        let fmt = TokenFormat::new(&self.ids.token_format)?;
        // The suffix level (when used) takes one more letter.
        fmt.check_levels(q.codebook_sizes.len() + 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c: Config = toml::from_str(
            "seed = 7\n[quantizer]\ncodebook_sizes = [1024, 512, 256]\nbalanced = true\n[ids]\ndedup = \"reassign\"\n[collab]\ndim = 32\n",
        )
        .unwrap();
        assert_eq!(c.collab.dim, 32);
        assert_eq!(c.collab.window, 5, "unset keys keep their defaults");
        assert!(toml::from_str::<Config>("[collab]\ndims = 3\n").is_err());
        assert_eq!(c.seed, 7);
        assert_eq!(c.quantizer.codebook_sizes, vec![1024, 512, 256]);
        assert_eq!(c.ids.dedup, Dedup::Reassign);
        assert_eq!(c.input.id_column, "item_id");
        assert!(toml::from_str::<Config>("[quantizer]\ncodebok_sizes = [2]\n").is_err());
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validation_rejects_oversized_codebooks() {
        let mut c = Config::default();
        c.quantizer.codebook_sizes = vec![70_000];
        assert!(c.validate().unwrap_err().to_string().contains("UInt16"));
    }

    #[test]
    fn validation_rejects_unusable_collab_settings() {
        let mut c = Config::default();
        c.collab.dim = 0;
        assert!(c.validate().unwrap_err().to_string().contains("dim"));
        let mut c = Config::default();
        c.collab.column = "item_id".into();
        assert!(c.validate().unwrap_err().to_string().contains("column"));
        Config::default().validate().unwrap();
    }
}
