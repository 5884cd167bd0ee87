//! `sidtool embed`: a catalogue streamed through an encoder into `embeddings.parquet`.
//!
//! Items are processed in windows of `window_rows` input rows. Within a window they are
//! tokenized in parallel, sorted by length and cut into batches by a token budget, then put
//! back in input order. Each finished window is written as its own Parquet part into a hidden
//! `.NAME.partial/` directory beside the output, atomically; at the end the parts are joined
//! into the output (atomic rename) and the directory is removed. A killed run leaves its
//! finished parts behind, and `--resume` skips the windows they cover. Each part's length and
//! SHA-256 are recorded beside it (`check-NNNNNN.json`); a part that no longer matches them is
//! discarded with a warning and its window embedded again.

use crate::embed::batching;
use crate::embed::config::EmbedConfig;
use crate::embed::encoder::{Encoder, EncoderInfo};
use crate::embed::items::ItemTextReader;
use crate::embed::models::qwen3::ForwardTimes;
use crate::embed::template::{DEFAULT_TEMPLATE, Template};
use crate::error::{Error, Result};
use crate::io::embeddings::{EmbeddingWriter, open_parquet};
use crate::io::input::InputConfig;
use crate::item_id::{IdKey, ItemIds};
use crate::matrix::Matrix;
use crate::progress::Progress;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Parquet footer key holding the [`EncoderInfo`] (plus template) of an embeddings file.
pub(crate) const META_KEY: &str = "sidtool:embed";

/// What an embed run did.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    pub encoder: EncoderInfo,
    pub template: String,
    pub items: u64,
    /// Items taken from a previous run's finished parts.
    pub resumed_items: u64,
    /// Real tokens and padded tokens actually run through the model.
    pub tokens: u64,
    pub padded_tokens: u64,
    /// Texts cut to `max_length`.
    pub truncated: u64,
    /// Items whose template gave no text (all fields null); they embed the end token alone.
    pub empty_texts: u64,
    pub seconds: f64,
}

impl EmbedReport {
    /// An empty report of a run with this encoder and template.
    pub(crate) fn new(encoder: EncoderInfo, template: &str) -> Self {
        EmbedReport {
            encoder,
            template: template.into(),
            items: 0,
            resumed_items: 0,
            tokens: 0,
            padded_tokens: 0,
            truncated: 0,
            empty_texts: 0,
            seconds: 0.0,
        }
    }
}

/// The settings a partial run must share with the run that resumes it.
#[derive(Serialize, PartialEq)]
struct RunKey {
    sidtool_version: String,
    input: PathBuf,
    input_bytes: u64,
    input_modified_ns: u128,
    id_column: String,
    template: String,
    window_rows: usize,
    encoder: String,
}

fn partial_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.partial"))
}

fn part_path(dir: &Path, w: usize) -> PathBuf {
    dir.join(format!("part-{w:06}.parquet"))
}

/// Beside each finished part: its length and SHA-256, written once the part is complete, so a
/// resumed run can tell a part that was truncated or changed since (and embed it again) from a
/// good one.
fn check_path(dir: &Path, w: usize) -> PathBuf {
    dir.join(format!("check-{w:06}.json"))
}

#[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
struct PartCheck {
    bytes: u64,
    sha256: String,
}

fn part_check(path: &Path) -> Result<PartCheck> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok(PartCheck {
        bytes,
        sha256: format!("{:x}", h.finalize()),
    })
}

/// Why part `w` cannot be reused, if it cannot.
fn part_problem(dir: &Path, w: usize) -> Option<String> {
    let recorded: PartCheck = match std::fs::read_to_string(check_path(dir, w))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(c) => c,
        None => return Some("it has no (readable) checksum record".into()),
    };
    match part_check(&part_path(dir, w)) {
        Ok(c) if c == recorded => None,
        Ok(c) if c.bytes != recorded.bytes => Some(format!(
            "it has {} bytes, {} when it was written",
            c.bytes, recorded.bytes
        )),
        Ok(_) => Some("its checksum differs from the one recorded when it was written".into()),
        Err(e) => Some(e.to_string()),
    }
}

