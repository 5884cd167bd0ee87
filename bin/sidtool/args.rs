//! The `sidtool` command line: parses arguments, merges them over the config file, calls the
//! library, and reports. All real work lives in the library.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sidtool::config::{Config, Dedup, Method, PrefixMasking};
use sidtool::embed::Pooling;
use sidtool::embed::device::{DeviceKind, EmbedDType};
use sidtool::ids::stats::render;
use sidtool::pipeline::{self, Source};
use sidtool::progress::Progress;
use sidtool::vocab::extend::TokenSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "sidtool",
    version,
    about = "Turn an item catalogue into semantic IDs (SIDs)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// TOML config file; command-line flags override its values.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Random seed: the same input, config and seed give identical IDs.
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Print errors only.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail (-v: per-level training info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Args, Default)]
struct InputArgs {
    /// Column with the item identifier [default: item_id].
    #[arg(long)]
    id_column: Option<String>,
    /// Column with precomputed vectors [default: embedding].
    #[arg(long)]
    embedding_column: Option<String>,
}

/// Where a GenSAR model's collaborative vectors come from (`train`, `assign`, `stats`).
#[derive(Args, Default, Clone)]
struct CollabInputArgs {
    /// GenSAR: collaborative vectors, item_id + a vector column (the collab.parquet a GenSAR
    /// build wrote, `sidtool collab`'s output, or e.g. SASRec item vectors) [default: the
    /// input's own collab_embedding column].
    #[arg(long, value_name = "FILE")]
    collab: Option<PathBuf>,
    /// GenSAR: name of the collaborative vector column [default: collab_embedding].
    #[arg(long, value_name = "NAME")]
    collab_column: Option<String>,
}

impl CollabInputArgs {
    fn as_collab(&self) -> CollabArgs {
        CollabArgs {
            collab_column: self.collab_column.clone(),
            file: self.collab.clone(),
            ..CollabArgs::default()
        }
    }
}

