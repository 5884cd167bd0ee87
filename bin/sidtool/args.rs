//! The command line's shape: every subcommand and flag. The flag groups (`*Args`) also derive
//! `Serialize`, named like the config file's keys, so that `overlay` can lay the flags that were
//! given over the config (a `None` flag serializes to nothing and leaves the file's value).

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use sidtool::config::{Dedup, Method, PrefixMasking};
use sidtool::embed::Pooling;
use sidtool::embed::{DeviceKind, EmbedDType};
use sidtool::vocab::extend::TokenSet;
use std::path::PathBuf;

/// Most worker threads `--threads` accepts: far above any machine's cores, and low enough that
/// a mistyped count fails at once instead of spawning threads until the process hangs.
const MAX_THREADS: u64 = 1024;

/// The help heading of the flags every subcommand takes, listed apart from its own.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "sidtool",
    version,
    // Every subcommand's `--version` and manual page carry the version too.
    propagate_version = true,
    about = "Turn an item catalogue into semantic IDs (SIDs)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// TOML config file; command-line flags override its values.
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Random seed: the same input, config and seed give identical IDs.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub seed: Option<u64>,
    /// Print errors only.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// More detail (-v: per-level training info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Worker threads (default: all cores).
    #[arg(long, global = true, help_heading = GLOBAL,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS))]
    pub threads: Option<usize>,
}

/// `[input]`.
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Input")]
pub struct InputArgs {
    /// Column with the item identifier [default: item_id].
    #[arg(long)]
    id_column: Option<String>,
    /// Column with precomputed vectors [default: embedding].
    #[arg(long)]
    embedding_column: Option<String>,
}

/// Where a GenSAR model's collaborative vectors come from (`train`, `assign`, `stats`):
/// `[collab]`, and `--collab` for `[input] collab` (see `overlay`).
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Collaborative")]
pub struct CollabInputArgs {
    /// GenSAR: collaborative vectors, item_id + a vector column (the collab.parquet a GenSAR
    /// build wrote, `sidtool collab`'s output, or e.g. SASRec item vectors) [default: the
    /// input's own collab_embedding column].
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub collab: Option<PathBuf>,
    /// GenSAR: name of the collaborative vector column [default: collab_embedding].
    #[arg(long, value_name = "NAME")]
    #[serde(rename = "column")]
    collab_column: Option<String>,
}

/// `[quantizer]`, with its `rqvae` and `gensar` subsections as flattened groups.
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Quantizer")]
pub struct QuantArgs {
    /// Quantization method [default: rq-kmeans].
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Codes per level, comma-separated, e.g. 256,256,256 or 1024,512,256 [default: 256,256,256].
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    codebook_sizes: Option<Vec<usize>>,
    /// Train on a seeded sample of at most N rows; 0 = all [default: 1000000].
    #[arg(long, value_name = "N")]
    train_sample: Option<usize>,
    /// Maximum Lloyd iterations per level [default: 50].
    #[arg(long)]
    max_iter: Option<usize>,
    /// Stop when inertia changes by less than this fraction [default: 1e-4].
    #[arg(long)]
    tol: Option<f64>,
    /// Balanced k-means: every cluster gets ⌊N/K⌋ or ⌈N/K⌉ training points; the default, as
    /// docs/quality.md chose it (`--balanced=false`: plain k-means) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    balanced: Option<bool>,
    #[command(flatten)]
    pub rqvae: RqVaeArgs,
    #[command(flatten)]
    gensar: GensarArgs,
}

