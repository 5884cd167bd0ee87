//! Memory-mapped safetensors weights (one file or a sharded set), with the checks that turn
//! a wrong checkpoint into a message naming the tensor instead of a shape error deep in a GEMM.
//!
//! The one weight loader of every model: [`Weights::into_var_builder`] serves them to
//! candle's [`VarBuilder`], so Qwen3's blocks (`Layer::load(vb, cfg)`) and candle-transformers'
//! BERT read their tensors by their Hugging Face names through the same checks.

use crate::error::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub(crate) struct Weights {
    st: MmapedSafetensors,
    names: HashSet<String>,
    /// `model.` for checkpoints saved from a `*ForCausalLM`, empty for Qwen3-Embedding's.
    prefix: String,
    /// Where the weights came from, for messages.
    origin: PathBuf,
}

impl Weights {
    /// Map `files`; `probe` is a tensor every checkpoint of the architecture has, used to tell
    /// whether names carry a `model.` prefix (`None`: names are used as they are, for models
    /// such as candle's BERT that find their own prefix).
    pub fn open(files: &[PathBuf], probe: Option<&str>) -> Result<Self> {
        let origin = files
            .first()
            .cloned()
            .ok_or_else(|| Error::Config("no safetensors files given".into()))?;
        // SAFETY: the files are mapped read-only; sidtool never writes them, and a file changed
        // underneath a running process is outside what any mmap-based loader can guard against.
        let st = unsafe { MmapedSafetensors::multi(files) }
            .map_err(|e| Error::artifact(&origin, format!("cannot read safetensors: {e}")))?;
        let names: HashSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let prefix = if let Some(probe) = probe {
            Self::prefix(&names, probe, &origin)?
        } else {
            String::new()
        };
        Ok(Weights {
            st,
            names,
            prefix,
            origin,
        })
    }

    fn prefix(names: &HashSet<String>, probe: &str, origin: &Path) -> Result<String> {
        Ok(if names.contains(probe) {
            String::new()
        } else if names.contains(&format!("model.{probe}")) {
            "model.".to_string()
        } else {
            return Err(Error::artifact(
                origin,
                format!(
                    "tensor `{probe}` (or `model.{probe}`) not found: these weights do not \
                     belong to the architecture config.json names"
                ),
            ));
        })
    }

    /// A [`VarBuilder`] over these weights, converting every tensor to `dtype` on `device`.
    pub(crate) fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    /// Load `name` (without prefix), check its shape against the config, convert.
    pub fn get(
        &self,
        name: &str,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        if !self.names.contains(&full) {
            return Err(Error::artifact(
                &self.origin,
                format!("tensor `{full}` is missing from the weights"),
            ));
        }
        let view = self.st.get(&full)?;
        if view.shape() != shape {
            return Err(Error::artifact(
                &self.origin,
                format!(
                    "tensor `{full}` has shape {:?} but config.json implies {shape:?}",
                    view.shape()
                ),
            ));
        }
        Ok(self.st.load(&full, device)?.to_dtype(dtype)?)
    }
}

/// Every lookup goes through [`Weights::get`], so a missing tensor or a wrong shape names the
/// tensor and the file, not just a shape mismatch.
impl candle_nn::var_builder::SimpleBackend for Weights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        // As a plain message (no backtrace wrapper): it already names the tensor and the file.
        Weights::get(self, name, s.dims(), dev, dtype)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        self.st.load(&full, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.names.contains(&format!("{}{name}", self.prefix))
    }
}
