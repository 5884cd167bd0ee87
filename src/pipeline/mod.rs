//! Stage orchestration: `train`, `assign` and the whole `build`, each usable from the library.

use crate::config::{Config, Dedup, InputConfig, Method};
use crate::error::{Error, Result};
use crate::ids::dedup::Existing;
use crate::ids::dedup::{self, Resolution};
use crate::ids::stats::{self, IdStats, ResolutionStats, Stats};
use crate::io::embeddings::{self, EmbeddingReader, EmbeddingWriter};
use crate::io::item_ids::{IdKey, ItemIds};
use crate::io::sid_table::{self, SidMeta, SidTable};
use crate::matrix::{Matrix, sq_dist};
use crate::progress::Progress;
use crate::quant::{self, Quantizer, kmeans::sample_indices};
use rand::SeedableRng;
use serde::Serialize;
use std::collections::HashMap;

mod join;
mod manifest;
mod staging;

use crate::ids::kind::IdKind;
use crate::io::sid_table::{CidPart, DualMeta, IdColumns};
pub use join::{CollabVectors, collab_vectors};

pub use manifest::{InputFile, Manifest, Timing, VocabSummary, sha256_file};
use staging::Staging;
use std::path::Path;
use std::time::Instant;

/// Vectors to encode: already in memory, or a Parquet file streamed batch by batch.
pub enum Source<'a> {
    Memory {
        ids: &'a ItemIds,
        vectors: &'a Matrix,
        path: &'a Path,
    },
    File {
        path: &'a Path,
        input: &'a InputConfig,
        /// GenSAR: collaborative vectors appended to every row (zeros for items without one).
        collab: Option<&'a CollabVectors>,
    },
}