/// Indices of the part files in `dir`.
fn part_indices(dir: &Path) -> Vec<usize> {
    let mut v: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("part-")?
                .strip_suffix(".parquet")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// Ids seen so far, to reject duplicates as soon as they appear.
#[derive(Default)]
struct SeenIds {
    ints: HashSet<i64>,
    strs: HashSet<String>,
}

impl SeenIds {
    /// The first position in `ids` already seen.
    fn add(&mut self, ids: &ItemIds) -> Option<usize> {
        (0..ids.len()).find(|&i| match ids.key(i) {
            IdKey::Int(v) => !self.ints.insert(v),
            IdKey::Str(s) => !self.strs.insert(s.to_string()),
        })
    }
}

/// Embed `items` into `out` (an `embeddings.parquet`). Only the two sections this stage reads
/// are validated, so an unrelated bad section (say `[quantizer]`) does not block embedding.
pub fn embed_file(
    items: &Path,
    out: &Path,
    e: &EmbedConfig,
    input: &InputConfig,
    resume: bool,
    progress: &dyn Progress,
) -> Result<EmbedReport> {
    e.validate()?;
    input.validate()?;
    let start = Instant::now();
    let template = Template::parse(e.template.as_deref().unwrap_or(DEFAULT_TEMPLATE))?;
    let mut reader = ItemTextReader::open(
        items,
        &input.id_column,
        &template,
        e.template.is_some(),
        input.batch_rows,
    )?;
    if reader.num_rows == 0 {
        return Err(Error::input(items, None, None, "has no rows"));
    }
    check_output(items, out)?;
    // One run per output for the whole job: two runs would share the `.NAME.partial/` parts.
    crate::fs::atomic::ensure_parent(out)?;
    let _lock = crate::fs::lock::OutputLock::acquire(out)?;
    // Null and duplicate ids are found before the model loads, not hours into a run.
    let id_type = check_ids(items, &input.id_column)?;
    let encoder = Encoder::load(e)?;
    let info = encoder.info.clone();
    let meta = serde_json::json!({ "encoder": &info, "template": template.source() });

    let dir = partial_dir(out);
    let key = run_key(items, e, input, &template, &info)?;
    let key_json = serde_json::to_string_pretty(&key).expect("serialisable");
    let done = prepare_partial(&dir, &key_json, resume)?;
    let run = Run {
        encoder: &encoder,
        dir: &dir,
        done,
        window_rows: e.window_rows,
        batch_tokens: e.batch_tokens(),
        delay: test_part_delay(),
    };
    let result = run
        .windows(&mut reader, progress)
        .and_then(|(parts, mut report)| {
            if report.resumed_items == 0 && report.empty_texts == report.items {
                // Every item would get the same vector (the end token's): nothing to keep.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::input(
                    items,
                    None,
                    None,
                    format!(
                        "none of its {} items has any text: the template {:?} reads {}, which \
                         are null or absent in every row, so every item would get the same \
                         vector. Pass --template with the columns that hold the item text",
                        report.items,
                        template.source(),
                        template
                            .fields()
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            join_parts(&dir, parts, out, id_type, info.dim, &meta)?;
            report.template = template.source().to_string();
            Ok(report)
        });
    match result {
        Ok(mut report) => {
            let _ = std::fs::remove_dir_all(&dir);
            report.seconds = start.elapsed().as_secs_f64();
            Ok(report)
        }
        Err(err) => {
            let kept = count_parts(&dir);
            if kept == 0 {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                tracing::warn!(
                    "{kept} finished part(s) kept in {}; rerun with --resume to continue",
                    dir.display()
                );
            }
            Err(err)
        }
    }
}

/// Refuse outputs that would only fail after all the work, or destroy the input.
fn check_output(items: &Path, out: &Path) -> Result<()> {
    if out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::Config(format!(
            "--out {}: is a directory; give the path of the embeddings Parquet file to write",
            out.display()
        )));
    }
    crate::fs::inputs::check_output(out, crate::fs::inputs::OutputKind::File, &[items])
}

/// One pass over the id column: nulls and duplicates, with their rows. Returns the id type.
fn check_ids(items: &Path, id_col: &str) -> Result<arrow_schema::DataType> {
    let builder = open_parquet(items)?;
    let idx = builder
        .schema()
        .index_of(id_col)
        .map_err(|e| Error::arrow(items, e))?;
    let reader = builder.reader(None, Some(&[idx]))?;
    let mut seen = SeenIds::default();
    let mut first = 0u64;
    let mut id_type = None;
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(items, e))?;
        let col = batch.column(0);
        let ids = ItemIds::from_column(col.as_ref(), items, id_col, first)?;
        if let Some(r) = seen.add(&ids) {
            return Err(Error::input(
                items,
                Some(id_col),
                Some(first + r as u64),
                format!("duplicate item id {}", ids.display(r)),
            ));
        }
        id_type.get_or_insert(ids.data_type());
        first += batch.num_rows() as u64;
    }
    id_type.ok_or_else(|| Error::input(items, None, None, "has no rows"))
}