/// `[quantizer.rqvae]`.
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "RQ-VAE")]
pub struct RqVaeArgs {
    /// RQ-VAE: latent dimension [default: 32].
    #[arg(long)]
    latent_dim: Option<usize>,
    /// RQ-VAE: encoder hidden widths, comma-separated; the decoder mirrors them [default: 512,256,128].
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    hidden: Option<Vec<usize>>,
    /// RQ-VAE: maximum epochs (training stops earlier on a plateau) [default: 200].
    #[arg(long)]
    epochs: Option<usize>,
    /// RQ-VAE: AdamW learning rate [default: 1e-3].
    #[arg(long)]
    lr: Option<f64>,
    /// RQ-VAE: AdamW weight decay [default: 1e-4].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// RQ-VAE: clip the global gradient norm to this; 0 = off [default: 1.0].
    #[arg(long)]
    grad_clip: Option<f64>,
    /// RQ-VAE: examples per optimiser step [default: 1024].
    #[arg(long)]
    batch_size: Option<usize>,
    /// RQ-VAE: commitment weight β [default: 0.25].
    #[arg(long)]
    beta: Option<f64>,
    /// RQ-VAE: reconstruct each example from a random prefix of its codes (PLUM) [default: none].
    #[arg(long, value_enum)]
    prefix_masking: Option<PrefixMasking>,
    /// Interactions Parquet (user_id, item_id, optional timestamp). RQ-VAE and GenSAR: items
    /// that co-occur in a history are pulled together by a contrastive loss (PLUM). `build
    /// --method gensar`: also the source of the collaborative vectors (PPMI + randomized SVD).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub interactions: Option<PathBuf>,
    /// RQ-VAE: weight λ of the contrastive loss [default: 0.1].
    #[arg(long)]
    contrastive_weight: Option<f64>,
    /// RQ-VAE: temperature τ of the contrastive loss [default: 0.07].
    #[arg(long)]
    temperature: Option<f64>,
    /// RQ-VAE: items within this many positions in a history form a pair [default: 5].
    #[arg(long)]
    window: Option<usize>,
}

/// `[quantizer.gensar]`.
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "GenSAR")]
pub struct GensarArgs {
    /// GenSAR: levels shared by the SID and the CID [default: 2].
    #[arg(long)]
    shared_levels: Option<usize>,
    /// GenSAR: levels of the semantic ID after the shared ones [default: 2].
    #[arg(long)]
    semantic_levels: Option<usize>,
    /// GenSAR: levels of the collaborative ID after the shared ones [default: 2].
    #[arg(long)]
    collab_levels: Option<usize>,
}

/// `[ids]`.
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "IDs")]
pub struct IdArgs {
    /// Collision resolution [default: suffix; with --existing, that table's].
    #[arg(long, value_enum)]
    pub dedup: Option<Dedup>,
    /// Token pattern with {level} and {code} [default: "<{level}_{code}>"].
    #[arg(long)]
    pub token_format: Option<String>,
}

/// `[embed]`.
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Embedding")]
pub struct EmbedArgs {
    /// Hub id (via the Hugging Face cache; HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE apply) or
    /// a local model directory [default: Qwen/Qwen3-Embedding-0.6B].
    #[arg(long, value_name = "ID_OR_DIR")]
    model: Option<String>,
    /// Hub revision: branch, tag or commit [default: main].
    #[arg(long)]
    revision: Option<String>,
    /// last, mean or cls [default: the model's own; last for Qwen3].
    #[arg(long)]
    pooling: Option<Pooling>,
    /// Matryoshka: keep the first D dimensions, then re-normalise [default: all].
    #[arg(long, value_name = "D")]
    dim: Option<usize>,
    /// Item text from columns, e.g. "{title} ({year}). Genres: {genres}"; null fields drop out
    /// with their label [default: "Title: {title}; Category: {category}; Description: {description}"].
    #[arg(long)]
    template: Option<String>,
    /// Query instruction: text becomes "Instruct: {instruction}\nQuery:{text}".
    #[arg(long)]
    instruction: Option<String>,
    /// Tokens per text, counting the appended end token [default: 512].
    #[arg(long)]
    max_length: Option<usize>,
    /// Padded tokens per forward batch [default: 4096 on the CPU, 65536 on a GPU].
    #[arg(long)]
    batch_tokens: Option<usize>,
    /// f32, f16 or bf16 [default: f32 on CPU, bf16 on a GPU].
    #[arg(long)]
    dtype: Option<EmbedDType>,
    /// Items per resumable part [default: 8192].
    #[arg(long, value_name = "N")]
    window_rows: Option<usize>,
}

