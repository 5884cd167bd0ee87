//! One Arrow batch → raw codes, for callers that bring their own batches (the Python package,
//! inside Spark's `mapInArrow` or Ray's `map_batches`): the checks and the codes of `assign
//! --dedup none`, and the footer `resolve` needs, carried as the batch's schema metadata (pyarrow
//! and Spark write it into the Parquet footer).

use crate::config::Dedup;
use crate::error::{Error, Result};
use crate::ids::sid_table::{DualMeta, META_KEY, SidMeta, codes_array, codes_field};
use crate::item_id::ItemIds;
use crate::quant::Quantizer;
use crate::quant::kind::IdKind;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{Field, Schema};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Where errors about a caller's batch point: there is no file.
const BATCH: &str = "<arrow batch>";

/// The footer of raw codes made by `q` (what `assign --dedup none` writes, with the default
/// GenSAR token prefixes).
pub fn raw_meta(q: &dyn Quantizer, token_format: &str) -> SidMeta {
    let ids = crate::ids::config::IdsConfig::default();
    let sizes = |kind: IdKind| -> Vec<usize> {
        let d = q.dual().expect("a dual quantizer");
        d.kind_levels(kind)
            .iter()
            .map(|&l| q.codebook_sizes()[l])
            .collect()
    };
    SidMeta {
        sidtool_version: crate::VERSION.into(),
        method: q.method().name(),
        codebook_sizes: match q.dual() {
            Some(_) => sizes(IdKind::Sid),
            None => q.codebook_sizes().to_vec(),
        },
        dedup: Dedup::None.name(),
        suffix_level: false,
        token_format: token_format.to_string(),
        quantizer_fingerprint: Some(q.fingerprint()),
        dual: q.dual().map(|d| DualMeta {
            shared_levels: d.shared_levels,
            semantic_levels: d.semantic_levels,
            collab_levels: d.collab_levels,
            cid_codebook_sizes: sizes(IdKind::Cid),
            cid_suffix_level: false,
            sid_prefix: ids.sid_prefix,
            cid_prefix: ids.cid_prefix,
        }),
    }
}

/// Encode `batch` (an id column and a vector column) with `q`: a batch of `item_id` (the ids as
/// given) and `codes` (UInt16 per level), no collision resolution. Rows are checked as `assign`
/// checks a file's (nulls, lengths, finite values, the quantizer's dimension). A GenSAR
/// quantizer codes the semantic vector and the collaborative one (`collab_column`) together,
/// and the batch gets `codes` (the SID's levels) and `cid_codes` (the CID's), as `assign
/// --dedup none` writes them.
pub fn encode_batch(
    q: &dyn Quantizer,
    batch: &RecordBatch,
    id_column: &str,
    embedding_column: &str,
    collab_column: &str,
    token_format: &str,
) -> Result<RecordBatch> {
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
    let collab = match q.dual() {
        Some(_) => Some(col(collab_column, "collaborative vector column (GenSAR)")?),
        None => None,
    };
    let ids = ItemIds::from_column(ids_col.as_ref(), path, id_column, 0)?;
    let mut codes = Vec::new();
    if batch.num_rows() > 0 {
        let mut x =
            crate::io::embeddings::batch_vectors(emb, path, embedding_column, 0, &mut None)?;
        if let (Some(d), Some(c)) = (q.dual(), collab) {
            if x.cols != d.semantic_dim {
                return Err(Error::input(
                    path,
                    Some(embedding_column),
                    None,
                    format!(
                        "vectors have {} dimensions but the quantizer's semantic part was \
                         trained on {}",
                        x.cols, d.semantic_dim
                    ),
                ));
            }
            let u = crate::io::embeddings::batch_vectors(c, path, collab_column, 0, &mut None)?;
            x = crate::matrix::Matrix::hcat(&[&x, &u]);
        }
        crate::quant::check_dim(q, x.cols, path, embedding_column)?;
        codes = q.encode(&x)?;
    }
    let meta = serde_json::to_string(&raw_meta(q, token_format)).expect("metadata serialises");
    let mut fields = vec![Field::new("item_id", ids.data_type(), false)];
    let mut columns = vec![ids.to_arrow(0, ids.len())];
    match q.dual() {
        None => {
            fields.push(Field::new("codes", codes_field(q.levels()), false));
            columns.push(codes_array(&codes, q.levels()));
        }
        Some(d) => {
            for (kind, name) in [(IdKind::Sid, "codes"), (IdKind::Cid, "cid_codes")] {
                let width = d.kind_levels(kind).len();
                fields.push(Field::new(name, codes_field(width), false));
                columns.push(codes_array(&d.split(&codes, kind), width));
            }
        }
    }
    let schema = Schema::new(fields).with_metadata(HashMap::from([(META_KEY.to_string(), meta)]));
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| Error::arrow(path, e))
}