#[derive(Args, Default)]
struct QuantArgs {
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
    /// Balanced k-means: every cluster gets ⌊N/K⌋ or ⌈N/K⌉ training points
    /// (`--balanced=false` turns off a config file's `balanced = true`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    balanced: Option<bool>,
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
    interactions: Option<PathBuf>,
    /// RQ-VAE: weight λ of the contrastive loss [default: 0.1].
    #[arg(long)]
    contrastive_weight: Option<f64>,
    /// RQ-VAE: temperature τ of the contrastive loss [default: 0.07].
    #[arg(long)]
    temperature: Option<f64>,
    /// RQ-VAE: items within this many positions in a history form a pair [default: 5].
    #[arg(long)]
    window: Option<usize>,
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

#[derive(Args, Default)]
struct IdArgs {
    /// Collision resolution [default: suffix; with --existing, that table's].
    #[arg(long, value_enum)]
    dedup: Option<Dedup>,
    /// Token pattern with {level} and {code} [default: "<{level}_{code}>"].
    #[arg(long)]
    token_format: Option<String>,
}

#[derive(Args, Default, Clone)]
struct EmbedArgs {
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
    /// Padded tokens per forward batch [default: 4096].
    #[arg(long)]
    batch_tokens: Option<usize>,
    /// cpu, cuda or metal [default: cpu].
    #[arg(long)]
    device: Option<DeviceKind>,
    /// f32, f16 or bf16 [default: f32 on CPU, bf16 on a GPU].
    #[arg(long)]
    dtype: Option<EmbedDType>,
    /// Items per resumable part [default: 8192].
    #[arg(long, value_name = "N")]
    window_rows: Option<usize>,
}

#[derive(Args, Default, Clone)]
struct VocabArgs {
    /// The LLM's Hugging Face tokenizer.json to extend (build: default the embedding model's
    /// own when it embedded text; without either, build writes no vocabulary artefacts).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// all: every code of every level (ids independent of the catalogue); used: only codes in use [default: all].
    #[arg(long, value_enum)]
    tokens: Option<TokenSet>,
    /// Add the SID tokens as special tokens.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    special: Option<bool>,
    /// Begin/end markers added after the SID tokens, e.g. "<|sid_begin|>,<|sid_end|>".
    #[arg(long, value_delimiter = ',')]
    markers: Option<Vec<String>>,
    /// Report the vocabulary size rounded up to this multiple [default: 64].
    #[arg(long, value_name = "N")]
    pad_to_multiple: Option<usize>,
}

#[derive(Args, Default, Clone)]
struct CollabArgs {
    /// Dimensions of the collaborative vectors [default: 64].
    #[arg(long, value_name = "D")]
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
    collab_column: Option<String>,
    /// Item id column of the --items file [default: item_id].
    #[arg(long)]
    id_column: Option<String>,
    /// `[input] collab` (set through `--collab` of the other commands).
    #[arg(skip)]
    file: Option<PathBuf>,
}

/// `build`'s share of the collab stage (GenSAR from interactions); `--window` there is the
/// contrastive pairs' window, so the co-occurrence window is `--collab-window`.
#[derive(Args, Default, Clone)]
struct BuildCollabArgs {
    /// GenSAR: collaborative vectors, item_id + a vector column (e.g. SASRec item vectors)
    /// [default: the items' own collab_embedding column, else computed from --interactions].
    #[arg(long, value_name = "FILE")]
    collab: Option<PathBuf>,
    /// GenSAR from interactions: dimensions of the collaborative vectors [default: 64].
    #[arg(long, value_name = "D")]
    collab_dim: Option<usize>,
    /// GenSAR from interactions: co-occurrence window of the PPMI counts [default: 5].
    #[arg(long, value_name = "W")]
    collab_window: Option<usize>,
    /// GenSAR from interactions: randomized SVD power iterations [default: 2].
    #[arg(long)]
    power_iterations: Option<usize>,
    /// GenSAR from interactions: randomized SVD extra sketch columns [default: 10].
    #[arg(long)]
    oversample: Option<usize>,
    /// GenSAR: name of the collaborative vector column [default: collab_embedding].
    #[arg(long, value_name = "NAME")]
    collab_column: Option<String>,
}

impl BuildCollabArgs {
    fn as_collab(&self) -> CollabArgs {
        CollabArgs {
            collab_dim: self.collab_dim,
            window: self.collab_window,
            power_iterations: self.power_iterations,
            oversample: self.oversample,
            collab_column: self.collab_column.clone(),
            id_column: None,
            file: self.collab.clone(),
        }
    }
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Catalogue → embeddings (when it has no vector column), quantizer, SIDs, statistics.
    Build {
        /// Items Parquet file: an id column and text columns or a vector column (see schemas/items.md).
        items: PathBuf,
        /// Output directory (created if needed; sidtool's files in it are replaced).
        #[arg(long, default_value = "sidtool-out")]
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
    },
    /// SID tokens into an LLM's tokenizer.json, plus the constrained-decoding trie.
    Vocab {
        /// A sids.parquet written by `build` or `assign`.
        #[arg(long)]
        sids: PathBuf,
        /// Output directory: tokenizer.json, sid_tokens.json, trie.parquet, trie.json.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        vocab: VocabArgs,
    },
    /// Item text → embeddings.parquet with a Qwen3-Embedding (or BERT-family) model.
    Embed {
        /// Items Parquet file: an id column and the text columns the template reads.
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
    },
    /// Train a quantizer on an embeddings table.
    Train {
        /// Parquet file with an id column and a vector column.
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
    },
    /// Encode every row with a trained quantizer and write unique SIDs.
    Assign {
        /// Parquet file with an id column and a vector column.
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
    },
    /// Schema, row count and sample rows of any sidtool input or output.
    Inspect {
        /// A Parquet file, a JSON file, or a quantizer directory.
        file: PathBuf,
        /// Sample rows to show.
        #[arg(long, default_value_t = sidtool::io::inspect::SAMPLE_ROWS)]
        rows: usize,
    },
    /// Performance figures (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
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

/// Progress as an indicatif bar on a terminal, plain lines otherwise, nothing when quiet.
struct Reporter {
    bars: bool,
    quiet: bool,
    state: Mutex<Option<(ProgressBar, String, Instant)>>,
}

impl Progress for Reporter {
    fn start(&self, stage: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let bar = if self.bars {
            let b = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{msg:32} [{bar:30}] {pos}/{len} {rate} eta {eta}",
                    )
                    .expect("valid template")
                    .with_key(
                        "rate",
                        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0}/s", s.per_sec());
                        },
                    )
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{msg:32} {spinner} {pos} {rate}")
                        .expect("valid template")
                        .with_key(
                            "rate",
                            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{:.0}/s", s.per_sec());
                            },
                        ),
                ),
            };
            b.set_message(stage.to_string());
            b
        } else {
            eprintln!("{stage}: started");
            ProgressBar::hidden()
        };
        *self.state.lock().unwrap() = Some((bar, stage.to_string(), Instant::now()));
    }

    fn advance(&self, units: u64) {
        if let Some((b, _, _)) = &*self.state.lock().unwrap() {
            b.inc(units);
        }
    }

    fn note(&self, msg: &str) {
        if let Some((b, stage, _)) = &*self.state.lock().unwrap() {
            b.set_message(format!("{stage}: {msg}"));
        }
    }

    fn finish(&self) {
        if let Some((b, stage, t)) = self.state.lock().unwrap().take() {
            b.finish_and_clear();
            if !self.quiet {
                eprintln!("{stage}: done in {:.2}s", t.elapsed().as_secs_f64());
            }
        }
    }
}