/// `--device`: one switch for every heavy stage a command runs (`[embed] device`,
/// `[quantizer] device`, `[collab] device`; see `overlay`).
#[derive(Args, Default)]
#[command(next_help_heading = "Device")]
pub struct DeviceArgs {
    /// cpu, cuda or metal: where embedding, quantizer training/encoding and the collaborative
    /// SVD run (cuda/metal need a binary built with that feature) [default: cpu].
    #[arg(long)]
    pub device: Option<DeviceKind>,
}

/// Tier 2 of `eval`: a small generative recommender trained on each table's IDs.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Tier 2: a small generative recommender")]
pub struct T2Args {
    /// Also train a small decoder-only transformer on the IDs and score its constrained beam
    /// search (tier 2; needs --interactions; minutes on a CPU).
    #[arg(long, requires = "interactions")]
    pub t2: bool,
    /// Tier 2's budget: passes over the training windows.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "t2")]
    pub t2_epochs: usize,
    /// Tier 2's budget in optimiser steps instead of epochs.
    #[arg(long, value_name = "N", requires = "t2")]
    pub t2_steps: Option<usize>,
    /// Tier 2's hidden size (a multiple of --t2-heads).
    #[arg(long, value_name = "N", default_value_t = 128, requires = "t2")]
    pub t2_dim: usize,
    /// Tier 2's transformer layers.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "t2")]
    pub t2_layers: usize,
    /// Tier 2's attention heads.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "t2")]
    pub t2_heads: usize,
    /// Items of history each prediction sees (the most recent).
    #[arg(long, value_name = "N", default_value_t = 20, requires = "t2")]
    pub t2_max_history: usize,
    /// Training windows per step.
    #[arg(long, value_name = "N", default_value_t = 64, requires = "t2")]
    pub t2_batch_size: usize,
    /// Peak learning rate (linear warm-up, linear decay to zero).
    #[arg(long, value_name = "LR", default_value_t = 2e-3, requires = "t2")]
    pub t2_lr: f64,
    /// Beam width of the constrained decoding (at least 10).
    #[arg(long, value_name = "N", default_value_t = 20, requires = "t2")]
    pub t2_beam: usize,
    /// Where tier 2 runs: cpu, or cuda with a binary built with `--features cuda`.
    #[arg(long, default_value = "cpu", requires = "t2")]
    pub device: DeviceKind,
}

impl T2Args {
    /// The library's configuration, or None without --t2.
    pub fn config(&self) -> Option<sidtool::eval::t2::Config> {
        self.t2.then_some(sidtool::eval::t2::Config {
            dim: self.t2_dim,
            layers: self.t2_layers,
            heads: self.t2_heads,
            max_history: self.t2_max_history,
            epochs: self.t2_epochs,
            steps: self.t2_steps,
            batch_size: self.t2_batch_size,
            lr: self.t2_lr,
            beam: self.t2_beam,
            device: self.device,
        })
    }
}