fn count_parts(dir: &Path) -> usize {
    part_indices(dir).len()
}

/// The streaming part of a run: windows in, parts out.
struct Run<'a> {
    encoder: &'a Encoder,
    dir: &'a Path,
    /// Windows whose finished parts a resumed run reuses.
    done: HashSet<usize>,
    window_rows: usize,
    batch_tokens: usize,
    delay: Option<std::time::Duration>,
}

impl Run<'_> {
    /// Embed every window not already done; returns the number of parts and the figures.
    fn windows(
        &self,
        reader: &mut ItemTextReader,
        progress: &dyn Progress,
    ) -> Result<(usize, EmbedReport)> {
        let mut report = EmbedReport::new(self.encoder.info.clone(), "");
        progress.start("embed", Some(reader.num_rows));
        let mut window: Option<(ItemIds, Vec<String>)> = None;
        let mut w = 0usize;
        for batch in reader {
            let b = batch?;
            let n = b.texts.len();
            let mut texts = b.texts.into_iter();
            let mut pos = 0;
            // Cut the record batch at window boundaries.
            while pos < n {
                let (wi, wt) = window.get_or_insert_with(|| (b.ids.select(&[]), Vec::new()));
                let take = (self.window_rows - wt.len()).min(n - pos);
                wi.extend(b.ids.select(&(pos..pos + take).collect::<Vec<_>>()));
                wt.extend(texts.by_ref().take(take));
                pos += take;
                if wt.len() == self.window_rows {
                    let (wi, wt) = window.take().expect("just filled");
                    self.flush(w, wi, wt, &mut report, progress)?;
                    w += 1;
                }
            }
        }
        if let Some((wi, wt)) = window.take() {
            self.flush(w, wi, wt, &mut report, progress)?;
            w += 1;
        }
        progress.finish();
        Ok((w, report))
    }

    fn flush(
        &self,
        w: usize,
        ids: ItemIds,
        texts: Vec<String>,
        report: &mut EmbedReport,
        progress: &dyn Progress,
    ) -> Result<()> {
        report.items += ids.len() as u64;
        if self.done.contains(&w) {
            report.resumed_items += ids.len() as u64;
            progress.advance(ids.len() as u64);
            return Ok(());
        }
        report.empty_texts += texts.iter().filter(|t| t.is_empty()).count() as u64;
        let vectors = embed_window(self.encoder, &texts, self.batch_tokens, report, progress)?;
        let dim = self.encoder.info.dim;
        let part = part_path(self.dir, w);
        let mut writer = EmbeddingWriter::create(&part, ids.data_type(), dim)?;
        writer.write(&ids, &vectors)?;
        writer.finish()?;
        let check = serde_json::to_string(&part_check(&part)?).expect("serialisable");
        crate::fs::atomic::write_file(&check_path(self.dir, w), check.as_bytes())?;
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        Ok(())
    }
}

/// Tokenize, batch by length and run one window; rows come back in input order.
pub(crate) fn embed_window(
    encoder: &Encoder,
    texts: &[String],
    batch_tokens: usize,
    report: &mut EmbedReport,
    progress: &dyn Progress,
) -> Result<Matrix> {
    let (ids, truncated) = encoder.tokenize_counted(texts)?;
    report.truncated += truncated as u64;
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let plan = batching::plan(&lengths, batch_tokens);
    let dim = encoder.info.dim;
    let mut out = Matrix::zeros(texts.len(), dim);
    let mut times = ForwardTimes::default();
    for batch in &plan {
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        report.tokens += seqs.iter().map(|s| s.len() as u64).sum::<u64>();
        report.padded_tokens += (longest * seqs.len()) as u64;
        let vecs = encoder.embed_tokens(&seqs, Some(&mut times))?;
        for (&i, v) in batch.iter().zip(vecs) {
            out.row_mut(i).copy_from_slice(&v);
        }
        progress.advance(batch.len() as u64);
    }
    Ok(out)
}