impl Cli {
    /// Defaults ← config file ← flags, then validated before any work starts.
    fn config(
        &self,
        input: Option<&InputArgs>,
        quant: Option<&QuantArgs>,
        ids: Option<&IdArgs>,
        embed: Option<&EmbedArgs>,
        vocab: Option<&VocabArgs>,
        collab: Option<&CollabArgs>,
    ) -> Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::from_toml_file(p)?,
            None => Config::default(),
        };
        if let Some(s) = self.seed {
            c.seed = s;
        }
        if let Some(i) = input {
            set(&mut c.input.id_column, &i.id_column);
            set(&mut c.input.embedding_column, &i.embedding_column);
        }
        if let Some(q) = quant {
            set(&mut c.quantizer.method, &q.method);
            set(&mut c.quantizer.codebook_sizes, &q.codebook_sizes);
            set(&mut c.quantizer.train_sample, &q.train_sample);
            set(&mut c.quantizer.max_iter, &q.max_iter);
            set(&mut c.quantizer.tol, &q.tol);
            set(&mut c.quantizer.balanced, &q.balanced);
            let v = &mut c.quantizer.rqvae;
            set(&mut v.latent_dim, &q.latent_dim);
            set(&mut v.hidden, &q.hidden);
            set(&mut v.epochs, &q.epochs);
            set(&mut v.lr, &q.lr);
            set(&mut v.batch_size, &q.batch_size);
            set(&mut v.beta, &q.beta);
            set(&mut v.prefix_masking, &q.prefix_masking);
            set(&mut v.contrastive_weight, &q.contrastive_weight);
            set(&mut v.temperature, &q.temperature);
            set(&mut v.window, &q.window);
            set_opt(&mut c.input.interactions, &q.interactions);
            let g = &mut c.quantizer.gensar;
            set(&mut g.shared_levels, &q.shared_levels);
            set(&mut g.semantic_levels, &q.semantic_levels);
            set(&mut g.collab_levels, &q.collab_levels);
        }
        if let Some(d) = ids {
            set(&mut c.ids.dedup, &d.dedup);
            set(&mut c.ids.token_format, &d.token_format);
        }
        if let Some(v) = vocab {
            set_opt(&mut c.vocab.tokenizer, &v.tokenizer);
            set(&mut c.vocab.tokens, &v.tokens);
            set(&mut c.vocab.special, &v.special);
            set(&mut c.vocab.markers, &v.markers);
            set(&mut c.vocab.pad_to_multiple, &v.pad_to_multiple);
        }
        if let Some(e) = embed {
            let ec = &mut c.embed;
            set(&mut ec.model, &e.model);
            set(&mut ec.revision, &e.revision);
            set_opt(&mut ec.pooling, &e.pooling);
            set_opt(&mut ec.dim, &e.dim);
            set_opt(&mut ec.template, &e.template);
            set_opt(&mut ec.instruction, &e.instruction);
            set(&mut ec.max_length, &e.max_length);
            set(&mut ec.batch_tokens, &e.batch_tokens);
            set(&mut ec.device, &e.device);
            set_opt(&mut ec.dtype, &e.dtype);
            set(&mut ec.window_rows, &e.window_rows);
        }
        c.quantizer.broadcast_sizes();
        if let Some(a) = collab {
            let cc = &mut c.collab;
            set(&mut cc.dim, &a.collab_dim);
            set(&mut cc.window, &a.window);
            set(&mut cc.power_iterations, &a.power_iterations);
            set(&mut cc.oversample, &a.oversample);
            set(&mut cc.column, &a.collab_column);
            set(&mut c.input.id_column, &a.id_column);
            set_opt(&mut c.input.collab, &a.file);
        }
        c.validate()?;
        Ok(c)
    }
}