/// `[vocab]`; `--llm` is set on the typed config (see `overlay`).
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Vocabulary")]
pub struct VocabArgs {
    /// The LLM that will learn the SIDs: a hub id (through the HF cache, e.g. Qwen/Qwen3-0.6B),
    /// its model or tokenizer directory, or a bare tokenizer.json. Its tokenizer folder is
    /// written with the SID tokens added (build: no vocabulary artefacts without it).
    #[arg(long, visible_alias = "tokenizer", value_name = "ID_OR_DIR")]
    #[serde(skip)]
    pub llm: Option<PathBuf>,
    /// Hub revision of --llm: branch, tag or commit [default: main].
    #[arg(long, value_name = "REV")]
    llm_revision: Option<String>,
    /// Id order of the new tokens: level-major (sidtool's), sorted (by string, as MiniOneRec,
    /// LC-Rec and LETTER add them), or a FILE whose order to reproduce (.index.json,
    /// sid_tokens.json, a JSON list, or one token per line) [default: level-major].
    #[arg(long, value_name = "ORDER|FILE")]
    token_order: Option<String>,
    /// Also write sid_embeddings.safetensors: initial rows for the new tokens from the LLM's
    /// input embeddings (mean + covariance); needs its weights.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    init_embeddings: Option<bool>,
    /// all: every code of every level (ids independent of the catalogue); used: only codes in use [default: all].
    #[arg(long, value_enum)]
    tokens: Option<TokenSet>,
    /// Add the SID tokens as special tokens.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    special: Option<bool>,
    /// Begin/end markers added after the SID tokens, e.g. "<|sid_begin|>,<|sid_end|>".
    #[arg(long, value_delimiter = ',')]
    markers: Option<Vec<String>>,
    /// Round the vocabulary up to this multiple when the embedding matrix must grow [default: 64].
    #[arg(long, value_name = "N")]
    pad_to_multiple: Option<usize>,
    /// Accept a table in which items share an ID (`--dedup none`): the trie's leaves then list
    /// every item of the ID (refused by default).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    allow_duplicates: Option<bool>,
}

/// `sidtool collab`'s `[collab]`; `--id-column` is `[input] id_column` (see `overlay`).
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Collaborative")]
pub struct CollabArgs {
    /// Dimensions of the collaborative vectors [default: 64].
    #[arg(long, value_name = "D")]
    #[serde(rename = "dim")]
    collab_dim: Option<usize>,
    /// Items at most this many positions apart in a history co-occur [default: 5].
    #[arg(long)]
    window: Option<usize>,
    /// Randomized SVD: power iterations [default: 2].
    #[arg(long)]
    power_iterations: Option<usize>,
    /// Randomized SVD: extra sketch columns [default: 10].
    #[arg(long)]
    oversample: Option<usize>,
    /// Name of the output's vector column [default: collab_embedding].
    #[arg(long, value_name = "NAME")]
    #[serde(rename = "column")]
    collab_column: Option<String>,
    /// Item id column of the --items file [default: item_id].
    #[arg(long)]
    #[serde(skip)]
    pub id_column: Option<String>,
}

