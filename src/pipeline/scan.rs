//! One read of an embeddings file: every row validated, a seeded training sample kept, and
//! optionally every row copied to the build's `embeddings.parquet`.

use crate::error::{Error, Result};
use crate::io::embeddings::{self, EmbeddingReader, EmbeddingWriter};
use crate::io::input::InputConfig;
use crate::item_id::ItemIds;
use crate::matrix::Matrix;
use crate::progress::Progress;
use crate::quant::kmeans::sample_indices;
use rand::SeedableRng;
use std::path::Path;

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

/// The rows of one batch (file rows `first..first + x.rows`) that the sorted file-row list
/// `rows` asks for, continuing from `*cursor`.
pub(super) fn take_rows(rows: &[usize], cursor: &mut usize, first: usize, x: &Matrix) -> Matrix {
    let start = *cursor;
    while *cursor < rows.len() && rows[*cursor] < first + x.rows {
        *cursor += 1;
    }
    let local: Vec<usize> = rows[start..*cursor].iter().map(|&r| r - first).collect();
    x.gather(&local)
}