/// One entry of `--codebook-sizes 1024,512,256` (spaces after commas allowed).
fn parse_size(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|e| format!("{:?} is not a codebook size: {e}", s.trim()))
}

fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        *slot = v.clone();
    }
}

fn set_opt<T: Clone>(slot: &mut Option<T>, v: &Option<T>) {
    if v.is_some() {
        *slot = v.clone();
    }
}

/// Keep large freed buffers in the heap instead of returning them to the kernel: the k-means
/// and encode loops allocate multi-MiB blocks (also inside the GEMM kernel), and glibc's
/// default of unmapping them made every reuse pay page faults and cross-core TLB flushes
/// (measured: 11 s of system time in a 27 s benchmark run).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 31);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("sidtool={level}").into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(t) = cli.threads {
        // Must happen before candle or rayon start their pools.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
        // SAFETY: set before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    sidtool::gemm::check_gemm_backend();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A GenSAR quantizer codes [semantic | collaborative] rows: the collaborative half comes from
/// `--collab` or the embeddings file's own column.
fn gensar_collab(
    q: &dyn sidtool::quant::Quantizer,
    embeddings: &std::path::Path,
    cfg: &Config,
) -> Result<Option<pipeline::CollabVectors>> {
    if q.dual().is_none() {
        return Ok(None);
    }
    Ok(Some(pipeline::collab_vectors(
        embeddings,
        &cfg.input,
        &cfg.collab.column,
    )?))
}

