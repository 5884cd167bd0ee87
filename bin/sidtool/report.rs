//! What the user sees on stderr: progress while a stage runs, and each command's summary.

use indicatif::{ProgressBar, ProgressStyle};
use sidtool::collab::CollabSummary;
use sidtool::embed::job::EmbedReport;
use sidtool::io::recbole::{self, TableReport};
use sidtool::progress::Progress;
use sidtool::vocab::extend::VocabReport;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// Seconds between plain progress lines when stderr is not a terminal (a pipeline's log):
/// often enough that a long stage visibly moves, rarely enough to keep logs short.
const PLAIN_EVERY_S: f64 = 30.0;

/// Progress as an indicatif bar on a terminal, plain lines otherwise (`stage: started`, a
/// line with the count and rate every [`PLAIN_EVERY_S`] seconds, or as often as the
/// `SIDTOOL_PROGRESS_SECONDS` environment variable says, `stage: done`), nothing when quiet.
pub struct Reporter {
    bars: bool,
    quiet: bool,
    every_s: f64,
    state: Mutex<Option<Stage>>,
}

/// The stage in progress.
struct Stage {
    bar: ProgressBar,
    name: String,
    started: Instant,
    /// When the last plain line was printed.
    printed: Instant,
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
            let b = ProgressBar::hidden();
            if let Some(t) = total {
                b.set_length(t);
            }
            b
        };
        *self.state.lock().unwrap() = Some(Stage {
            bar,
            name: stage.to_string(),
            started: Instant::now(),
            printed: Instant::now(),
        });
    }

    fn advance(&self, units: u64) {
        if let Some(s) = &mut *self.state.lock().unwrap() {
            s.bar.inc(units);
            if !self.bars && s.printed.elapsed().as_secs_f64() >= self.every_s {
                s.printed = Instant::now();
                let pos = s.bar.position();
                let total = s.bar.length().map(|t| format!("/{t}")).unwrap_or_default();
                let rate = pos as f64 / s.started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("{}: {pos}{total} ({rate:.0}/s)", s.name);
            }
        }
    }

    fn note(&self, msg: &str) {
        if let Some(s) = &*self.state.lock().unwrap() {
            s.bar.set_message(format!("{}: {msg}", s.name));
        }
    }

    fn finish(&self) {
        if let Some(s) = self.state.lock().unwrap().take() {
            s.bar.finish_and_clear();
            if !self.quiet {
                eprintln!(
                    "{}: done in {:.2}s",
                    s.name,
                    s.started.elapsed().as_secs_f64()
                );
            }
        }
    }
}