fn run_key(
    items: &Path,
    e: &EmbedConfig,
    input: &InputConfig,
    template: &Template,
    info: &EncoderInfo,
) -> Result<RunKey> {
    let (bytes, modified) = crate::io::parts::identity(items)?;
    Ok(RunKey {
        sidtool_version: crate::VERSION.into(),
        input: std::fs::canonicalize(items).unwrap_or_else(|_| items.to_path_buf()),
        input_bytes: bytes,
        input_modified_ns: modified,
        id_column: input.id_column.clone(),
        template: template.source().into(),
        window_rows: e.window_rows,
        encoder: serde_json::to_string(info).expect("serialisable"),
    })
}

/// Set up the partial directory; returns the windows whose finished parts a resumed run can
/// reuse. A part that fails its check is discarded (and embedded again), not fatal: otherwise
/// every `--resume` would fail on it.
fn prepare_partial(dir: &Path, key_json: &str, resume: bool) -> Result<HashSet<usize>> {
    let key_path = dir.join("run.json");
    if dir.exists() {
        if resume {
            let old = std::fs::read_to_string(&key_path).unwrap_or_default();
            if old != key_json {
                return Err(Error::Config(format!(
                    "--resume: the unfinished run in {} used a different input or different \
                     settings ({}); rerun without --resume to start over",
                    dir.display(),
                    differing_keys(&old, key_json)
                )));
            }
            let mut done = HashSet::new();
            for w in part_indices(dir) {
                match part_problem(dir, w) {
                    None => {
                        done.insert(w);
                    }
                    Some(why) => {
                        let part = part_path(dir, w);
                        tracing::warn!(
                            "discarding {}: {why}; its items are embedded again",
                            part.display()
                        );
                        std::fs::remove_file(&part).map_err(|e| Error::io(&part, e))?;
                        let _ = std::fs::remove_file(check_path(dir, w));
                    }
                }
            }
            tracing::info!(
                "resuming: {} finished part(s) found in {}",
                done.len(),
                dir.display()
            );
            return Ok(done);
        }
        tracing::warn!(
            "discarding an unfinished earlier run in {} ({} finished part(s); use --resume to \
             continue it instead)",
            dir.display(),
            count_parts(dir)
        );
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    } else if resume {
        tracing::info!("--resume: no unfinished run found; starting from the beginning");
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::fs::atomic::write_file(&key_path, key_json.as_bytes())?;
    Ok(HashSet::new())
}

/// Which top-level keys of two run.json texts differ, for the resume error.
fn differing_keys(old: &str, new: &str) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::from_str::<serde_json::Value>(old),
        serde_json::from_str::<serde_json::Value>(new),
    ) else {
        return "its run.json is unreadable".into();
    };
    let keys: Vec<&str> = b
        .keys()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(String::as_str)
        .collect();
    format!("differs in: {}", keys.join(", "))
}

/// Concatenate parts 0..n into `out` (atomically), with the encoder metadata in the footer.
fn join_parts(
    dir: &Path,
    n: usize,
    out: &Path,
    id_type: arrow_schema::DataType,
    dim: usize,
    meta: &serde_json::Value,
) -> Result<()> {
    let mut writer = EmbeddingWriter::create_with_meta(
        out,
        id_type,
        dim,
        vec![(META_KEY.to_string(), meta.to_string())],
    )?;
    for w in 0..n {
        let p = part_path(dir, w);
        let reader = open_parquet(&p)?.reader(None, None)?;
        for batch in reader {
            writer.write_batch(&batch.map_err(|e| Error::arrow(&p, e))?)?;
        }
    }
    writer.finish()
}

/// Hidden test hook: sleep after each finished part, so a test can kill a run part-way.
fn test_part_delay() -> Option<std::time::Duration> {
    std::env::var("SIDTOOL_TEST_PART_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis)
}