fn run(cli: &Cli) -> Result<()> {
    let reporter = Reporter {
        bars: std::io::stderr().is_terminal(),
        quiet: cli.quiet,
        state: Mutex::new(None),
    };
    match &cli.cmd {
        Cmd::Build {
            items,
            out,
            input,
            embed,
            quant,
            ids,
            vocab,
            collab,
        } => {
            let cfg = cli.config(
                Some(input),
                Some(quant),
                Some(ids),
                Some(embed),
                Some(vocab),
                Some(&collab.as_collab()),
            )?;
            let (manifest, stats) = pipeline::build(items, out, &cfg, &reporter)
                .with_context(|| format!("build of {} failed", items.display()))?;
            if !cli.quiet {
                eprint!("{}", render(&stats));
                let total: f64 = manifest.timings.iter().map(|t| t.seconds).sum();
                eprintln!("wrote {} ({:.2}s)", out.display(), total);
            }
        }
        Cmd::Embed {
            items,
            out,
            resume,
            input,
            embed,
        } => {
            let cfg = cli.config(Some(input), None, None, Some(embed), None, None)?;
            let r = sidtool::embed::job::embed_file(
                items, out, &cfg.embed, &cfg.input, *resume, &reporter,
            )
            .with_context(|| format!("embedding {} failed", items.display()))?;
            if !cli.quiet {
                let padding = if r.tokens > 0 {
                    format!(
                        "padding {:.1}%",
                        100.0 * (r.padded_tokens as f64 / r.tokens as f64 - 1.0)
                    )
                } else {
                    "nothing left to run".into()
                };
                eprintln!(
                    "embedded {} items ({} from an earlier run) with {} ({}, {} pooling, dim {}): \
                     {} tokens, {padding}, {} truncated to {} tokens, {:.2}s",
                    r.items,
                    r.resumed_items,
                    r.encoder.model,
                    r.encoder.architecture,
                    r.encoder.pooling.name(),
                    r.encoder.dim,
                    r.tokens,
                    r.truncated,
                    r.encoder.max_length,
                    r.seconds
                );
                if r.empty_texts > 0 {
                    eprintln!(
                        "warning: {} items had no text (every template field null)",
                        r.empty_texts
                    );
                }
                eprintln!("wrote {}", out.display());
            }
        }
        Cmd::Train {
            embeddings,
            out,
            input,
            quant,
            collab,
        } => {
            let cfg = cli.config(
                Some(input),
                Some(quant),
                None,
                None,
                None,
                Some(&collab.as_collab()),
            )?;
            let q = pipeline::train(embeddings, &cfg, &reporter)
                .with_context(|| format!("training on {} failed", embeddings.display()))?;
            q.save(out)?;
            if !cli.quiet {
                eprintln!(
                    "wrote {} ({} levels: {:?})",
                    out.display(),
                    q.levels(),
                    q.codebook_sizes()
                );
            }
        }
        Cmd::Assign {
            embeddings,
            quantizer,
            out,
            stats,
            existing,
            input,
            ids,
            collab,
        } => {
            let mut cfg = cli.config(
                Some(input),
                None,
                Some(ids),
                None,
                None,
                Some(&collab.as_collab()),
            )?;
            let previous = match existing {
                Some(p) => Some(sidtool::ids::sid_table::read(p)?),
                None => None,
            };
            if let Some(meta) = previous.as_ref().and_then(|t| t.meta.as_ref()) {
                cfg.ids
                    .follow_existing(meta, ids.dedup.is_some(), ids.token_format.is_some())?;
            }
            let q = sidtool::quant::load(quantizer)?;
            let collab = gensar_collab(q.as_ref(), embeddings, &cfg)?;
            let source = Source::File {
                path: embeddings,
                input: &cfg.input,
                collab: collab.as_ref(),
            };
            let a = pipeline::assign(&source, q.as_ref(), &cfg, previous.as_ref(), &reporter)
                .with_context(|| format!("assign of {} failed", embeddings.display()))?;
            pipeline::write_assigned(&a, out, stats.as_deref())?;
            if !cli.quiet {
                eprint!("{}", render(&a.stats));
                eprintln!("wrote {}", out.display());
            }
        }
        Cmd::Stats {
            sids,
            json,
            embeddings,
            quantizer,
            input,
            collab,
        } => {
            let cfg = cli.config(
                Some(input),
                None,
                None,
                None,
                None,
                Some(&collab.as_collab()),
            )?;
            let s = match (embeddings, quantizer) {
                (Some(e), Some(qdir)) => {
                    let q = sidtool::quant::load(qdir)?;
                    let collab = gensar_collab(q.as_ref(), e, &cfg)?;
                    let source = Source::File {
                        path: e,
                        input: &cfg.input,
                        collab: collab.as_ref(),
                    };
                    pipeline::stats_of_table(sids, Some((&source, q.as_ref())))?
                }
                _ => pipeline::stats_of_table(sids, None)?,
            };
            if let Some(p) = json {
                pipeline::write_json(p, &s)?;
            }
            if !cli.quiet {
                eprint!("{}", render(&s));
            }
        }
        Cmd::Vocab { sids, out, vocab } => {
            let cfg = cli.config(None, None, None, None, Some(vocab), None)?;
            let v = &cfg.vocab;
            let Some(tokenizer) = &v.tokenizer else {
                anyhow::bail!("--tokenizer is required: the LLM's tokenizer.json to extend");
            };
            let table = sidtool::ids::sid_table::read(sids)?;
            let r = sidtool::vocab::write_all(
                &table,
                tokenizer,
                out,
                &sidtool::vocab::extend::Options::from(v),
            )
            .with_context(|| format!("vocabulary for {} failed", sids.display()))?;
            if !cli.quiet {
                let (what, levels, checked) = match &r.cid_level_sizes {
                    None => (
                        "SID tokens",
                        format!("levels of {:?}", r.level_sizes),
                        "SID",
                    ),
                    Some(c) => (
                        "SID and CID tokens",
                        format!(
                            "SID levels of {:?}, CID levels of {c:?}, shared levels once",
                            r.level_sizes
                        ),
                        "SID and CID",
                    ),
                };
                eprintln!(
                    "base vocabulary {}, added {} {what}{} ({levels}), new vocabulary {} (resize \
                     the embeddings to {}, a multiple of {}); every item's {checked} tokenizes \
                     to one token per level",
                    r.base_vocab_size,
                    r.tokens.len(),
                    if r.markers.is_empty() {
                        String::new()
                    } else {
                        format!(" and {} markers", r.markers.len())
                    },
                    r.vocab_size,
                    r.padded_vocab_size,
                    r.pad_to_multiple
                );
                eprintln!("wrote {}", out.display());
            }
        }
        Cmd::ImportRecbole { dir, out, name } => import_recbole(cli, dir, out, name.as_deref())?,
        Cmd::Collab {
            interactions,
            items,
            out,
            collab,
        } => {
            let cfg = cli.config(None, None, None, None, None, Some(collab))?;
            let start = Instant::now();
            let ids = sidtool::io::id_column::read_ids(
                items,
                &cfg.input.id_column,
                cfg.input.batch_rows,
            )?;
            let (_, summary) = sidtool::collab::compute_to_file(
                interactions,
                &ids,
                &cfg.collab,
                cfg.seed,
                out,
                &reporter,
            )
            .with_context(|| {
                format!(
                    "collaborative embeddings from {} failed",
                    interactions.display()
                )
            })?;
            if !cli.quiet {
                let s = &summary;
                eprintln!(
                    "{} items, {} users, {} interactions ({} naming items not in the catalogue, \
                     skipped); {} items without interactions (zero vectors); PPMI nonzeros {}; \
                     {} of {} dimensions non-zero; {:.2}s",
                    s.items,
                    s.users,
                    s.events,
                    s.unknown_events,
                    s.without_interactions,
                    s.nonzeros,
                    s.rank,
                    s.dim,
                    start.elapsed().as_secs_f64()
                );
                eprintln!("wrote {}", out.display());
            }
        }
        Cmd::Inspect { file, rows } => {
            print_out(&sidtool::io::inspect::describe(file, *rows)?)?;
        }
        Cmd::Bench { what } => bench(cli, what)?,
    }
    Ok(())
}

