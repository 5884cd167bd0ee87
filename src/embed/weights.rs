//! Memory-mapped safetensors weights (one file or a sharded set), with the checks that turn
//! a wrong checkpoint into a message naming the tensor instead of a shape error deep in a GEMM.

use crate::error::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub struct Weights {
    st: MmapedSafetensors,
    names: HashSet<String>,
    /// `model.` for checkpoints saved from a `*ForCausalLM`, empty for Qwen3-Embedding's.
    prefix: String,
    /// Where the weights came from, for messages.
    origin: PathBuf,
}

impl Weights {
    /// Map `files`; `probe` is a tensor every checkpoint of the architecture has, used to tell
    /// whether names carry a `model.` prefix.
    pub fn open(files: &[PathBuf], probe: &str) -> Result<Self> {
        let origin = files
            .first()
            .cloned()
            .ok_or_else(|| Error::Config("no safetensors files given".into()))?;
        // SAFETY: the files are mapped read-only; sidtool never writes them, and a file changed
        // underneath a running process is outside what any mmap-based loader can guard against.
        let st = unsafe { MmapedSafetensors::multi(files) }
            .map_err(|e| Error::artifact(&origin, format!("cannot read safetensors: {e}")))?;
        let names: HashSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let prefix = if names.contains(probe) {
            String::new()
        } else if names.contains(&format!("model.{probe}")) {
            "model.".to_string()
        } else {
            return Err(Error::artifact(
                &origin,
                format!(
                    "tensor `{probe}` (or `model.{probe}`) not found: these weights do not \
                     belong to the architecture config.json names"
                ),
            ));
        };
        Ok(Weights {
            st,
            names,
            prefix,
            origin,
        })
    }

    pub fn origin(&self) -> &Path {
        &self.origin
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
