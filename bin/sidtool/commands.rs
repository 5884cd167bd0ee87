//! One function per subcommand: take the config, call the library, print the summary.
//!
//! Conventions every command keeps: the command's result (a report, a table, or data written
//! to `-`) goes to stdout; progress, timings, `wrote …` lines and warnings go to stderr. When
//! stdout carries data, the human report moves to stderr so the data stays parseable.

use crate::args::{BenchCmd, Cli, Cmd};
use crate::report::{self, Reporter, Say, print_out};
use crate::stdout::{self, is_stdout};
use anyhow::{Context, Result};
use sidtool::config::Dedup;
use sidtool::ids::stats::render;
use sidtool::pipeline::{self, Source};
use std::path::Path;
use std::time::Instant;

pub fn run(cli: &Cli) -> Result<()> {
    let reporter = Reporter::new(cli.quiet);
    let say = Say::new(cli.quiet);
    match &cli.cmd {
        Cmd::Build { items, out, .. } => build(cli, items, out, &reporter, say),
        Cmd::Embed {
            items, out, resume, ..
        } => embed(cli, items, out, *resume, &reporter, say),
        Cmd::Train {
            embeddings, out, ..
        } => train(cli, embeddings, out, &reporter, say),
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
                say,
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
            say,
        ),
        Cmd::Vocab { sids, out, .. } => vocab(cli, sids, out, say),
        Cmd::Export {
            sids,
            format,
            out,
            cid,
        } => export(sids, *format, out, *cid, say),
        Cmd::Holdout {
            interactions,
            cold_items,
            out,
        } => {
            let seed = cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED);
            let h = sidtool::eval::cold::write_warm(interactions, out, *cold_items, seed)
                .with_context(|| format!("holdout of {} failed", interactions.display()))?;
            say.log(&format!(
                "wrote {}: {} of {} interactions kept; {} items held out as new",
                out.display(),
                h.kept,
                h.rows,
                h.new_items
            ));
            Ok(())
        }
        Cmd::ImportRecbole { dir, out, name } => import_recbole(dir, out, name.as_deref(), say),
        Cmd::Collab {
            interactions,
            items,
            out,
            ..
        } => collab(cli, interactions, items, out, &reporter, say),
        Cmd::Resolve {
            parts,
            out,
            stats,
            dedup,
            existing,
            quantizer,
            embeddings,
            ..
        } => {
            stdout::refuse_two(&[("--out", Some(out)), ("--stats", stats.as_deref())])?;
            if embeddings.is_some() && *dedup != Dedup::Reassign {
                anyhow::bail!(
                    "--embeddings is only read by --dedup reassign (the colliding items' vectors)"
                );
            }
            let cfg = cli.config()?;
            let files = pipeline::part_files(parts)?;
            let existing = match existing {
                Some(p) => Some(sidtool::ids::sid_table::read(p)?),
                None => None,
            };
            let q = quantizer.as_deref().map(sidtool::quant::load).transpose()?;
            let coded_by = q
                .as_ref()
                .map(|q| pipeline::raw_meta(q.as_ref(), &cfg.ids.token_format));
            let collab = match (&q, embeddings) {
                (Some(q), Some(e)) => pipeline::collab_for(q.as_ref(), e, &cfg)?,
                _ => None,
            };
            let vectors = q
                .as_ref()
                .zip(embeddings.as_deref())
                .map(|(q, e)| pipeline::Vectors {
                    quantizer: q.as_ref(),
                    source: Source::File {
                        path: e,
                        input: &cfg.input,
                        collab: collab.as_ref(),
                    },
                });
            let a = pipeline::resolve(
                &files,
                *dedup,
                existing.as_ref(),
                coded_by.as_ref(),
                vectors.as_ref(),
            )
            .with_context(|| format!("resolving {} parts failed", files.len()))?;
            let say = write_assigned(&a, out, stats.as_deref(), say)?;
            say.report(&render(&a.stats))?;
            say.log(&format!(
                "wrote {} (from {} parts)",
                shown(out),
                files.len()
            ));
            Ok(())
        }
        Cmd::Report { dirs, out } => {
            if is_stdout(out) {
                return print_out(&sidtool::report::render(dirs).context("report failed")?);
            }
            sidtool::report::write(dirs, out).context("report failed")?;
            say.log(&format!("wrote {}", out.display()));
            Ok(())
        }
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut o = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "sidtool", &mut o);
            print_out(&String::from_utf8(o)?)
        }
        Cmd::Man { out } => crate::man::write(out.as_deref(), say),
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
            cold_items,
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
                cold_items: *cold_items,
                seed: cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED),
            };
            eval(tables, &o, out.as_deref(), &reporter, say)
        }
        Cmd::Bench { what } => bench(cli, what),
    }
}