fn import_recbole(
    cli: &Cli,
    dir: &std::path::Path,
    out: &std::path::Path,
    name: Option<&str>,
) -> Result<()> {
    use sidtool::io::recbole::{self, Dataset, TableReport};
    let t = Instant::now();
    let ds = Dataset::locate(dir, name)?;
    let r = recbole::import(&ds, out)
        .with_context(|| format!("import of RecBole dataset {} failed", ds.name))?;
    if cli.quiet {
        return Ok(());
    }
    let table = |t: &TableReport| {
        eprintln!(
            "{} → {}: {} rows",
            t.source.display(),
            t.dest.display(),
            t.rows
        );
        for c in &t.columns {
            let nulls = match c.nulls {
                0 => String::new(),
                n => format!(" ({n} null)"),
            };
            eprintln!(
                "  {:<24} {:<10} → {}{nulls}",
                c.name,
                c.recbole_type.name(),
                c.data_type
            );
        }
    };
    if let Some(items) = &r.items {
        table(items);
    }
    table(&r.interactions);
    if r.items.is_none() {
        eprintln!(
            "no {}.item in {}: wrote interactions only",
            ds.name,
            dir.display()
        );
        let stale = out.join(recbole::ITEMS_FILE);
        if stale.exists() {
            eprintln!(
                "warning: {} is left from an earlier run, not from this dataset",
                stale.display()
            );
        }
    }
    for p in &r.not_imported {
        eprintln!("not imported: {}", p.display());
    }
    eprintln!(
        "wrote {} ({:.2}s)",
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(cli: &Cli, what: &BenchCmd) -> Result<()> {
    match what {
        BenchCmd::Kmeans {
            data,
            levels,
            k,
            niter,
            max_points_per_centroid,
        } => {
            let seed = cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED);
            let r = sidtool::bench::rq_kmeans(
                data,
                &vec![*k; *levels],
                *niter,
                *max_points_per_centroid,
                seed,
            )?;
            print_out(&(serde_json::to_string(&r)? + "\n"))?;
        }
        BenchCmd::Embed {
            n,
            tokens,
            warmup,
            embed,
        } => {
            let cfg = cli.config(None, None, None, Some(embed), None, None)?;
            let seed = cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED);
            let r = sidtool::bench::embed(&cfg.embed, *n, *tokens, *warmup, seed)?;
            print_out(&(serde_json::to_string(&r)? + "\n"))?;
        }
        BenchCmd::Gemm { rows, k, d } => {
            let g = sidtool::bench::gemm(*rows, *k, *d)?;
            let report = serde_json::json!({
                "rows": rows, "k": k, "d": d,
                "gemm_backend": sidtool::gemm::gemm_backend(),
                "gflops": (g * 10.0).round() / 10.0,
            });
            print_out(&(report.to_string() + "\n"))?;
        }
    }
    Ok(())
}

fn print_out(s: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()?;
    Ok(())
}
