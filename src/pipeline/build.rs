//! `sidtool build`: the whole pipeline into one output directory, staged and committed at the
//! end.

use super::assign::{assign, write_assigned};
use super::join::{CollabVectors, collab_vectors};
use super::manifest::{InputFile, Manifest, Timing, VocabSummary, sha256_file};
use super::scan::scan;
use super::source::Source;
use super::train::{max_k, train_gensar, training_pairs};
use crate::config::{Config, InputConfig, Method};
use crate::error::{Error, Result};
use crate::fs::atomic::write_json;
use crate::fs::dir::{AtomicDir, is_legacy_scratch};
use crate::fs::inputs::{self, OutputKind};
use crate::ids::stats::Stats;
use crate::io::embeddings;
use crate::item_id::ItemIds;
use crate::progress::Progress;
use crate::quant;
use std::path::Path;
use std::time::Instant;

/// `sidtool build`: items with an embedding column → quantizer, SIDs, stats, manifest.
pub fn build(
    items: &Path,
    out: &Path,
    cfg: &Config,
    progress: &dyn Progress,
) -> Result<(Manifest, Stats)> {
    cfg.validate()?;
    check_side_inputs(items, cfg)?;
    // The output directory must not be, contain or lie inside an input: the swap at the end
    // would remove it.
    let side: Vec<&Path> = [&cfg.input.interactions, &cfg.input.collab, &cfg.vocab.llm]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .chain([items])
        .collect();
    inputs::check_output(out, OutputKind::Dir, &side)?;
    let (sha, bytes) = sha256_file(items)?;
    // Everything is written into a staging directory beside `out` and swapped in only once
    // the whole build succeeded (fs::dir): `out` is always a complete old or new build.
    let stage = AtomicDir::create(out)?;
    // Staging directories that killed builds of earlier versions left inside `out`.
    crate::fs::atomic::remove_stale(out, crate::fs::dir::LEGACY_STAGING_PREFIX);
    let dir = stage.path().to_path_buf();
    let mut run = Run::new();
    let emb_path = dir.join("embeddings.parquet");
    let emb_input = InputConfig {
        id_column: "item_id".into(),
        embedding_column: "embedding".into(),
        ..cfg.input.clone()
    };
    // Items without a vector column are embedded first; the vectors then come from there.
    let embedded = if embeddings::has_column(items, &cfg.input.embedding_column)? {
        None
    } else if cfg.input.embedding_column != InputConfig::default().embedding_column {
        // A vector column was named explicitly: a typo must not turn into an embedding run.
        return Err(Error::input(
            items,
            Some(&cfg.input.embedding_column),
            None,
            format!(
                "no such column (the embedding column, set with --embedding-column); the file \
                 has: {}",
                embeddings::column_names(items)?.join(", ")
            ),
        ));
    } else {
        let r = crate::embed::job::embed_file(
            items, &emb_path, &cfg.embed, &cfg.input, false, progress,
        )?;
        // `sidtool embed` prints this from its report; a build has no other place to say it.
        if r.empty_texts > 0 {
            tracing::warn!(
                "{} of {} items had no text (every template field null); they all get the \
                 same vector",
                r.empty_texts,
                r.items
            );
        }
        run.lap("embed");
        Some(r)
    };
    let s = match &embedded {
        None => scan(
            items,
            &cfg.input,
            cfg.quantizer.train_sample,
            max_k(cfg),
            cfg.seed,
            Some(&emb_path),
            progress,
        )?,
        Some(_) => scan(
            &emb_path,
            &emb_input,
            cfg.quantizer.train_sample,
            max_k(cfg),
            cfg.seed,
            None,
            progress,
        )?,
    };
    run.lap("read");
    // GenSAR: collaborative vectors from --collab, the items' own column, or the interactions.
    let collab = if cfg.quantizer.method == Method::Gensar {
        let cv = build_collab(items, &s.ids, cfg, &dir, progress)?;
        run.outputs.push(COLLAB_OUTPUT);
        run.lap("collab");
        Some(cv)
    } else {
        None
    };
    let pairs = training_pairs(cfg, &s.sample_ids)?;
    let q = match &collab {
        Some(cv) => train_gensar(&s, cv, cfg, &pairs, progress)?,
        None => quant::train(&s.sample, &cfg.quantizer, cfg.seed, &pairs, progress)?,
    };
    q.save(&dir.join("quantizer"))?;
    run.lap("train");
    let joined;
    let source = if s.complete {
        let vectors = match &collab {
            Some(cv) => {
                joined = cv.join(&s.ids, &s.sample).0;
                &joined
            }
            None => &s.sample,
        };
        Source::Memory {
            ids: &s.ids,
            vectors,
            path: items,
        }
    } else {
        Source::File {
            path: &emb_path,
            input: &emb_input,
            collab: collab.as_ref(),
        }
    };
    let a = assign(&source, q.as_ref(), cfg, None, progress)?;
    run.lap("assign");
    write_assigned(&a, &dir.join("sids.parquet"), Some(&dir.join("stats.json")))?;
    run.lap("write");
    // LLM vocabulary artefacts, for the LLM named. Never the embedding model's tokenizer by
    // default: an LLM is not its embedding model, and would inherit its post-processor.
    let llm = match &cfg.vocab.llm {
        Some(spec) => Some(crate::vocab::llm::Llm::resolve(
            spec,
            &cfg.vocab.llm_revision,
        )?),
        None => None,
    };
    let vocab = match &llm {
        Some(llm) => {
            let table = crate::ids::sid_table::read(&dir.join("sids.parquet"))?;
            let opts = crate::vocab::extend::Options::new(&cfg.vocab, cfg.seed);
            let r = crate::vocab::write_into(&table, llm, &dir, &opts)?;
            run.outputs.extend(crate::vocab::outputs(&dir));
            run.lap("vocab");
            Some(r)
        }
        None => None,
    };
    let mut inputs = vec![InputFile {
        path: items.to_path_buf(),
        sha256: sha,
        bytes,
        rows: s.num_rows,
    }];
    for p in cfg.input.interactions.iter().chain(&cfg.input.collab) {
        let (sha, bytes) = sha256_file(p)?;
        let rows = embeddings::open_parquet(p)?.num_rows();
        inputs.push(InputFile {
            path: p.clone(),
            sha256: sha,
            bytes,
            rows,
        });
    }
    // The report reads the finished outputs (stats.json, the quantizer's training record).
    if cfg.report {
        let name = std::path::absolute(out)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "build".into());
        let html = crate::report::render_named(&[(name, dir.as_path())])?;
        crate::fs::atomic::write_file(&dir.join(crate::report::REPORT_FILE), html.as_bytes())?;
        run.outputs.push(crate::report::REPORT_FILE);
        run.lap("report");
    }
    let manifest = Manifest {
        sidtool_version: crate::VERSION.into(),
        command: "build".into(),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        seed: cfg.seed,
        config: cfg.clone(),
        inputs,
        outputs: run.outputs.iter().map(|s| s.to_string()).collect(),
        vocab: vocab.map(|r| VocabSummary {
            llm: r.llm,
            base_vocab_size: r.base_vocab_size,
            added: r.added,
            vocab_size: r.vocab_size,
            resize_embeddings_to: r.resize.resize_embeddings_to,
        }),
        embed: embedded,
        timings: run.timings,
    };
    write_json(&dir.join("manifest.json"), &manifest)?;
    // The user's own files in `out` are kept; every file a build can write comes from this
    // build or not at all, so nothing of an earlier, differently configured build survives.
    let known = all_outputs();
    stage.commit_keeping(|name| !known.contains(&name) && !is_legacy_scratch(name))?;
    Ok((manifest, a.stats))
}