/// `build`'s share of the collab stage (GenSAR from interactions); `--window` there is the
/// contrastive pairs' window, so the co-occurrence window is `--collab-window`. `[collab]`,
/// and `--collab` for `[input] collab` (see `overlay`).
#[derive(Args, Default, Serialize)]
#[command(next_help_heading = "Collaborative")]
pub struct BuildCollabArgs {
    /// GenSAR: collaborative vectors, item_id + a vector column (e.g. SASRec item vectors)
    /// [default: the items' own collab_embedding column, else computed from --interactions].
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub collab: Option<PathBuf>,
    /// GenSAR from interactions: dimensions of the collaborative vectors [default: 64].
    #[arg(long, value_name = "D")]
    #[serde(rename = "dim")]
    collab_dim: Option<usize>,
    /// GenSAR from interactions: co-occurrence window of the PPMI counts [default: 5].
    #[arg(long, value_name = "W")]
    #[serde(rename = "window")]
    collab_window: Option<usize>,
    /// GenSAR from interactions: randomized SVD power iterations [default: 2].
    #[arg(long)]
    power_iterations: Option<usize>,
    /// GenSAR from interactions: randomized SVD extra sketch columns [default: 10].
    #[arg(long)]
    oversample: Option<usize>,
    /// GenSAR: name of the collaborative vector column [default: collab_embedding].
    #[arg(long, value_name = "NAME")]
    #[serde(rename = "column")]
    collab_column: Option<String>,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Cmd {
    /// Catalogue → embeddings (when it has no vector column), quantizer, SIDs, statistics.
    Build {
        /// Items Parquet file (or a directory of part files, or a glob): an id column and text
        /// columns or a vector column (see schemas/items.md).
        items: PathBuf,
        /// Output directory (created if needed; sidtool's files in it are replaced).
        #[arg(long, default_value = "sidtool-out", help_heading = "Output")]
        out: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        embed: EmbedArgs,
        #[command(flatten)]
        quant: QuantArgs,
        #[command(flatten)]
        ids: IdArgs,
        #[command(flatten)]
        vocab: VocabArgs,
        #[command(flatten)]
        collab: BuildCollabArgs,
        #[command(flatten)]
        device: DeviceArgs,
        /// Also write report.html (the charts of `sidtool report`) into the output.
        #[arg(long, help_heading = "Output")]
        report: bool,
    },
    /// The LLM's tokenizer folder with the SID tokens added, the embedding-size advice, and the
    /// constrained-decoding trie. Requires --llm (or `[vocab] llm` in the --config file).
    Vocab {
        /// A sids.parquet written by `build` or `assign`.
        #[arg(long)]
        sids: PathBuf,
        /// Output directory: tokenizer.json, tokenizer_config.json, special_tokens_map.json,
        /// sid_tokens.json, trie.parquet, trie.json (AutoTokenizer.from_pretrained loads it).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        vocab: VocabArgs,
    },
    /// Final IDs for other stacks: the .index.json of MiniOneRec, LC-Rec and LETTER, or a
    /// NumPy codes matrix with its item ids for TIGER/GRID-style trainers.
    Export {
        /// A sids.parquet written by `build`, `assign` or `resolve`.
        sids: PathBuf,
        /// index-json (aliases: minionerec, lc-rec, letter) or codes-npy.
        #[arg(long, value_enum)]
        format: sidtool::export::Format,
        /// index-json: the file to write (`-`: stdout); codes-npy: a directory for codes.npy
        /// and item_ids.json.
        #[arg(long)]
        out: PathBuf,
        /// GenSAR tables: export the CIDs instead of the SIDs.
        #[arg(long)]
        cid: bool,
    },
    /// Item text → embeddings.parquet with a Qwen3-Embedding (or BERT-family) model.
    Embed {
        /// Items Parquet file (or a directory of part files, or a glob): an id column and the
        /// text columns the template reads.
        items: PathBuf,
        /// Output embeddings.parquet.
        #[arg(long)]
        out: PathBuf,
        /// Continue an interrupted run with the same input and settings, skipping the items
        /// its finished parts hold.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        embed: EmbedArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Train a quantizer on an embeddings table.
    Train {
        /// Parquet file with an id column and a vector column (or a directory of part files,
        /// or a glob).
        embeddings: PathBuf,
        /// Directory for config.json + model.safetensors.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        quant: QuantArgs,
        #[command(flatten)]
        collab: CollabInputArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Encode every row with a trained quantizer and write unique SIDs.
    Assign {
        /// Parquet file with an id column and a vector column (or a directory of part files,
        /// or a glob).
        embeddings: PathBuf,
        /// Quantizer directory written by `train` (or `quantizer/` in a build's output).
        #[arg(long)]
        quantizer: PathBuf,
        /// Output sids.parquet.
        #[arg(long)]
        out: PathBuf,
        /// Also write statistics as JSON here.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// IDs handed out earlier (a sids.parquet from the same quantizer): those items keep
        /// their IDs, new items get IDs none of them holds; --dedup and --token-format default
        /// to the ones that table was made with.
        #[arg(long, value_name = "SIDS")]
        existing: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        ids: IdArgs,
        #[command(flatten)]
        collab: CollabInputArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Global collision resolution over raw codes from many workers: the parts of `assign
    /// --dedup none` runs over partitions, resolved as `assign` resolves the whole catalogue.
    Resolve {
        /// Raw-code tables (`assign --dedup none` outputs), directories of them as Spark and
        /// Hive write part files, or globs; concatenated in the order given (parts: by name).
        #[arg(required = true, value_name = "PARTS")]
        parts: Vec<PathBuf>,
        /// Output sids.parquet.
        #[arg(long)]
        out: PathBuf,
        /// Also write statistics as JSON here.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// suffix, reassign (needs --embeddings and --quantizer) or none [default: suffix].
        #[arg(long, value_enum, default_value = "suffix")]
        dedup: Dedup,
        /// IDs handed out earlier (a sids.parquet from the same quantizer and --dedup): those
        /// items keep their IDs, new items get IDs none of them holds, as `assign --existing`.
        #[arg(long, value_name = "SIDS")]
        existing: Option<PathBuf>,
        /// The quantizer that coded the parts: needed for parts without sidtool's footer (Spark
        /// and Ray rewrite the encoded batches without it; the token format is the config's
        /// `[ids] token_format`), and checked against the parts that have one.
        #[arg(long, value_name = "DIR")]
        quantizer: Option<PathBuf>,
        /// --dedup reassign: the vectors the parts were coded from (any file, directory or glob
        /// holding every item; only the colliding items' rows are kept in memory). Its columns
        /// are --id-column and --embedding-column (the parts' are always item_id and codes).
        #[arg(long, value_name = "FILE", requires = "quantizer")]
        embeddings: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        collab: CollabInputArgs,
    },
    /// Collision and codebook statistics of a sids.parquet.
    Stats {
        /// A sids.parquet written by `build` or `assign`.
        sids: PathBuf,
        /// Write the statistics as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The items' vectors: with --quantizer, adds the reconstruction error per prefix length.
        #[arg(long, requires = "quantizer")]
        embeddings: Option<PathBuf>,
        /// The quantizer that made the codes (with --embeddings).
        #[arg(long, requires = "embeddings")]
        quantizer: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        collab: CollabInputArgs,
    },
    /// RecBole atomic files (<name>.item, <name>.inter) → items.parquet + interactions.parquet.
    ImportRecbole {
        /// Directory holding the dataset's atomic files, e.g. test-assets/ml-1m.
        dir: PathBuf,
        /// Output directory (created if needed) for items.parquet and interactions.parquet.
        #[arg(long)]
        out: PathBuf,
        /// Dataset name: reads NAME.inter and, when present, NAME.item [default: the stem of
        /// the directory's only *.inter file].
        #[arg(long)]
        name: Option<String>,
    },
    /// Collaborative item vectors from interactions: co-occurrence → PPMI → randomized SVD.
    Collab {
        /// Interactions Parquet file: user_id, item_id, optional timestamp (see
        /// schemas/interactions.md).
        interactions: PathBuf,
        /// The catalogue: any Parquet file with the item id column (items, embeddings, sids);
        /// every item gets a row, in this file's order.
        #[arg(long, value_name = "ITEMS")]
        items: PathBuf,
        /// Output collab.parquet (see schemas/collab.md).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        collab: CollabArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// How good are these IDs for a generative recommender? Training-free measures of the
    /// codes and, with --interactions, leave-one-out next-item Recall/NDCG of a count model
    /// and, with --t2, of a small transformer trained on the IDs (docs/methods.md §9).
    Eval {
        /// Code tables to score side by side: sids.parquet files, or any Parquet table with an
        /// id column and a list-of-integers codes column (other tools' IDs too).
        #[arg(required = true, value_name = "SIDS")]
        tables: Vec<PathBuf>,
        /// Interactions (user_id, item_id, optional timestamp): co-consumption lift and the
        /// next-item figures.
        #[arg(long, value_name = "FILE")]
        interactions: Option<PathBuf>,
        /// A catalogue with --category-column: category lift by prefix length.
        #[arg(long, value_name = "FILE", requires = "category_column")]
        items: Option<PathBuf>,
        /// The category column of --items (its whole value is the category).
        #[arg(long, value_name = "NAME", requires = "items")]
        category_column: Option<String>,
        /// Item vectors (embeddings.parquet): how many embedding neighbours share a prefix.
        #[arg(long, value_name = "FILE")]
        embeddings: Option<PathBuf>,
        /// Item id column of every file.
        #[arg(long, default_value = "item_id")]
        id_column: String,
        /// Codes column of the tables.
        #[arg(long, default_value = "codes")]
        codes_column: String,
        /// Vector column of --embeddings.
        #[arg(long, default_value = "embedding")]
        embedding_column: String,
        /// Training-free measures only, even with --interactions.
        #[arg(long)]
        no_next_item: bool,
        /// Cold start: hold this share of the items (drawn by --seed from their ids) out of the
        /// next-item tiers' training as new items, and rank each user's last new item among the
        /// new items from the warm items before it.
        #[arg(long, value_name = "SHARE", requires = "interactions")]
        cold_items: Option<f64>,
        #[command(flatten)]
        t2: T2Args,
        /// Also write every table's figures as JSON here (eval.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The interactions without the items `eval --cold-items SHARE` holds out as new (the same
    /// SHARE and --seed): build a tokenizer that learns from interactions from this file, then
    /// score it on the new items with `eval --cold-items` and the full interactions.
    Holdout {
        /// Interactions (user_id, item_id, any other columns, which are kept).
        interactions: PathBuf,
        /// The share of items drawn as new, as given to `eval --cold-items`.
        #[arg(long, value_name = "SHARE")]
        cold_items: f64,
        /// The Parquet file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// One self-contained HTML page of charts for one or more build outputs, side by side:
    /// code usage, collision groups, prefix fan-out, reconstruction error, training curves,
    /// and the eval figures of an eval.json beside them.
    Report {
        /// Output directories of `sidtool build` (each with stats.json).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The HTML file to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
    },
    /// Schema, row count and sample rows of any sidtool input or output.
    Inspect {
        /// A Parquet file (or a directory of part files, or a glob), a JSON file, or a
        /// quantizer directory.
        file: PathBuf,
        /// Sample rows to show.
        #[arg(long, default_value_t = crate::inspect::SAMPLE_ROWS)]
        rows: usize,
    },
    /// Shell completion script on stdout, e.g. `sidtool completions bash >
    /// ~/.local/share/bash-completion/completions/sidtool`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout, or with --out one page per subcommand into a directory.
    Man {
        /// Directory for sidtool.1 and sidtool-<subcommand>.1 (created if needed).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Performance figures (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// The benchmark data: a deterministic Gaussian mixture of unit rows as an embeddings
    /// table (item_id, embedding), made without Python.
    Gen {
        /// Rows.
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// Dimensions.
        #[arg(long, default_value_t = 1024)]
        d: usize,
        /// The embeddings Parquet file to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write the matrix as a NumPy .npy file (for scripts without pyarrow).
        #[arg(long, value_name = "FILE")]
        npy: Option<PathBuf>,
    },
    /// RQ-KMeans train/encode figures on a file made by `bench/rq_anchor.py gen`.
    Kmeans {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 3)]
        levels: usize,
        #[arg(long, default_value_t = 256)]
        k: usize,
        #[arg(long, default_value_t = 20)]
        niter: usize,
        /// Training rows per centroid (FAISS's default is 256).
        #[arg(long, default_value_t = 256)]
        max_points_per_centroid: usize,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Embedding throughput: N synthetic items of T tokens through --model.
    Embed {
        /// Number of items.
        #[arg(long, default_value_t = 32)]
        n: usize,
        /// Tokens per item, including the end token.
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        /// Untimed warm-up items.
        #[arg(long, default_value_t = 4)]
        warmup: usize,
        #[command(flatten)]
        embed: EmbedArgs,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Raw assignment-GEMM rate on random data.
    Gemm {
        #[arg(long, default_value_t = 65536)]
        rows: usize,
        #[arg(long, default_value_t = 256)]
        k: usize,
        #[arg(long, default_value_t = 1024)]
        d: usize,
    },
}

/// One entry of `--codebook-sizes 1024,512,256` (spaces after commas allowed).
fn parse_size(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|e| format!("{:?} is not a codebook size: {e}", s.trim()))
}
