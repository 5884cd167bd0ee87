//! One Arrow batch → raw codes, for callers that bring their own batches (the Python package,
//! inside Spark's `mapInArrow` or Ray's `map_batches`): the checks and the codes of `assign
//! --dedup none`, and the footer `resolve` needs, carried as the batch's schema metadata (pyarrow
//! and Spark write it into the Parquet footer).

use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::ids::sid_table::{META_KEY, SidMeta, codes_array, codes_field};
use crate::item_id::ItemIds;
use crate::quant::Quantizer;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{Field, Schema};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Where errors about a caller's batch point: there is no file.
const BATCH: &str = "<arrow batch>";

/// The footer of raw codes made by `q` (what `assign --dedup none` writes).
pub fn raw_meta(q: &dyn Quantizer, token_format: &str) -> SidMeta {
    SidMeta {
        sidtool_version: crate::VERSION.into(),
        method: q.method().name(),
        codebook_sizes: q.codebook_sizes().to_vec(),
        dedup: Dedup::None.name(),
        suffix_level: false,
        token_format: token_format.to_string(),
        quantizer_fingerprint: Some(q.fingerprint()),
        dual: None,
    }
}

/// Encode `batch` (an id column and a vector column) with `q`: a batch of `item_id` (the ids as
/// given) and `codes` (UInt16 per level), no collision resolution. Rows are checked as `assign`
/// checks a file's (nulls, lengths, finite values, the quantizer's dimension).
pub fn encode_batch(
    q: &dyn Quantizer,
    batch: &RecordBatch,
    id_column: &str,
    embedding_column: &str,
    token_format: &str,
) -> Result<RecordBatch> {
    if q.dual().is_some() {
        return Err(Error::Config(
            "GenSAR quantizers code from two vectors per item; batch encoding handles single-ID \
             quantizers (rq-kmeans, rq-vae) so far: use `sidtool assign`"
                .into(),
        ));
    }
    crate::ids::tokens::TokenFormat::new(token_format)?;
    let path = Path::new(BATCH);
    let col = |name: &str, role: &str| {
        batch.column_by_name(name).ok_or_else(|| {
            let have: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            Error::input(
                path,
                Some(name),
                None,
                format!(
                    "no such column (the {role}); the batch has: {}",
                    have.join(", ")
                ),
            )
        })
    };
    let ids_col = col(id_column, "item id column")?;
    let emb = col(embedding_column, "embedding column")?;
    if !ItemIds::supported(ids_col.data_type()) {
        return Err(Error::input(
            path,
            Some(id_column),
            None,
            format!(
                "has type {}; item ids must be Utf8, LargeUtf8, Utf8View, Int64 or Int32",
                ids_col.data_type()
            ),
        ));
    }
    let ids = ItemIds::from_column(ids_col.as_ref(), path, id_column, 0)?;
    let mut codes = Vec::new();
    if batch.num_rows() > 0 {
        let x = crate::io::embeddings::batch_vectors(emb, path, embedding_column, 0, &mut None)?;
        crate::quant::check_dim(q, x.cols, path, embedding_column)?;
        codes = q.encode(&x)?;
    }
    let meta = serde_json::to_string(&raw_meta(q, token_format)).expect("metadata serialises");
    let schema = Schema::new(vec![
        Field::new("item_id", ids.data_type(), false),
        Field::new("codes", codes_field(q.levels()), false),
    ])
    .with_metadata(HashMap::from([(META_KEY.to_string(), meta)]));
    RecordBatch::try_new(
        Arc::new(schema),
        vec![ids.to_arrow(0, ids.len()), codes_array(&codes, q.levels())],
    )
    .map_err(|e| Error::arrow(path, e))
}
