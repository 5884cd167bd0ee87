//! One function per subcommand: take the config, call the library, print the summary.

use crate::args::{BenchCmd, Cli, Cmd};
use crate::report::{self, Reporter};
use anyhow::{Context, Result};
use sidtool::ids::stats::render;
use sidtool::pipeline::{self, Source};
use std::path::Path;
use std::time::Instant;

pub fn run(cli: &Cli) -> Result<()> {
    let reporter = Reporter::new(cli.quiet);
    match &cli.cmd {
        Cmd::Build { items, out, .. } => build(cli, items, out, &reporter),
        Cmd::Embed {
            items, out, resume, ..
        } => embed(cli, items, out, *resume, &reporter),
        Cmd::Train {
            embeddings, out, ..
        } => train(cli, embeddings, out, &reporter),
        Cmd::Assign {
            embeddings,
            quantizer,
            out,
            stats,
            existing,
            ids,
            ..
        } => {
            // An --existing table fixes dedup and token format unless these flags are given.
            let user_set = (ids.dedup.is_some(), ids.token_format.is_some());
            let paths = (embeddings.as_path(), quantizer.as_path(), out.as_path());
            assign(
                cli,
                paths,
                stats.as_deref(),
                existing.as_deref(),
                user_set,
                &reporter,
            )
        }
        Cmd::Stats {
            sids,
            json,
            embeddings,
            quantizer,
            ..
        } => stats(
            cli,
            sids,
            json.as_deref(),
            embeddings.as_deref().zip(quantizer.as_deref()),
        ),
        Cmd::Vocab { sids, out, .. } => vocab(cli, sids, out),
        Cmd::ImportRecbole { dir, out, name } => import_recbole(cli, dir, out, name.as_deref()),
        Cmd::Collab {
            interactions,
            items,
            out,
            ..
        } => collab(cli, interactions, items, out, &reporter),
        Cmd::Resolve {
            parts,
            out,
            stats,
            dedup,
        } => {
            let files = pipeline::part_files(parts)?;
            let a = pipeline::resolve(&files, *dedup)
                .with_context(|| format!("resolving {} parts failed", files.len()))?;
            pipeline::write_assigned(&a, out, stats.as_deref())?;
            if !cli.quiet {
                eprint!("{}", render(&a.stats));
                eprintln!("wrote {} (from {} parts)", out.display(), files.len());
            }
            Ok(())
        }
        Cmd::Report { dirs, out } => {
            sidtool::report::write(dirs, out).context("report failed")?;
            if !cli.quiet {
                eprintln!("wrote {}", out.display());
            }
            Ok(())
        }
        Cmd::Inspect { file, rows } => print_out(&crate::inspect::describe(file, *rows)?),
        Cmd::Eval {
            tables,
            interactions,
            items,
            category_column,
            embeddings,
            id_column,
            codes_column,
            embedding_column,
            no_next_item,
            t2,
            out,
        } => {
            let o = sidtool::eval::Options {
                id_column: id_column.clone(),
                codes_column: codes_column.clone(),
                interactions: interactions.clone(),
                items: items.clone(),
                category_column: category_column.clone(),
                embeddings: embeddings.clone(),
                embedding_column: embedding_column.clone(),
                no_t1: *no_next_item,
                t2: t2.config(),
                seed: cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED),
            };
            eval(tables, &o, out.as_deref(), &reporter)
        }
        Cmd::Bench { what } => bench(cli, what),
    }
}