/// GenSAR's collaborative vectors in `build`, also written to `collab.parquet` (so `assign`
/// can code new items later): `--collab FILE` or the items' own column when given, else
/// computed from the interactions (PPMI + randomized SVD).
pub(super) fn build_collab(
    items: &Path,
    ids: &ItemIds,
    cfg: &Config,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<CollabVectors> {
    let column = &cfg.collab.column;
    let dest = dir.join(COLLAB_OUTPUT);
    let cv = if cfg.input.collab.is_some() || embeddings::has_column(items, column)? {
        collab_vectors(items, &cfg.input, column)?
    } else if let Some(inter) = &cfg.input.interactions {
        let (c, _) =
            crate::collab::compute_to_file(inter, ids, &cfg.collab, cfg.seed, &dest, progress)?;
        return Ok(CollabVectors::aligned(ids, c.vectors, inter, column));
    } else {
        return Err(no_collab_source(items, column));
    };
    let (u, _) = cv.lookup(ids);
    crate::collab::write(&dest, ids, &u, column)?;
    Ok(cv)
}

pub(super) fn no_collab_source(items: &Path, column: &str) -> Error {
    Error::input(
        items,
        Some(column),
        None,
        "no such column, and no interactions: gensar needs collaborative vectors; give \
         --interactions (sidtool computes them), --collab FILE, or this column",
    )
}

/// The interactions and GenSAR's collaborative inputs, checked before the (expensive)
/// embedding stage: a typo in a path must not cost an embedding run.
pub(super) fn check_side_inputs(items: &Path, cfg: &Config) -> Result<()> {
    if let Some(p) = &cfg.input.interactions {
        embeddings::open_parquet(p)?;
    }
    if cfg.quantizer.method != Method::Gensar {
        return Ok(());
    }
    let column = &cfg.collab.column;
    if let Some(c) = &cfg.input.collab {
        return CollabVectors::check_column(c, column);
    }
    if cfg.input.interactions.is_some() || embeddings::has_column(items, column)? {
        return Ok(());
    }
    Err(no_collab_source(items, column))
}

/// What a build has done so far: the time of each stage and the files it wrote (the
/// manifest lists both).
struct Run {
    clock: Instant,
    timings: Vec<Timing>,
    outputs: Vec<&'static str>,
}

impl Run {
    fn new() -> Self {
        Run {
            clock: Instant::now(),
            timings: Vec::new(),
            outputs: BUILD_OUTPUTS.to_vec(),
        }
    }

    /// Record the time since the previous stage ended as stage `name`'s.
    fn lap(&mut self, name: &str) {
        self.timings.push(Timing {
            stage: name.into(),
            seconds: self.clock.elapsed().as_secs_f64(),
        });
        self.clock = Instant::now();
    }
}

/// Every file a build can write: those this build did not write are cleared from the output
/// directory too, so nothing of an earlier, differently configured build survives.
fn all_outputs() -> Vec<&'static str> {
    BUILD_OUTPUTS
        .into_iter()
        .chain([COLLAB_OUTPUT])
        .chain(crate::vocab::VOCAB_OUTPUTS)
        .chain(crate::vocab::CID_TRIE_OUTPUTS)
        .chain([crate::report::REPORT_FILE])
        .collect()
}

/// GenSAR's collaborative vectors in a build's output.
pub const COLLAB_OUTPUT: &str = "collab.parquet";

/// What `build` writes into its output directory.
pub const BUILD_OUTPUTS: [&str; 5] = [
    "embeddings.parquet",
    "quantizer",
    "sids.parquet",
    "stats.json",
    "manifest.json",
];