fn eval(
    tables: &[std::path::PathBuf],
    o: &sidtool::eval::Options,
    out: Option<&Path>,
    reporter: &Reporter,
    say: Say,
) -> Result<()> {
    // Refused before the minutes of evaluation, not after them.
    if let Some(p) = out.filter(|p| !is_stdout(p)) {
        sidtool::eval::check_output(p, tables, o)?;
    }
    let evals = tables
        .iter()
        .map(|t| {
            sidtool::eval::evaluate_with_progress(t, o, reporter)
                .with_context(|| format!("eval of {} failed", t.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let say = match out {
        // `--out -`: the JSON on stdout, the table on stderr.
        Some(p) if is_stdout(p) => {
            print_out(&(serde_json::to_string_pretty(&evals)? + "\n"))?;
            say.to_stderr()
        }
        Some(p) => {
            sidtool::fs::atomic::write_json(p, &evals)?;
            say
        }
        None => say,
    };
    say.report(&report::eval(&evals))
}

fn build(cli: &Cli, items: &Path, out: &Path, reporter: &Reporter, say: Say) -> Result<()> {
    let cfg = cli.config()?;
    let (manifest, stats) = pipeline::build(items, out, &cfg, reporter)
        .with_context(|| format!("build of {} failed", items.display()))?;
    say.report(&render(&stats))?;
    let total: f64 = manifest.timings.iter().map(|t| t.seconds).sum();
    say.log(&format!("wrote {} ({:.2}s)", out.display(), total));
    Ok(())
}

fn embed(
    cli: &Cli,
    items: &Path,
    out: &Path,
    resume: bool,
    reporter: &Reporter,
    say: Say,
) -> Result<()> {
    let cfg = cli.config()?;
    let r = sidtool::embed::job::embed_file(items, out, &cfg.embed, &cfg.input, resume, reporter)
        .with_context(|| format!("embedding {} failed", items.display()))?;
    say.report(&report::embedded(&r))?;
    if r.empty_texts > 0 {
        say.log(&format!(
            "warning: {} items had no text (every template field null)",
            r.empty_texts
        ));
    }
    say.log(&format!("wrote {}", out.display()));
    Ok(())
}

fn train(cli: &Cli, embeddings: &Path, out: &Path, reporter: &Reporter, say: Say) -> Result<()> {
    let cfg = cli.config()?;
    let q = pipeline::train(embeddings, &cfg, reporter)
        .with_context(|| format!("training on {} failed", embeddings.display()))?;
    q.save(out)?;
    say.report(&format!(
        "trained {} levels: {:?}\n",
        q.levels(),
        q.codebook_sizes()
    ))?;
    say.log(&format!("wrote {}", out.display()));
    Ok(())
}

/// `assign`'s and `resolve`'s outputs, either of which may be `-` (checked by the caller not to
/// be both); returns where the human report goes then.
fn write_assigned(
    a: &pipeline::Assigned,
    out: &Path,
    stats: Option<&Path>,
    say: Say,
) -> Result<Say> {
    let stats_file = stats.filter(|p| !is_stdout(p));
    if is_stdout(out) {
        stdout::via_temp_file("sids.parquet", |tmp| {
            Ok(pipeline::write_assigned(a, tmp, stats_file)?)
        })?;
    } else {
        pipeline::write_assigned(a, out, stats_file)?;
    }
    if stats.is_some_and(is_stdout) {
        print_out(&(serde_json::to_string_pretty(&a.stats)? + "\n"))?;
    }
    Ok(if is_stdout(out) || stats.is_some_and(is_stdout) {
        say.to_stderr()
    } else {
        say
    })
}

/// A path as `wrote …` names it; `-` is stdout.
fn shown(p: &Path) -> String {
    if is_stdout(p) {
        "stdout".into()
    } else {
        p.display().to_string()
    }
}

fn assign(
    cli: &Cli,
    (embeddings, quantizer, out): (&Path, &Path, &Path),
    stats: Option<&Path>,
    existing: Option<&Path>,
    (dedup_set, format_set): (bool, bool),
    reporter: &Reporter,
    say: Say,
) -> Result<()> {
    stdout::refuse_two(&[("--out", Some(out)), ("--stats", stats)])?;
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
    let say = write_assigned(&a, out, stats, say)?;
    say.report(&render(&a.stats))?;
    say.log(&format!("wrote {}", shown(out)));
    Ok(())
}

/// `vectors`: the embeddings and the quantizer, for the reconstruction error per prefix.
fn stats(
    cli: &Cli,
    sids: &Path,
    json: Option<&Path>,
    vectors: Option<(&Path, &Path)>,
    say: Say,
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
    let say = match json {
        // `--json -`: the statistics on stdout, for a pipe; the table on stderr.
        Some(p) if is_stdout(p) => {
            print_out(&(serde_json::to_string_pretty(&s)? + "\n"))?;
            say.to_stderr()
        }
        Some(p) => {
            pipeline::write_json(p, &s)?;
            say
        }
        None => say,
    };
    say.report(&render(&s))
}

fn vocab(cli: &Cli, sids: &Path, out: &Path, say: Say) -> Result<()> {
    let cfg = cli.config()?;
    let v = &cfg.vocab;
    let Some(spec) = &v.llm else {
        anyhow::bail!(
            "--llm is required: the LLM that will learn the SIDs (hub id, model directory or \
             tokenizer.json)"
        );
    };
    let llm = sidtool::vocab::llm::Llm::resolve(spec, &v.llm_revision)?;
    let table = sidtool::ids::sid_table::read(sids)?;
    let r = sidtool::vocab::write_all(
        &table,
        &llm,
        out,
        &sidtool::vocab::extend::Options::new(v, cfg.seed),
    )
    .with_context(|| format!("vocabulary for {} failed", sids.display()))?;
    say.report(&report::vocab(&r))?;
    say.log(&format!("wrote {}", out.display()));
    Ok(())
}

fn export(
    sids: &Path,
    format: sidtool::export::Format,
    out: &Path,
    cid: bool,
    say: Say,
) -> Result<()> {
    use sidtool::export::Format;
    use sidtool::quant::kind::IdKind;
    let kind = if cid { IdKind::Cid } else { IdKind::Sid };
    let failed = || format!("export of {} failed", sids.display());
    if out == Path::new("-") {
        anyhow::ensure!(
            format == Format::IndexJson,
            "--out -: only index-json goes to stdout; codes-npy writes a directory"
        );
        let table = sidtool::export::read(sids).with_context(failed)?;
        return print_out(&sidtool::export::index_json(&table, kind).with_context(failed)?);
    }
    sidtool::export::write(sids, format, kind, out).with_context(failed)?;
    say.log(&format!("wrote {}", out.display()));
    Ok(())
}

fn collab(
    cli: &Cli,
    interactions: &Path,
    items: &Path,
    out: &Path,
    reporter: &Reporter,
    say: Say,
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
    say.report(&report::collab(&summary))?;
    say.log(&format!(
        "wrote {} ({:.2}s)",
        out.display(),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn import_recbole(dir: &Path, out: &Path, name: Option<&str>, say: Say) -> Result<()> {
    use sidtool::io::recbole::{self, Dataset};
    let t = Instant::now();
    let ds = Dataset::locate(dir, name)?;
    let r = recbole::import(&ds, out)
        .with_context(|| format!("import of RecBole dataset {} failed", ds.name))?;
    report::recbole(&ds, dir, &r, say)?;
    say.log(&format!(
        "wrote {} ({:.2}s)",
        out.display(),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn bench(cli: &Cli, what: &BenchCmd) -> Result<()> {
    let seed = cli.seed.unwrap_or(sidtool::config::DEFAULT_SEED);
    match what {
        BenchCmd::Gen { n, d, out, npy } => {
            sidtool::bench::mixture::write(*n, *d, out, npy.as_deref())?;
            print_out(&(serde_json::json!({"rows": n, "d": d, "out": out}).to_string() + "\n"))
        }
        BenchCmd::Kmeans {
            data,
            levels,
            k,
            niter,
            max_points_per_centroid,
            device,
        } => {
            let r = sidtool::bench::rq_kmeans(
                data,
                &vec![*k; *levels],
                *niter,
                *max_points_per_centroid,
                seed,
                device.device.unwrap_or_default(),
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