impl Reporter {
    /// Bars on a terminal, plain lines otherwise.
    pub fn new(quiet: bool) -> Self {
        Reporter {
            bars: std::io::stderr().is_terminal(),
            quiet,
            every_s: std::env::var("SIDTOOL_PROGRESS_SECONDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(PLAIN_EVERY_S),
            state: Mutex::new(None),
        }
    }
}

/// `sidtool embed`.
pub fn embedded(r: &EmbedReport, out: &Path) {
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

/// `sidtool vocab`.
pub fn vocab(r: &VocabReport, out: &Path) {
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

/// `sidtool collab`.
pub fn collab(s: &CollabSummary, seconds: f64, out: &Path) {
    eprintln!(
        "{} items, {} users, {} interactions ({} naming items not in the catalogue, \
         skipped); {} items without interactions (zero vectors); PPMI nonzeros {}; \
         {} of {} dimensions non-zero; {seconds:.2}s",
        s.items,
        s.users,
        s.events,
        s.unknown_events,
        s.without_interactions,
        s.nonzeros,
        s.rank,
        s.dim,
    );
    eprintln!("wrote {}", out.display());
}

/// `sidtool import-recbole`.
pub fn recbole(ds: &recbole::Dataset, dir: &Path, r: &recbole::Report, out: &Path, seconds: f64) {
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
    }
    if let Some(stale) = &r.stale {
        eprintln!(
            "warning: {} is left from an earlier run, not from this dataset",
            stale.display()
        );
    }
    for p in &r.not_imported {
        eprintln!("not imported: {}", p.display());
    }
    eprintln!("wrote {} ({seconds:.2}s)", out.display());
}

/// `eval`'s figures, one column per table, one row per measure (on stdout).
pub fn eval(evals: &[sidtool::eval::Evaluation]) -> String {
    use std::fmt::Write;
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: String, f: &dyn Fn(&sidtool::eval::Evaluation) -> Option<String>| {
        let cells: Vec<String> = evals
            .iter()
            .map(|e| f(e).unwrap_or_else(|| "-".into()))
            .collect();
        if cells.iter().any(|c| c != "-") {
            rows.push((name, cells));
        }
    };
    let width = evals.iter().map(|e| e.t0.levels.len()).max().unwrap_or(0);
    row("items".into(), &|e| Some(e.t0.items.to_string()));
    for l in 0..width {
        row(format!("level {} codes used", l + 1), &|e| {
            e.t0.levels.get(l).map(|v| match v.codebook_size {
                Some(k) => format!("{}/{k}", v.distinct),
                None => v.distinct.to_string(),
            })
        });
        row(format!("level {} perplexity", l + 1), &|e| {
            e.t0.levels.get(l).map(|v| format!("{:.1}", v.perplexity))
        });
    }
    let b = |e: &sidtool::eval::Evaluation| e.t0.buckets.clone();
    row("distinct IDs".into(), &|e| {
        Some(b(e).distinct_ids.to_string())
    });
    row("unique-item rate".into(), &|e| {
        Some(format!("{:.4}", b(e).unique_item_rate))
    });
    row("max / p99 items per ID".into(), &|e| {
        Some(format!(
            "{} / {}",
            b(e).max_items_per_id,
            b(e).p99_items_per_id
        ))
    });
    row("Gini of items per ID".into(), &|e| {
        Some(format!("{:.4}", b(e).gini))
    });
    row("entropy ratio".into(), &|e| {
        Some(format!("{:.4}", b(e).entropy_ratio))
    });
    let lift = |v: &Option<Vec<sidtool::eval::t0::ByPrefix>>, l: usize| {
        v.as_ref()
            .and_then(|v| v.get(l))
            .and_then(|p| p.lift)
            .map(|x| format!("{x:.2}"))
    };
    for l in 0..width {
        row(format!("co-consumption lift, prefix {}", l + 1), &|e| {
            lift(&e.t0.co_consumption, l)
        });
    }
    for l in 0..width {
        row(format!("category lift, prefix {}", l + 1), &|e| {
            lift(&e.t0.category, l)
        });
    }
    for l in 0..width {
        row(format!("kNN sharing prefix {} (random)", l + 1), &|e| {
            e.t0.neighbours.as_ref().and_then(|n| {
                Some(format!(
                    "{:.4} ({:.4})",
                    n.share.get(l)?,
                    n.random_share.get(l)?
                ))
            })
        });
    }
    type Pick = fn(&sidtool::eval::t1::Ranking) -> f64;
    let metrics: [(&str, Pick); 4] = [
        ("recall@5", |r| r.recall_5),
        ("recall@10", |r| r.recall_10),
        ("ndcg@5", |r| r.ndcg_5),
        ("ndcg@10", |r| r.ndcg_10),
    ];
    for (model, pick_model) in [
        (
            "next item, IDs",
            (|t| &t.sid) as fn(&sidtool::eval::t1::T1) -> &sidtool::eval::t1::Ranking,
        ),
        ("next item, item Markov", |t| &t.item_markov),
        ("next item, popularity", |t| &t.popularity),
    ] {
        for (m, pick) in metrics {
            row(format!("{model} {m}"), &|e| {
                e.t1.as_ref().map(|t| format!("{:.4}", pick(pick_model(t))))
            });
        }
    }
    for (m, pick) in metrics {
        row(format!("next item, T2 transformer {m}"), &|e| {
            e.t2.as_ref().map(|t| format!("{:.4}", pick(&t.sid)))
        });
    }
    row("T2 loss: train / validation".into(), &|e| {
        e.t2.as_ref()
            .map(|t| format!("{:.3} / {:.3}", t.train_loss, t.valid_loss))
    });
    let depth = evals
        .iter()
        .filter_map(|e| e.t1.as_ref().map(|t| t.by_context.len()))
        .max()
        .unwrap_or(0);
    for m in 0..depth {
        row(
            format!("next item recall@10, previous item by {m}-prefix"),
            &|e| {
                e.t1.as_ref()
                    .and_then(|t| t.by_context.get(m))
                    .map(|c| format!("{:.4}", c.ranking.recall_10))
            },
        );
    }
    let name_w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let cols: Vec<String> = evals.iter().map(|e| e.table.clone()).collect();
    let col_w: Vec<usize> = (0..evals.len())
        .map(|j| {
            rows.iter()
                .map(|r| r.1[j].chars().count())
                .chain([cols[j].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:name_w$}", "");
    for (c, w) in cols.iter().zip(&col_w) {
        let _ = write!(out, "  {c:>w$}");
    }
    out.push('\n');
    for (name, cells) in &rows {
        let _ = write!(out, "{name:name_w$}");
        for (c, w) in cells.iter().zip(&col_w) {
            let _ = write!(out, "  {c:>w$}");
        }
        out.push('\n');
    }
    out
}
