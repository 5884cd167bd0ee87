//! One Arrow batch of items → their vectors, for callers that bring their own batches (the
//! Python package, inside Spark's `mapInArrow` or Ray's `map_batches`). The same text
//! rendering, tokenization, length-sorted batching and model as `sidtool embed`, so a batch
//! gets the vectors the CLI writes for the same rows.

use crate::embed::config::EmbedConfig;
use crate::embed::encoder::{Encoder, EncoderInfo};
use crate::embed::items::TextColumns;
use crate::embed::job::{EmbedReport, META_KEY, embed_window};
use crate::embed::template::{DEFAULT_TEMPLATE, Template};
use crate::error::Result;
use crate::io::embeddings::{vectors_schema, vectors_to_arrow};
use crate::progress::Silent;
use arrow_array::RecordBatch;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Where errors about a caller's batch point: there is no file.
const BATCH: &str = "<arrow batch>";

/// A loaded model with its text template, ready to embed batches.
pub struct BatchEmbedder {
    encoder: Encoder,
    template: Template,
    /// A template the user gave must find all its columns; the default one any of them.
    strict: bool,
    id_column: String,
    batch_tokens: usize,
}

impl BatchEmbedder {
    /// Load the model of `cfg` (hub id or directory, on its device and dtype).
    pub fn new(cfg: &EmbedConfig, id_column: &str) -> Result<Self> {
        cfg.validate()?;
        let template = Template::parse(cfg.template.as_deref().unwrap_or(DEFAULT_TEMPLATE))?;
        Ok(BatchEmbedder {
            encoder: Encoder::load(cfg)?,
            template,
            strict: cfg.template.is_some(),
            id_column: id_column.to_string(),
            batch_tokens: cfg.batch_tokens(),
        })
    }

    pub fn info(&self) -> &EncoderInfo {
        &self.encoder.info
    }

    /// `item_id` (the ids as given) and `embedding` (FixedSizeList<Float32>) of every row of
    /// `batch`, with the encoder and template in the schema metadata as `sidtool embed` puts
    /// them in its footer.
    pub fn embed(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let path = Path::new(BATCH);
        let (cols, _) = TextColumns::new(
            batch.schema_ref(),
            path,
            &self.id_column,
            &self.template,
            self.strict,
        )?;
        let text = cols.texts(batch, 0)?;
        let mut report = EmbedReport::new(self.encoder.info.clone(), self.template.source());
        let m = embed_window(
            &self.encoder,
            &text.texts,
            self.batch_tokens,
            &mut report,
            &Silent,
        )?;
        let meta = serde_json::json!({ "encoder": &self.encoder.info, "template": self.template.source() });
        let schema = vectors_schema(text.ids.data_type(), m.cols, "embedding");
        let schema = Arc::new(
            schema
                .as_ref()
                .clone()
                .with_metadata(HashMap::from([(META_KEY.to_string(), meta.to_string())])),
        );
        Ok(RecordBatch::try_new(
            schema,
            vec![text.ids.to_arrow(0, text.ids.len()), vectors_to_arrow(&m)],
        )
        .expect("columns match the embeddings schema"))
    }
}
