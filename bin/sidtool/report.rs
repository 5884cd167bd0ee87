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

/// Progress as an indicatif bar on a terminal, plain lines otherwise, nothing when quiet.
pub struct Reporter {
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

impl Reporter {
    /// Bars on a terminal, plain lines otherwise.
    pub fn new(quiet: bool) -> Self {
        Reporter {
            bars: std::io::stderr().is_terminal(),
            quiet,
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
