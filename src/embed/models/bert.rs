//! BERT-family sentence encoders (BGE, all-MiniLM, GTE) through candle-transformers' BERT,
//! which, unlike its Qwen3, is already a stateless encoder with a padding mask.

use crate::embed::layers::pooling::Pooling;
use crate::embed::loading::weights::Weights;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};

pub(crate) struct Bert {
    model: BertModel,
    pub config: Config,
    device: Device,
}

impl Bert {
    pub fn load(
        config_path: &Path,
        cfg: Config,
        weights: &[PathBuf],
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        // candle's BERT finds its own name prefix (`bert.`, …), so names are served as they are.
        let vb = Weights::open(weights, None)?.into_var_builder(dtype, device);
        let model = BertModel::load(vb, &cfg).map_err(|e| {
            Error::artifact(
                config_path,
                format!("the weights do not match this BERT config: {e}"),
            )
        })?;
        Ok(Bert {
            model,
            config: cfg,
            device: device.clone(),
        })
    }

    /// Pooled states (f32) of right-padded rows.
    pub fn forward(&self, seqs: &[&[u32]], pooling: Pooling) -> Result<Vec<Vec<f32>>> {
        let b = seqs.len();
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(
                self.config.pad_token_id as u32,
                t - s.len(),
            ));
            mask.extend((0..t).map(|p| u32::from(p < s.len())));
        }
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let types = ids.zeros_like()?;
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?;
        let states = self
            .model
            .forward(&ids, &types, Some(&mask))?
            .to_dtype(DType::F32)?;
        let pooled = match pooling {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let lens = m.sum(1)?;
                states.broadcast_mul(&m)?.sum(1)?.broadcast_div(&lens)?
            }
            Pooling::Last => {
                let idx = crate::embed::layers::pooling::last_token_rows(seqs, t);
                let idx = Tensor::from_vec(idx, b, &self.device)?;
                states
                    .reshape((b * t, self.config.hidden_size))?
                    .index_select(&idx, 0)?
            }
        };
        Ok(pooled.to_vec2::<f32>()?)
    }
}