impl Source<'_> {
    fn path(&self) -> &Path {
        match self {
            Source::Memory { path, .. } | Source::File { path, .. } => path,
        }
    }

    /// The vector column, for error messages.
    fn column(&self) -> &str {
        match self {
            Source::Memory { .. } => "embedding",
            Source::File { input, .. } => &input.embedding_column,
        }
    }

    /// Call `f(first_row, ids, vectors)` for every batch, in file order.
    fn for_each(&self, mut f: impl FnMut(usize, &ItemIds, &Matrix) -> Result<()>) -> Result<()> {
        match self {
            Source::Memory { ids, vectors, .. } => f(0, ids, vectors),
            Source::File {
                path,
                input,
                collab,
            } => {
                let reader = EmbeddingReader::with_config(path, input)?;
                for b in reader {
                    let b = b?;
                    match collab {
                        None => f(b.first_row as usize, &b.ids, &b.vectors)?,
                        Some(c) => f(b.first_row as usize, &b.ids, &c.join(&b.ids, &b.vectors).0)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// For a GenSAR quantizer: the semantic vectors must be as wide as it was trained on, and
    /// so must the collaborative ones; each mismatch names its own file (the joined width alone
    /// cannot tell 64 + 32 from 32 + 64).
    fn check_dual(&self, q: &dyn Quantizer) -> Result<()> {
        let (
            Some(d),
            Source::File {
                path,
                input,
                collab,
            },
        ) = (q.dual(), self)
        else {
            return Ok(());
        };
        let want_u = q.dim() - d.semantic_dim;
        if let Some(c) = collab
            && c.dim() != want_u
        {
            return Err(Error::input(
                &c.path,
                Some(&c.column),
                None,
                format!(
                    "collaborative vectors have {} dimensions but the quantizer was trained on \
                     {want_u}",
                    c.dim()
                ),
            ));
        }
        if let Some(b) = EmbeddingReader::with_config(path, input)?.next() {
            let cols = b?.vectors.cols;
            if cols != d.semantic_dim {
                return Err(Error::input(
                    path,
                    Some(&input.embedding_column),
                    None,
                    format!(
                        "vectors have {cols} dimensions but the quantizer's semantic part was \
                         trained on {}",
                        d.semantic_dim
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where the collaborative vectors come from, for messages.
    fn collab_origin(&self) -> String {
        match self {
            Source::File {
                collab: Some(c), ..
            } => format!("{} (column {})", c.path.display(), c.column),
            _ => "the collaborative vectors given".into(),
        }
    }
}

/// Mixed into the seed for the training sample, so the sample's random stream differs from
/// k-means++'s, which starts from the same user seed.
const SAMPLE_SEED_SALT: u64 = 0x5EED_5A3B1E;

/// What one read of an embeddings file yields for training.
pub struct Scan {
    pub ids: ItemIds,
    /// The training rows (all rows when the file fits in the sample).
    pub sample: Matrix,
    /// Ids of the training rows.
    pub sample_ids: ItemIds,
    /// Whether `sample` holds every row, in file order.
    pub complete: bool,
    pub num_rows: u64,
}

/// Read `path` once: validate every row, keep a seeded sample of `train_sample` rows (0 = all),
/// and optionally copy every row to `embeddings.parquet`. Fails before reading any data when
/// the largest codebook (`max_k`) exceeds the training rows.
pub fn scan(
    path: &Path,
    input: &InputConfig,
    train_sample: usize,
    max_k: usize,
    seed: u64,
    mut copy_to: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Scan> {
    let reader = EmbeddingReader::with_config(path, input)?;
    let n = reader.num_rows as usize;
    let complete = train_sample == 0 || n <= train_sample;
    let train_rows = if complete { n } else { train_sample };
    if max_k > train_rows {
        return Err(Error::input(
            path,
            None,
            None,
            if complete {
                format!(
                    "codebook size {max_k} is larger than the {train_rows} rows; use smaller --codebook-sizes"
                )
            } else {
                format!(
                    "codebook size {max_k} is larger than the {train_rows} training rows; \
                     use smaller --codebook-sizes or a larger --train-sample"
                )
            },
        ));
    }
    let picked = if complete {
        None
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ SAMPLE_SEED_SALT);
        Some(sample_indices(n, train_sample, &mut rng))
    };
    let mut next_pick = 0;
    let mut ids: Option<ItemIds> = None;
    let mut sample = Matrix::zeros(0, 0);
    let mut writer: Option<EmbeddingWriter> = None;
    progress.start("read embeddings (rows)", Some(n as u64));
    for b in reader {
        let b = b?;
        if let Some(dest) = copy_to.take() {
            writer = Some(EmbeddingWriter::create(
                dest,
                b.ids.data_type(),
                b.vectors.cols,
            )?);
        }
        if let Some(w) = &mut writer {
            w.write(&b.ids, &b.vectors)?;
        }
        match &picked {
            None => sample.append(&b.vectors),
            Some(p) => {
                sample.append(&take_rows(
                    p,
                    &mut next_pick,
                    b.first_row as usize,
                    &b.vectors,
                ));
            }
        }
        progress.advance(b.vectors.rows as u64);
        match &mut ids {
            Some(all) => all.extend(b.ids),
            None => ids = Some(b.ids),
        }
    }
    progress.finish();
    let ids = ids.expect("reader rejects files without rows");
    embeddings::check_unique(&ids, path, &input.id_column)?;
    if let Some(w) = writer {
        w.finish()?;
    }
    let sample_ids = match &picked {
        None => ids.clone(),
        Some(p) => ids.select(p),
    };
    Ok(Scan {
        ids,
        sample,
        sample_ids,
        complete,
        num_rows: n as u64,
    })
}

/// Train a quantizer on (a sample of) an embeddings file.
pub fn train(path: &Path, cfg: &Config, progress: &dyn Progress) -> Result<Box<dyn Quantizer>> {
    cfg.validate()?;
    let s = scan(
        path,
        &cfg.input,
        cfg.quantizer.train_sample,
        max_k(cfg),
        cfg.seed,
        None,
        progress,
    )?;
    let pairs = training_pairs(cfg, &s.sample_ids)?;
    if cfg.quantizer.method == Method::Gensar {
        let cv = collab_vectors(path, &cfg.input, &cfg.collab.column)?;
        return train_gensar(&s, &cv, cfg, &pairs, progress);
    }
    quant::train(&s.sample, &cfg.quantizer, cfg.seed, &pairs, progress)
}

/// GenSAR on the scanned semantic vectors joined with their collaborative vectors.
fn train_gensar(
    s: &Scan,
    cv: &CollabVectors,
    cfg: &Config,
    pairs: &[(u32, u32)],
    progress: &dyn Progress,
) -> Result<Box<dyn Quantizer>> {
    let (x, missing) = cv.join(&s.sample_ids, &s.sample);
    if missing as usize == s.sample.rows {
        return Err(Error::input(
            &cv.path,
            Some(&cv.column),
            None,
            "has a vector for none of the training items: are the item ids the same?",
        ));
    }
    if missing > 0 {
        tracing::warn!(
            "{} of {} training items have no collaborative vector in {}; they train on zeros",
            missing,
            s.sample.rows,
            cv.path.display()
        );
    }
    quant::train_dual(&x, s.sample.cols, &cfg.quantizer, cfg.seed, pairs, progress)
}

/// Co-occurrence pairs among the training rows, from `[input] interactions` (none without).
pub fn training_pairs(cfg: &Config, sample_ids: &ItemIds) -> Result<Vec<(u32, u32)>> {
    let Some(path) = &cfg.input.interactions else {
        return Ok(Vec::new());
    };
    let index = crate::io::item_ids::IdIndex::new(sample_ids);
    let inter = crate::io::interactions::read(path, &index)?;
    let v = &cfg.quantizer.rqvae;
    let p = crate::collab::cooccur::pairs(&inter, v.window, v.max_pairs_per_item, cfg.seed);
    tracing::info!(
        events = inter.rows,
        users = p.users,
        pairs = p.pairs.len(),
        unknown_item_events = p.unknown_events,
        capped = p.capped,
        "co-occurrence pairs"
    );
    if p.unknown_events > 0 {
        tracing::warn!(
            "{}: {} of {} interactions name items that are not among the training items; \
             they are skipped{}",
            path.display(),
            p.unknown_events,
            inter.rows,
            crate::io::interactions::kind_hint(&inter, &index)
        );
    }
    if p.pairs.is_empty()
        && matches!(cfg.quantizer.method, Method::RqVae | Method::Gensar)
        && v.contrastive_weight > 0.0
    {
        return Err(Error::input(
            path,
            Some(crate::io::interactions::ITEM_COLUMN),
            None,
            format!(
                "gives no co-occurring pair of training items within a window of {} (of {} \
                 interactions, {} name unknown items); the contrastive loss needs pairs",
                v.window, inter.rows, p.unknown_events
            ),
        ));
    }
    Ok(p.pairs)
}

fn max_k(cfg: &Config) -> usize {
    cfg.quantizer
        .codebook_sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
}

/// Everything `assign` produces.
pub struct Assigned {
    pub ids: ItemIds,
    /// The quantizer's codes of the SID, rows × its levels.
    pub raw: Vec<u16>,
    /// Final SIDs.
    pub resolution: Resolution,
    /// GenSAR: the CID's quantizer codes and final CIDs.
    pub cid: Option<CidAssigned>,
    pub stats: Stats,
    pub meta: SidMeta,
}

pub struct CidAssigned {
    pub raw: Vec<u16>,
    pub resolution: Resolution,
}

/// The ID kinds a quantizer makes: the SID, and for GenSAR also the CID.
fn kinds(q: &dyn Quantizer) -> &'static [IdKind] {
    if q.dual().is_some() {
        &IdKind::BOTH
    } else {
        &IdKind::BOTH[..1]
    }
}

/// Levels (indices into all of the quantizer's levels) of one ID kind.
fn kind_levels(q: &dyn Quantizer, kind: IdKind) -> Vec<usize> {
    match q.dual() {
        Some(d) => d.kind_levels(kind),
        None => (0..q.levels()).collect(),
    }
}

/// One ID kind's codes (rows × its levels) out of all the quantizer's codes.
fn kind_codes(q: &dyn Quantizer, codes: &[u16], kind: IdKind) -> Vec<u16> {
    match q.dual() {
        Some(d) => d.split(codes, kind),
        None => codes.to_vec(),
    }
}

/// Per ID kind: Σ‖x_k − x̂_k,m‖² for prefix lengths m = 1..levels, and Σ‖x_k‖², where x_k is
/// the part of the input that ID reconstructs (all of it for single-ID quantizers).
fn id_sq_errors(q: &dyn Quantizer, x: &Matrix, codes: &[u16]) -> Result<Vec<(Vec<f64>, f64)>> {
    let norm = |m: &Matrix| m.row_sq_norms().iter().map(|&v| v as f64).sum::<f64>();
    let Some(d) = q.dual() else {
        return Ok(vec![(q.prefix_sq_errors(x, codes)?, norm(x))]);
    };
    IdKind::BOTH
        .iter()
        .map(|&kind| {
            let (off, w) = d.input_span(kind, x.cols);
            let xs = x.columns(off, w);
            let errs = (1..=d.kind_levels(kind).len())
                .map(|m| {
                    let xh = q.decode_id(codes, kind, m)?;
                    Ok((0..xs.rows)
                        .map(|i| sq_dist(xs.row(i), xh.row(i)) as f64)
                        .sum())
                })
                .collect::<Result<Vec<f64>>>()?;
            Ok((errs, norm(&xs)))
        })
        .collect()
}

/// Encode every row of `source`, resolve collisions and compute statistics.
///
/// With `existing` (an earlier sids.parquet made with the same quantizer), items it already
/// lists keep their IDs and are not re-encoded; new items get IDs that no existing item holds;
/// the result is the existing table followed by the new items. GenSAR's SIDs and CIDs are
/// resolved each on its own: both are unique after `suffix` or `reassign`.
pub fn assign(
    source: &Source,
    q: &dyn Quantizer,
    cfg: &Config,
    existing: Option<&SidTable>,
    progress: &dyn Progress,
) -> Result<Assigned> {
    let levels = q.levels();
    let sizes = q.codebook_sizes().to_vec();
    let kinds = kinds(q);
    if let Some(ex) = existing {
        check_existing(ex, q, cfg)?;
    }
    let known: HashMap<IdKey, usize> = existing
        .map(|e| (0..e.ids.len()).map(|i| (e.ids.key(i), i)).collect())
        .unwrap_or_default();
    let mut ids: Option<ItemIds> = None;
    // Every input id, kept apart from the new ones only with --existing (otherwise they agree).
    let mut input_ids: Option<ItemIds> = None;
    let mut file_rows = Vec::new();
    let mut raw = Vec::new();
    let mut err: Vec<(Vec<f64>, f64)> = kinds
        .iter()
        .map(|&k| (vec![0f64; kind_levels(q, k).len()], 0f64))
        .collect();
    source.check_dual(q)?;
    // GenSAR: encoded rows whose collaborative vector is missing or zero.
    let mut no_collab = 0u64;
    progress.start("assign (rows)", None);
    source.for_each(|first, bids, x| {
        quant::check_dim(q, x.cols, source.path(), source.column())?;
        if let Some(ex) = existing
            && !bids.same_kind(&ex.ids)
        {
            return Err(Error::input(
                source.path(),
                None,
                None,
                "item ids are integers in one table and strings in the other (see --existing)",
            ));
        }
        let fresh: Vec<usize> = (0..x.rows)
            .filter(|&i| !known.contains_key(&bids.key(i)))
            .collect();
        let (bids_new, x_new) = if fresh.len() == x.rows {
            (bids.clone(), None)
        } else {
            (bids.select(&fresh), Some(x.gather(&fresh)))
        };
        let x_new = x_new.as_ref().unwrap_or(x);
        if let Some(d) = q.dual() {
            no_collab += (0..x_new.rows)
                .filter(|&i| x_new.row(i)[d.semantic_dim..].iter().all(|&v| v == 0.0))
                .count() as u64;
        }
        let codes = q.encode(x_new)?;
        for (acc, (e, n)) in err.iter_mut().zip(id_sq_errors(q, x_new, &codes)?) {
            acc.0.iter_mut().zip(e).for_each(|(a, v)| *a += v);
            acc.1 += n;
        }
        raw.extend_from_slice(&codes);
        file_rows.extend(fresh.iter().map(|&i| first + i));
        extend(&mut ids, bids_new);
        if existing.is_some() {
            extend(&mut input_ids, bids.clone());
        }
        progress.advance(x.rows as u64);
        Ok(())
    })?;
    progress.finish();
    let ids = ids.ok_or_else(|| Error::input(source.path(), None, None, "contains no rows"))?;
    if q.dual().is_some() && no_collab > 0 {
        if no_collab as usize == file_rows.len() {
            return Err(Error::input(
                source.path(),
                None,
                None,
                format!(
                    "none of its {} items has a collaborative vector in {}: are the item ids \
                     the same (and the same kind, integers or strings)?",
                    file_rows.len(),
                    source.collab_origin()
                ),
            ));
        }
        tracing::warn!(
            "{no_collab} of {} items have no collaborative vector in {}; they are coded from zeros",
            file_rows.len(),
            source.collab_origin()
        );
    }
    let input_ids = input_ids.as_ref().unwrap_or(&ids);
    if let Source::File { path, input, .. } = source {
        embeddings::check_unique(input_ids, path, &input.id_column)?;
    }
    let absent = existing.map_or(0, |ex| {
        let present: std::collections::HashSet<IdKey> =
            (0..input_ids.len()).map(|i| input_ids.key(i)).collect();
        (0..ex.ids.len())
            .filter(|&i| !present.contains(&ex.ids.key(i)))
            .count() as u64
    });
    // Resolve each ID kind on its own.
    let mut resolved = Vec::new();
    for &kind in kinds {
        let own = kind_levels(q, kind);
        let last = *own.last().expect("every ID has a level");
        let kraw = kind_codes(q, &raw, kind);
        let fixed = existing.and_then(|e| match kind {
            IdKind::Sid => Some(Existing {
                codes: &e.codes,
                width: e.width,
            }),
            IdKind::Cid => e.cid.as_ref().map(|c| Existing {
                codes: &c.codes,
                width: c.width,
            }),
        });
        let res = dedup::resolve(
            &kraw,
            own.len(),
            &ids,
            cfg.ids.dedup,
            sizes[last],
            fixed,
            |need| {
                let rows: Vec<usize> = need.iter().map(|&i| file_rows[i]).collect();
                let x = gather_rows(source, &rows)?;
                let codes: Vec<u16> = need
                    .iter()
                    .flat_map(|&i| raw[i * levels..(i + 1) * levels].iter().copied())
                    .collect();
                q.level_distances(&x, &codes, last)
            },
        )?;
        resolved.push((kraw, res));
    }
    let recon: Vec<Option<Vec<f64>>> = err
        .iter()
        .map(|(e, n)| (*n > 0.0).then(|| e.iter().map(|v| v / n).collect()))
        .collect();
    let kind_sizes =
        |kind: IdKind| -> Vec<usize> { kind_levels(q, kind).iter().map(|&l| sizes[l]).collect() };
    let meta = SidMeta {
        sidtool_version: crate::VERSION.into(),
        method: q.method().name().into(),
        codebook_sizes: kind_sizes(IdKind::Sid),
        dedup: cfg.ids.dedup.name().into(),
        suffix_level: resolved[0].1.suffix_level,
        token_format: cfg.ids.token_format.clone(),
        quantizer_fingerprint: Some(q.fingerprint()),
        dual: q.dual().map(|d| DualMeta {
            shared_levels: d.shared_levels,
            semantic_levels: d.semantic_levels,
            collab_levels: d.collab_levels,
            cid_codebook_sizes: kind_sizes(IdKind::Cid),
            cid_suffix_level: resolved[1].1.suffix_level,
            sid_prefix: cfg.ids.sid_prefix.clone(),
            cid_prefix: cfg.ids.cid_prefix.clone(),
        }),
    };
    let mut resolved = resolved.into_iter();
    let (sid_raw, sid_res) = resolved.next().expect("a SID");
    let cid = resolved.next();
    let (ids, raw, resolution, cid) = match existing {
        Some(ex) => {
            let mut all_ids = ex.ids.clone();
            all_ids.extend(ids);
            let sid_cols = IdColumns {
                codes: ex.codes.clone(),
                width: ex.width,
                group_size: ex.group_size.clone(),
                original_codes: ex.original_codes.clone(),
            };
            let n_sid = kind_levels(q, IdKind::Sid).len();
            let (raw, resolution) = prepend(&sid_cols, &all_ids, n_sid, sid_raw, sid_res);
            let cid = match (cid, &ex.cid) {
                (Some((craw, cres)), Some(cols)) => {
                    let n_cid = kind_levels(q, IdKind::Cid).len();
                    Some(prepend(cols, &all_ids, n_cid, craw, cres))
                }
                (None, _) => None,
                (Some(_), None) => unreachable!("check_existing requires CID columns"),
            };
            (all_ids, raw, resolution, cid)
        }
        None => (ids, sid_raw, sid_res, cid),
    };
    let cid = cid.map(|(raw, resolution)| CidAssigned { raw, resolution });
    let mut stats = make_stats(&ids, &raw, &resolution, &meta, recon[0].clone());
    stats.sid.resolution.existing_items = existing.map_or(0, |e| e.ids.len() as u64);
    stats.sid.resolution.existing_not_in_input = absent;
    if let Some(c) = &cid {
        let mut s = id_stats(
            &ids,
            &c.raw,
            &c.resolution,
            meta.sizes(IdKind::Cid),
            recon[1].clone(),
        );
        s.resolution.existing_items = stats.sid.resolution.existing_items;
        s.resolution.existing_not_in_input = absent;
        name_levels(&mut s, &meta.format(IdKind::Cid)?);
        name_levels(&mut stats.sid, &meta.format(IdKind::Sid)?);
        stats.cid = Some(s);
        stats.items_without_collab_vector = Some(no_collab);
    }
    Ok(Assigned {
        ids,
        raw,
        resolution,
        cid,
        stats,
        meta,
    })
}

/// Per-level names in statistics as the ID's tokens spell them (`uc` for a CID level).
fn name_levels(s: &mut IdStats, fmt: &crate::ids::tokens::TokenFormat) {
    for cs in [&mut s.before, &mut s.after] {
        for l in &mut cs.per_level {
            l.letter = fmt.level_name(l.level - 1);
        }
    }
}

fn extend(acc: &mut Option<ItemIds>, more: ItemIds) {
    match acc {
        Some(all) => all.extend(more),
        None => *acc = Some(more),
    }
}

/// The existing table must come from the same quantizer shape and ID format.
fn check_existing(ex: &SidTable, q: &dyn Quantizer, cfg: &Config) -> Result<()> {
    let sid_sizes: Vec<usize> = kind_levels(q, IdKind::Sid)
        .iter()
        .map(|&l| q.codebook_sizes()[l])
        .collect();
    if let Some(m) = &ex.meta {
        let problem = if m.codebook_sizes != sid_sizes {
            Some(format!(
                "was made with codebook sizes {:?}, the quantizer has {sid_sizes:?}",
                m.codebook_sizes
            ))
        } else if m.token_format != cfg.ids.token_format {
            Some(format!(
                "uses token format {:?}, not {:?}",
                m.token_format, cfg.ids.token_format
            ))
        } else if m.dedup != cfg.ids.dedup.name() {
            Some(format!(
                "was made with --dedup {}, not {}",
                m.dedup,
                cfg.ids.dedup.name()
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(Error::Config(format!("the existing IDs table {p}")));
        }
    }
    if q.dual().is_some() != ex.cid.is_some() {
        return Err(Error::Config(format!(
            "{} {} CID columns but the quantizer is {}",
            ex.path.display(),
            if ex.cid.is_some() { "has" } else { "has no" },
            q.method().name()
        )));
    }
    ex.check_codes(&sid_sizes)?;
    if let Some(d) = q.dual() {
        let cid_sizes: Vec<usize> = d
            .kind_levels(IdKind::Cid)
            .iter()
            .map(|&l| q.codebook_sizes()[l])
            .collect();
        if let Some(md) = ex.meta.as_ref().and_then(|m| m.dual.as_ref()) {
            let problem = if (md.shared_levels, md.semantic_levels, md.collab_levels)
                != (d.shared_levels, d.semantic_levels, d.collab_levels)
            {
                Some(format!(
                    "splits its levels {}/{}/{} (shared/semantic/collaborative), the quantizer \
                     {}/{}/{}",
                    md.shared_levels,
                    md.semantic_levels,
                    md.collab_levels,
                    d.shared_levels,
                    d.semantic_levels,
                    d.collab_levels
                ))
            } else if md.cid_codebook_sizes != cid_sizes {
                Some(format!(
                    "has CID codebook sizes {:?}, the quantizer {cid_sizes:?}",
                    md.cid_codebook_sizes
                ))
            } else if (md.sid_prefix.as_str(), md.cid_prefix.as_str())
                != (cfg.ids.sid_prefix.as_str(), cfg.ids.cid_prefix.as_str())
            {
                Some(format!(
                    "spells its own levels with prefixes {:?}/{:?}, not {:?}/{:?}",
                    md.sid_prefix, md.cid_prefix, cfg.ids.sid_prefix, cfg.ids.cid_prefix
                ))
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(Error::Config(format!("the existing IDs table {p}")));
            }
        }
        ex.check_cid_codes(&cid_sizes)?;
    }
    check_same_model(ex, q)
}

/// A table whose footer names another model's fingerprint was coded by that model.
fn check_same_model(t: &SidTable, q: &dyn Quantizer) -> Result<()> {
    let recorded = t
        .meta
        .as_ref()
        .and_then(|m| m.quantizer_fingerprint.as_deref());
    match recorded {
        Some(f) if f != q.fingerprint() => Err(Error::Config(format!(
            "{} was made by a different quantizer (fingerprint {}…, this one is {}…): its codes \
             mean different things; pass the quantizer that made it",
            t.path.display(),
            &f[..f.len().min(12)],
            &q.fingerprint()[..12]
        ))),
        _ => Ok(()),
    }
}

/// The quantizer's own codes of an existing ID column (before any `reassign` moves).
fn raw_codes(cols: &IdColumns, levels: usize) -> Vec<u16> {
    match &cols.original_codes {
        Some(o) => o.clone(),
        None => cols
            .codes
            .chunks(cols.width)
            .flat_map(|c| c[..levels].iter().copied())
            .collect(),
    }
}

/// One ID's existing rows first (unchanged), then the new ones; `all_ids` lists both.
fn prepend(
    ex: &IdColumns,
    all_ids: &ItemIds,
    levels: usize,
    raw: Vec<u16>,
    res: Resolution,
) -> (Vec<u16>, Resolution) {
    let mut all_raw = raw_codes(ex, levels);
    all_raw.extend(raw);
    let mut codes = ex.codes.clone();
    codes.extend(res.codes);
    // Group sizes over the whole table: new items can join an existing item's tuple.
    let (order, bounds) = dedup::sorted_groups(&all_raw, levels, all_ids);
    let mut group_size = vec![0u32; all_ids.len()];
    for &(s, e) in &bounds {
        for &i in &order[s..e] {
            group_size[i] = (e - s) as u32;
        }
    }
    (
        all_raw,
        Resolution {
            codes,
            group_size,
            ..res
        },
    )
}

/// One ID kind's statistics before and after resolution.
fn id_stats(
    ids: &ItemIds,
    raw: &[u16],
    res: &Resolution,
    sizes: &[usize],
    recon: Option<Vec<f64>>,
) -> IdStats {
    IdStats {
        codebook_sizes: sizes.to_vec(),
        before: stats::code_stats(raw, sizes.len(), ids, sizes),
        after: stats::code_stats(&res.codes, res.width, ids, sizes),
        resolution: ResolutionStats {
            suffix_level: res.suffix_level,
            moved_items: res.moved as u64,
            unresolved_by_reassign: res.unresolved as u64,
            existing_items: 0,
            existing_not_in_input: 0,
        },
        relative_reconstruction_error: recon,
    }
}

/// Statistics before and after resolution.
pub fn make_stats(
    ids: &ItemIds,
    raw: &[u16],
    res: &Resolution,
    meta: &SidMeta,
    recon: Option<Vec<f64>>,
) -> Stats {
    Stats {
        sidtool_version: crate::VERSION.into(),
        method: Some(meta.method.clone()),
        dedup: meta.dedup.clone(),
        sid: id_stats(ids, raw, res, &meta.codebook_sizes, recon),
        cid: None,
        items_without_collab_vector: None,
    }
}

/// The vectors of rows `need` (sorted, file order) from a source.
fn gather_rows(source: &Source, need: &[usize]) -> Result<Matrix> {
    let mut out = Matrix::zeros(0, 0);
    let mut t = 0;
    source.for_each(|first, _, x| {
        out.append(&take_rows(need, &mut t, first, x));
        Ok(())
    })?;
    Ok(out)
}

/// The rows of one batch (file rows `first..first + x.rows`) that the sorted file-row list
/// `rows` asks for, continuing from `*cursor`.
fn take_rows(rows: &[usize], cursor: &mut usize, first: usize, x: &Matrix) -> Matrix {
    let start = *cursor;
    while *cursor < rows.len() && rows[*cursor] < first + x.rows {
        *cursor += 1;
    }
    let local: Vec<usize> = rows[start..*cursor].iter().map(|&r| r - first).collect();
    x.gather(&local)
}

/// Write sids.parquet (and stats.json when `stats_path` is given).
pub fn write_assigned(a: &Assigned, sids_path: &Path, stats_path: Option<&Path>) -> Result<()> {
    let cid = a.cid.as_ref().map(|c| CidPart {
        resolution: &c.resolution,
        raw: &c.raw,
    });
    sid_table::write(sids_path, &a.ids, &a.resolution, &a.raw, &a.meta, cid)?;
    if let Some(p) = stats_path {
        write_json(p, &a.stats)?;
    }
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    crate::io::atomic::write_file(path, text.as_bytes())
}

/// Recompute statistics from a sids.parquet (what `sidtool stats` does). With `vectors` (the
/// items' embeddings and the quantizer that coded them) the reconstruction error per prefix
/// length is computed too, from the quantizer's own codes (`original_codes` after reassign).
pub fn stats_of_table(path: &Path, vectors: Option<(&Source, &dyn Quantizer)>) -> Result<Stats> {
    let t = sid_table::read(path)?;
    let meta = t.meta.clone().unwrap_or_else(|| SidMeta {
        sidtool_version: "unknown".into(),
        method: "unknown".into(),
        codebook_sizes: vec![],
        dedup: Dedup::None.name().into(),
        suffix_level: false,
        token_format: crate::ids::tokens::DEFAULT_TOKEN_FORMAT.into(),
        quantizer_fingerprint: None,
        dual: None,
    });
    let sid_cols = IdColumns {
        codes: t.codes.clone(),
        width: t.width,
        group_size: t.group_size.clone(),
        original_codes: t.original_codes.clone(),
    };
    let mut cols = vec![(IdKind::Sid, &sid_cols)];
    if let Some(c) = &t.cid {
        if meta.dual.is_none() {
            return Err(Error::input(
                path,
                Some("cid_codes"),
                None,
                "has CID columns but no GenSAR metadata in its footer",
            ));
        }
        cols.push((IdKind::Cid, c));
    }
    // Each ID's quantizer codes, and how the table's codes relate to them.
    let mut parts = Vec::new();
    for &(kind, c) in &cols {
        let sizes = meta.sizes(kind);
        let levels = if sizes.is_empty() {
            c.width
        } else {
            sizes.len()
        };
        if c.width < levels {
            return Err(Error::input(
                path,
                Some(if kind == IdKind::Sid {
                    "codes"
                } else {
                    "cid_codes"
                }),
                None,
                format!(
                    "has {} codes per item but its metadata lists {levels} levels",
                    c.width
                ),
            ));
        }
        let raw = raw_codes(c, levels);
        let suffix = match kind {
            IdKind::Sid => meta.suffix_level,
            IdKind::Cid => meta.dual.as_ref().is_some_and(|d| d.cid_suffix_level),
        };
        let res = Resolution {
            codes: c.codes.clone(),
            width: c.width,
            suffix_level: suffix,
            group_size: c.group_size.clone(),
            moved: raw
                .chunks(levels)
                .zip(c.codes.chunks(c.width))
                .filter(|(a, b)| a[..] != b[..levels])
                .count(),
            unresolved: 0,
        };
        parts.push((kind, raw, res, levels));
    }
    let mut no_collab = None;
    let recon: Vec<Option<Vec<f64>>> = match vectors {
        Some((source, q)) => {
            let sid_sizes: Vec<usize> = kind_levels(q, IdKind::Sid)
                .iter()
                .map(|&l| q.codebook_sizes()[l])
                .collect();
            if !meta.codebook_sizes.is_empty() && meta.codebook_sizes != sid_sizes {
                return Err(Error::Config(format!(
                    "{} was made by a quantizer with codebook sizes {:?}, not {:?}: pass the quantizer that made it",
                    path.display(),
                    meta.codebook_sizes,
                    sid_sizes
                )));
            }
            t.check_codes(&sid_sizes)?;
            check_same_model(&t, q)?;
            if q.dual().is_some() != t.cid.is_some() {
                return Err(Error::Config(format!(
                    "{} and the {} quantizer do not make the same kinds of ID",
                    path.display(),
                    q.method().name()
                )));
            }
            let all = match (q.dual(), &parts[..]) {
                (Some(d), [(_, s, ..), (_, c, ..)]) => d.join(s, c),
                _ => parts[0].1.clone(),
            };
            let (errors, zero) = reconstruction(path, &t.ids, &all, source, q)?;
            no_collab = q.dual().map(|_| zero);
            errors.into_iter().map(Some).collect()
        }
        None => vec![None; parts.len()],
    };
    let mut parts = parts.into_iter().zip(recon);
    let ((_, raw, res, _), r) = parts.next().expect("a SID");
    let mut s = make_stats(&t.ids, &raw, &res, &meta, r);
    if let Some(((_, raw, res, _), r)) = parts.next() {
        let mut c = id_stats(&t.ids, &raw, &res, meta.sizes(IdKind::Cid), r);
        name_levels(&mut c, &meta.format(IdKind::Cid)?);
        name_levels(&mut s.sid, &meta.format(IdKind::Sid)?);
        s.cid = Some(c);
        s.items_without_collab_vector = no_collab;
    }
    Ok(s)
}

/// Per ID kind, Σ‖x − x̂_m‖² / Σ‖x‖² per prefix length, joining the vectors to the table on
/// item id; `raw` holds all the quantizer's codes per item. Also counts, for GenSAR, the items
/// whose collaborative vector is missing or zero.
fn reconstruction(
    table: &Path,
    ids: &ItemIds,
    raw: &[u16],
    source: &Source,
    q: &dyn Quantizer,
) -> Result<(Vec<Vec<f64>>, u64)> {
    let levels = q.levels();
    if raw.len() != ids.len() * levels {
        return Err(Error::Config(format!(
            "{} does not have the quantizer's {levels} levels",
            table.display()
        )));
    }
    let row: HashMap<IdKey, usize> = (0..ids.len()).map(|i| (ids.key(i), i)).collect();
    let mut err: Vec<(Vec<f64>, f64)> = Vec::new();
    let mut seen = 0usize;
    let mut zero = 0u64;
    source.check_dual(q)?;
    source.for_each(|first, bids, x| {
        quant::check_dim(q, x.cols, source.path(), source.column())?;
        if let Some(d) = q.dual() {
            zero += (0..x.rows)
                .filter(|&i| x.row(i)[d.semantic_dim..].iter().all(|&v| v == 0.0))
                .count() as u64;
        }
        let mut codes = Vec::with_capacity(x.rows * levels);
        for i in 0..x.rows {
            let r = *row.get(&bids.key(i)).ok_or_else(|| {
                Error::input(
                    source.path(),
                    None,
                    Some((first + i) as u64),
                    format!("item {} is not in {}", bids.display(i), table.display()),
                )
            })?;
            codes.extend_from_slice(&raw[r * levels..(r + 1) * levels]);
        }
        let batch = id_sq_errors(q, x, &codes)?;
        if err.is_empty() {
            err = batch;
        } else {
            for (acc, (e, n)) in err.iter_mut().zip(batch) {
                acc.0.iter_mut().zip(e).for_each(|(a, v)| *a += v);
                acc.1 += n;
            }
        }
        seen += x.rows;
        Ok(())
    })?;
    if seen != ids.len() {
        return Err(Error::input(
            source.path(),
            None,
            None,
            format!(
                "has {seen} items but {} lists {}",
                table.display(),
                ids.len()
            ),
        ));
    }
    Ok((
        err.iter()
            .map(|(e, n)| e.iter().map(|v| v / n.max(f64::MIN_POSITIVE)).collect())
            .collect(),
        zero,
    ))
}

/// `sidtool build`: items with an embedding column → quantizer, SIDs, stats, manifest.
pub fn build(
    items: &Path,
    out: &Path,
    cfg: &Config,
    progress: &dyn Progress,
) -> Result<(Manifest, Stats)> {
    cfg.validate()?;
    let mut timings = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, timings: &mut Vec<Timing>| {
        timings.push(Timing {
            stage: name.into(),
            seconds: clock.elapsed().as_secs_f64(),
        });
        clock = Instant::now();
    };
    check_side_inputs(items, cfg)?;
    let (sha, bytes) = sha256_file(items)?;
    // Everything is written into a staging directory and moved into `out` only once the
    // whole build succeeded: a failure never leaves a mix of old and new files behind.
    let stage = Staging::create(out)?;
    let dir = stage.path().to_path_buf();
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
        let r = crate::embed::job::embed_file(items, &emb_path, cfg, false, progress)?;
        lap("embed", &mut timings);
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
    lap("read", &mut timings);
    let mut outputs: Vec<String> = BUILD_OUTPUTS.map(String::from).to_vec();
    // GenSAR: collaborative vectors from --collab, the items' own column, or the interactions.
    let collab = if cfg.quantizer.method == Method::Gensar {
        let cv = build_collab(items, &s.ids, cfg, &dir, progress)?;
        outputs.push(COLLAB_OUTPUT.into());
        lap("collab", &mut timings);
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
    lap("train", &mut timings);
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
    lap("assign", &mut timings);
    write_assigned(&a, &dir.join("sids.parquet"), Some(&dir.join("stats.json")))?;
    lap("write", &mut timings);
    // LLM vocabulary artefacts: with the configured tokenizer, or the embedding model's own.
    let tokenizer = match (&cfg.vocab.tokenizer, &embedded) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(_)) => {
            Some(crate::embed::hub::resolve(&cfg.embed.model, &cfg.embed.revision)?.tokenizer)
        }
        (None, None) => None,
    };
    let vocab = match &tokenizer {
        Some(t) => {
            let table = crate::io::sid_table::read(&dir.join("sids.parquet"))?;
            let v = &cfg.vocab;
            let r = crate::vocab::write_all(
                &table,
                t,
                &dir,
                &crate::vocab::extend::Options {
                    tokens: v.tokens,
                    special: v.special,
                    markers: &v.markers,
                    pad_to_multiple: v.pad_to_multiple,
                },
            )?;
            outputs.extend(crate::vocab::outputs(&table).into_iter().map(String::from));
            lap("vocab", &mut timings);
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
        let rows = embeddings::open_parquet(p)?
            .metadata()
            .file_metadata()
            .num_rows() as u64;
        inputs.push(InputFile {
            path: p.clone(),
            sha256: sha,
            bytes,
            rows,
        });
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
        outputs: outputs.clone(),
        vocab: vocab.map(|r| VocabSummary {
            tokenizer: tokenizer.clone().unwrap_or_default(),
            base_vocab_size: r.base_vocab_size,
            added: r.added,
            vocab_size: r.vocab_size,
            padded_vocab_size: r.padded_vocab_size,
        }),
        embed: embedded,
        timings,
    };
    write_json(&dir.join("manifest.json"), &manifest)?;
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let known: Vec<&str> = BUILD_OUTPUTS
        .into_iter()
        .chain([COLLAB_OUTPUT])
        .chain(crate::vocab::VOCAB_OUTPUTS)
        .chain(crate::vocab::CID_TRIE_OUTPUTS)
        .collect();
    stage.commit(&names, &known)?;
    Ok((manifest, a.stats))
}

/// GenSAR's collaborative vectors in `build`, also written to `collab.parquet` (so `assign`
/// can code new items later): `--collab FILE` or the items' own column when given, else
/// computed from the interactions (PPMI + randomized SVD).
fn build_collab(
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
        let start = Instant::now();
        let c = crate::collab::compute(inter, ids, &cfg.collab, cfg.seed, progress)?;
        let summary = c.summary(start.elapsed().as_secs_f64());
        crate::collab::write_with_meta(
            &dest,
            ids,
            &c.vectors,
            column,
            crate::collab::provenance(&cfg.collab, cfg.seed, &summary),
        )?;
        return Ok(CollabVectors::aligned(ids, c.vectors, inter, column));
    } else {
        return Err(no_collab_source(items, column));
    };
    let (u, _) = cv.lookup(ids);
    crate::collab::write(&dest, ids, &u, column)?;
    Ok(cv)
}

fn no_collab_source(items: &Path, column: &str) -> Error {
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
fn check_side_inputs(items: &Path, cfg: &Config) -> Result<()> {
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
