//! What the user sees: progress while a stage runs and log lines (stderr), and each command's
//! human report (stdout, see [`Say`]).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sidtool::collab::CollabSummary;
use sidtool::embed::job::EmbedReport;
use sidtool::io::recbole::{self, TableReport};
use sidtool::progress::Progress;
use sidtool::vocab::extend::VocabReport;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Seconds between plain progress lines when stderr is not a terminal (a pipeline's log):
/// often enough that a stuck job shows within a glance at the log, rarely enough that an
/// hour-long stage writes a few hundred lines.
const PLAIN_EVERY_S: f64 = 10.0;

/// Every live bar is drawn through this one `MultiProgress`, so that a log line can clear the
/// bars, print, and redraw them (see [`LogWriter`]) instead of leaving a half-drawn bar behind.
static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);

/// Progress as an indicatif bar on a terminal, plain lines otherwise (`stage: started`, a
/// line with the count, rate and ETA every [`PLAIN_EVERY_S`] seconds, or as often as the
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
            BARS.add(b)
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
                eprintln!(
                    "{}",
                    plain_line(
                        &s.name,
                        s.bar.position(),
                        s.bar.length(),
                        s.started.elapsed()
                    )
                );
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
            BARS.remove(&s.bar);
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

/// One plain progress line: `stage: 1200/5000 (24.0%), 300/s, eta 13s`; without a known
/// total, the count and the rate only.
fn plain_line(stage: &str, pos: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = pos as f64 / elapsed.as_secs_f64().max(1e-9);
    match total {
        Some(t) => {
            let pct = 100.0 * pos as f64 / (t.max(1)) as f64;
            let eta = if pos >= t {
                "0s".to_string()
            } else if pos == 0 {
                "unknown".to_string()
            } else {
                human_seconds((t - pos) as f64 / rate)
            };
            format!("{stage}: {pos}/{t} ({pct:.1}%), {rate:.0}/s, eta {eta}")
        }
        None => format!("{stage}: {pos}, {rate:.0}/s"),
    }
}

/// `42s`, `3m05s`, `2h07m`: short enough for a log line, exact enough for an ETA.
fn human_seconds(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Where a finished log line's bytes go (stderr; a test's in-memory terminal).
type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The log's writer (tracing's `MakeWriter`): each event is collected whole, then printed
/// while the live bars are cleared, and the bars are redrawn below it.
#[derive(Clone)]
pub struct LogWriter {
    bars: MultiProgress,
    sink: Sink,
}

impl LogWriter {
    /// Log lines to stderr, above sidtool's bars.
    pub fn stderr() -> Self {
        LogWriter {
            bars: BARS.clone(),
            sink: Arc::new(|b| {
                let _ = std::io::stderr().write_all(b);
            }),
        }
    }
}

/// One event's text, printed when tracing drops the writer at the end of the event.
pub struct LogLine {
    buf: Vec<u8>,
    to: LogWriter,
}

impl std::io::Write for LogLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let (buf, sink) = (&self.buf, &self.to.sink);
            self.to.bars.suspend(|| sink(buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine {
            buf: Vec::new(),
            to: self.clone(),
        }
    }
}

/// Where a command's human report goes: stdout, since it is the command's result, or stderr
/// when stdout already carries the command's data (`-` as an output); nothing with `-q`.
/// `wrote …` lines and warnings always go to stderr.
#[derive(Clone, Copy)]
pub struct Say {
    quiet: bool,
    to_stderr: bool,
}

impl Say {
    pub fn new(quiet: bool) -> Self {
        Say {
            quiet,
            to_stderr: false,
        }
    }

    /// The same, with the report on stderr: stdout is taken by data.
    pub fn to_stderr(self) -> Self {
        Say {
            to_stderr: true,
            ..self
        }
    }

    /// The command's human report (ends with a newline).
    pub fn report(&self, text: &str) -> anyhow::Result<()> {
        match (self.quiet, self.to_stderr) {
            (true, _) => Ok(()),
            (false, true) => {
                eprint!("{text}");
                Ok(())
            }
            (false, false) => print_out(text),
        }
    }