fn eval(
    tables: &[std::path::PathBuf],
    o: &sidtool::eval::Options,
    out: Option<&Path>,
    reporter: &Reporter,
) -> Result<()> {
    let evals = tables
        .iter()
        .map(|t| {
            sidtool::eval::evaluate_with_progress(t, o, reporter)
                .with_context(|| format!("eval of {} failed", t.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    match out {
        // `--out -`: the JSON on stdout instead of the table.
        Some(p) if p == Path::new("-") => {
            return print_out(&(serde_json::to_string_pretty(&evals)? + "\n"));
        }
        Some(p) => sidtool::fs::atomic::write_json(p, &evals)?,
        None => {}
    }
    print_out(&report::eval(&evals))
}

fn build(cli: &Cli, items: &Path, out: &Path, reporter: &Reporter) -> Result<()> {
    let cfg = cli.config()?;
    let (manifest, stats) = pipeline::build(items, out, &cfg, reporter)
        .with_context(|| format!("build of {} failed", items.display()))?;
    if !cli.quiet {
        eprint!("{}", render(&stats));
        let total: f64 = manifest.timings.iter().map(|t| t.seconds).sum();
        eprintln!("wrote {} ({:.2}s)", out.display(), total);
    }
    Ok(())
}

fn embed(cli: &Cli, items: &Path, out: &Path, resume: bool, reporter: &Reporter) -> Result<()> {
    let cfg = cli.config()?;
    let r = sidtool::embed::job::embed_file(items, out, &cfg.embed, &cfg.input, resume, reporter)
        .with_context(|| format!("embedding {} failed", items.display()))?;
    if !cli.quiet {
        report::embedded(&r, out);
    }
    Ok(())
}

fn train(cli: &Cli, embeddings: &Path, out: &Path, reporter: &Reporter) -> Result<()> {
    let cfg = cli.config()?;
    let q = pipeline::train(embeddings, &cfg, reporter)
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
    Ok(())
}

fn assign(
    cli: &Cli,
    (embeddings, quantizer, out): (&Path, &Path, &Path),
    stats: Option<&Path>,
    existing: Option<&Path>,
    (dedup_set, format_set): (bool, bool),
    reporter: &Reporter,
) -> Result<()> {
    let mut cfg = cli.config()?;
    let previous = match existing {
        Some(p) => Some(sidtool::ids::sid_table::read(p)?),
        None => None,
    };
    if let Some(meta) = previous.as_ref().and_then(|t| t.meta.as_ref()) {
        cfg.ids.follow_existing(meta, dedup_set, format_set)?;
    }
    let q = sidtool::quant::load(quantizer)?;
    let collab = pipeline::collab_for(q.as_ref(), embeddings, &cfg)?;
    let source = Source::File {
        path: embeddings,
        input: &cfg.input,
        collab: collab.as_ref(),
    };
    let a = pipeline::assign(&source, q.as_ref(), &cfg, previous.as_ref(), reporter)
        .with_context(|| format!("assign of {} failed", embeddings.display()))?;
    pipeline::write_assigned(&a, out, stats)?;
    if !cli.quiet {
        eprint!("{}", render(&a.stats));
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// `vectors`: the embeddings and the quantizer, for the reconstruction error per prefix.
fn stats(
    cli: &Cli,
    sids: &Path,
    json: Option<&Path>,
    vectors: Option<(&Path, &Path)>,
) -> Result<()> {
    let cfg = cli.config()?;
    let s = match vectors {
        Some((e, qdir)) => {
            let q = sidtool::quant::load(qdir)?;
            let collab = pipeline::collab_for(q.as_ref(), e, &cfg)?;
            let source = Source::File {
                path: e,
                input: &cfg.input,
                collab: collab.as_ref(),
            };
            pipeline::stats_of_table(sids, Some((&source, q.as_ref())))?
        }
        None => pipeline::stats_of_table(sids, None)?,
    };
    match json {
        // `--json -`: the statistics on stdout, for a pipe.
        Some(p) if p == Path::new("-") => print_out(&(serde_json::to_string_pretty(&s)? + "\n"))?,
        Some(p) => pipeline::write_json(p, &s)?,
        None => {}
    }
    if !cli.quiet {
        eprint!("{}", render(&s));
    }
    Ok(())
}

fn vocab(cli: &Cli, sids: &Path, out: &Path) -> Result<()> {
    let cfg = cli.config()?;
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
        report::vocab(&r, out);
    }
    Ok(())
}

fn collab(
    cli: &Cli,
    interactions: &Path,
    items: &Path,
    out: &Path,
    reporter: &Reporter,
) -> Result<()> {
    let cfg = cli.config()?;
    let start = Instant::now();
    let ids = sidtool::io::id_column::read_ids(items, &cfg.input.id_column, cfg.input.batch_rows)?;
    let (_, summary) =
        sidtool::collab::compute_to_file(interactions, &ids, &cfg.collab, cfg.seed, out, reporter)
            .with_context(|| {
                format!(
                    "collaborative embeddings from {} failed",
                    interactions.display()
                )
            })?;
    if !cli.quiet {
        report::collab(&summary, start.elapsed().as_secs_f64(), out);
    }
    Ok(())
}

fn import_recbole(cli: &Cli, dir: &Path, out: &Path, name: Option<&str>) -> Result<()> {
    use sidtool::io::recbole::{self, Dataset};
    let t = Instant::now();
    let ds = Dataset::locate(dir, name)?;
    let r = recbole::import(&ds, out)
        .with_context(|| format!("import of RecBole dataset {} failed", ds.name))?;
    if !cli.quiet {
        report::recbole(&ds, dir, &r, out, t.elapsed().as_secs_f64());
    }
    Ok(())
}

fn bench(cli: &Cli, what: &BenchCmd) -> Result<()> {
    let seed = cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED);
    match what {
        BenchCmd::Kmeans {
            data,
            levels,
            k,
            niter,
            max_points_per_centroid,
        } => {
            let r = sidtool::bench::rq_kmeans(
                data,
                &vec![*k; *levels],
                *niter,
                *max_points_per_centroid,
                seed,
            )?;
            print_out(&(serde_json::to_string(&r)? + "\n"))
        }
        BenchCmd::Embed {
            n, tokens, warmup, ..
        } => {
            let cfg = cli.config()?;
            let r = sidtool::bench::embed(&cfg.embed, *n, *tokens, *warmup, seed)?;
            print_out(&(serde_json::to_string(&r)? + "\n"))
        }
        BenchCmd::Gemm { rows, k, d } => {
            let g = sidtool::bench::gemm(*rows, *k, *d)?;
            let report = serde_json::json!({
                "rows": rows, "k": k, "d": d,
                "gemm_backend": sidtool::gemm::gemm_backend(),
                "gflops": (g * 10.0).round() / 10.0,
            });
            print_out(&(report.to_string() + "\n"))
        }
    }
}

/// Results on stdout, flushed so a closed pipe surfaces here as an error (see `main`).
fn print_out(s: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()?;
    Ok(())
}