    /// A log line: `wrote …`, a warning.
    pub fn log(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// Results on stdout, flushed so a closed pipe surfaces here as an error (see `main`).
pub fn print_out(s: &str) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// `sidtool embed`.
pub fn embedded(r: &EmbedReport) -> String {
    let padding = if r.tokens > 0 {
        format!(
            "padding {:.1}%",
            100.0 * (r.padded_tokens as f64 / r.tokens as f64 - 1.0)
        )
    } else {
        "nothing left to run".into()
    };
    format!(
        "embedded {} items ({} from an earlier run) with {} ({}, {} pooling, dim {}): \
         {} tokens, {padding}, {} truncated to {} tokens, {:.2}s\n",
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
    )
}

/// `sidtool vocab`.
pub fn vocab(r: &VocabReport) -> String {
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
    format!(
        "base vocabulary {}, added {} {what}{} ({levels}), new vocabulary {}; every item's \
         {checked} tokenizes to one token per level\n{}\n",
        r.base_vocab_size,
        r.tokens.len(),
        if r.markers.is_empty() {
            String::new()
        } else {
            format!(" and {} markers", r.markers.len())
        },
        r.vocab_size,
        resize_advice(r)
    )
}

/// What to do with the LLM's embedding matrix (recorded in sid_tokens.json too).
fn resize_advice(r: &VocabReport) -> String {
    let z = &r.resize;
    let range = |x: &sidtool::vocab::embeddings::IdRange| format!("{}–{}", x.first, x.last);
    let mut s = match z.embedding_rows {
        Some(rows) if rows == z.resize_embeddings_to => format!(
            "embeddings: the model's {rows} rows already hold the new ids: no resize needed"
        ),
        Some(rows) => format!(
            "embeddings: resize the model's {rows} rows to {} (a multiple of {})",
            z.resize_embeddings_to, r.pad_to_multiple
        ),
        None => format!(
            "embeddings: resize to {} (a multiple of {}); give --llm a model directory or hub \
             id with config.json to check it against the model's rows",
            z.resize_embeddings_to, r.pad_to_multiple
        ),
    };
    if let Some(x) = &z.reused_rows {
        s += &format!(
            "; ids {} fall on existing rows that were never trained and that resizing does not \
             initialise: initialise them yourself (--init-embeddings writes rows for them)",
            range(x)
        );
    }
    if let Some(x) = &z.new_rows {
        s += &format!("; ids {} are new rows", range(x));
    }
    s
}

/// `sidtool collab`.
pub fn collab(s: &CollabSummary) -> String {
    format!(
        "{} items, {} users, {} interactions ({} naming items not in the catalogue, \
         skipped); {} items without interactions (zero vectors); PPMI nonzeros {}; \
         {} of {} dimensions non-zero\n",
        s.items,
        s.users,
        s.events,
        s.unknown_events,
        s.without_interactions,
        s.nonzeros,
        s.rank,
        s.dim,
    )
}

/// `sidtool import-recbole`: the tables on stdout, warnings on stderr.
pub fn recbole(
    ds: &recbole::Dataset,
    dir: &Path,
    r: &recbole::Report,
    say: Say,
) -> anyhow::Result<()> {
    let mut o = String::new();
    let mut table = |t: &TableReport| {
        let _ = writeln!(
            o,
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
            let _ = writeln!(
                o,
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
        let _ = writeln!(
            o,
            "no {}.item in {}: wrote interactions only",
            ds.name,
            dir.display()
        );
    }
    say.report(&o)?;
    if let Some(stale) = &r.stale {
        say.log(&format!(
            "warning: {} is left from an earlier run, not from this dataset",
            stale.display()
        ));
    }
    for p in &r.not_imported {
        say.log(&format!("not imported: {}", p.display()));
    }
    Ok(())
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
    row("new items (cold start): items / users".into(), &|e| {
        let c =
            e.t1.as_ref()
                .and_then(|t| t.cold.as_ref())
                .or(e.t2.as_ref().and_then(|t| t.cold.as_ref()))?;
        Some(format!("{} / {}", c.new_items, c.users))
    });
    type PickCold = fn(&sidtool::eval::Evaluation) -> Option<&sidtool::eval::cold::ColdRanking>;
    let cold: [(&str, PickCold); 2] = [
        ("IDs", |e| e.t1.as_ref().and_then(|t| t.cold.as_ref())),
        ("T2 transformer", |e| {
            e.t2.as_ref().and_then(|t| t.cold.as_ref())
        }),
    ];
    for (model, pick_cold) in cold {
        for (m, pick) in metrics {
            row(format!("new items, {model} {m}"), &|e| {
                pick_cold(e).map(|c| format!("{:.4}", pick(&c.sid)))
            });
        }
    }
    for (m, pick) in metrics {
        row(format!("new items, content baseline {m}"), &|e| {
            e.t1.as_ref()
                .and_then(|t| t.cold.as_ref())
                .and_then(|c| c.content.as_ref())
                .map(|c| format!("{:.4}", pick(c)))
        });
    }
    for (m, pick) in metrics {
        row(format!("new items, uniform guess {m}"), &|e| {
            e.t1.as_ref()
                .and_then(|t| t.cold.as_ref())
                .or(e.t2.as_ref().and_then(|t| t.cold.as_ref()))
                .map(|c| format!("{:.4}", pick(&c.uniform)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{InMemoryTerm, ProgressDrawTarget, TermLike};

    #[test]
    fn plain_lines_carry_count_total_rate_and_eta() {
        let l = plain_line("embed", 1200, Some(5000), Duration::from_secs(4));
        assert_eq!(l, "embed: 1200/5000 (24.0%), 300/s, eta 13s");
        let l = plain_line("embed", 100, Some(100_000), Duration::from_secs(1));
        assert_eq!(l, "embed: 100/100000 (0.1%), 100/s, eta 16m39s");
        assert_eq!(
            plain_line("assign (rows)", 10, None, Duration::from_secs(2)),
            "assign (rows): 10, 5/s"
        );
        assert!(plain_line("x", 0, Some(9), Duration::from_secs(1)).ends_with("eta unknown"));
        assert!(plain_line("x", 9, Some(9), Duration::from_secs(1)).ends_with("eta 0s"));
        assert_eq!(human_seconds(7300.0), "2h01m");
    }

    /// A log line printed while a bar is drawn lands above the bar, and the bar is redrawn
    /// whole below it (without the suspend, the line is written over the bar's row).
    #[test]
    fn log_lines_print_above_a_live_bar() {
        let term = InMemoryTerm::new(10, 60);
        let bars =
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let bar = bars.add(
            ProgressBar::new(10)
                .with_style(ProgressStyle::with_template("{msg} {pos}/{len}").unwrap()),
        );
        bar.set_message("assign");
        bar.set_position(3);
        bar.tick();
        let sink_term = term.clone();
        let w = LogWriter {
            bars: bars.clone(),
            sink: Arc::new(move |b| {
                let _ = sink_term.write_str(std::str::from_utf8(b).unwrap());
            }),
        };
        {
            use tracing_subscriber::fmt::MakeWriter;
            let mut line = w.make_writer();
            line.write_all(b"INFO level 1 fitted\r\n").unwrap();
        }
        assert_eq!(term.contents(), "INFO level 1 fitted\nassign 3/10");
    }
}
