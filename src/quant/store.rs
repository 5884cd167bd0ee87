//! On-disk form of a quantizer: `config.json` (method-tagged, human-readable) next to
//! `model.safetensors` (the tensors, named so the file is self-describing).

use crate::error::{Error, Result};
use crate::fs::dir::AtomicDir;
use crate::quant::config::Method;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const CONFIG_FILE: &str = "config.json";
pub(crate) const WEIGHTS_FILE: &str = "model.safetensors";
/// Bumped when the saved layout changes incompatibly.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The fields every quantizer's config.json starts with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    pub method: Method,
    pub format_version: u32,
}

pub(crate) fn read_header(dir: &Path) -> Result<Header> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
                        let hint = if dir.join("quantizer").join(CONFIG_FILE).exists() {
                format!("no quantizer here; did you mean {}?", dir.join("quantizer").display())
            } else if dir.is_file() {
                "is a file; pass the quantizer directory (the one holding config.json and model.safetensors)".to_string()
            } else {
                "no quantizer here (expected the output directory of `sidtool train`, or `quantizer/` inside a build's output)".to_string()
            };
            Error::artifact(if dir.is_file() { dir } else { &path }, hint)
        } else {
            Error::io(&path, e)
        }
    })?;
    let h: Header = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.clone(),
        cause: source,
    })?;
    if h.format_version > FORMAT_VERSION {
        return Err(Error::artifact(
            &path,
            format!(
                "format version {} is newer than this sidtool understands ({FORMAT_VERSION})",
                h.format_version
            ),
        ));
    }
    Ok(h)
}

pub(crate) fn read_config<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<T> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path,
        cause: source,
    })
}

/// Write config + tensors into `dir` atomically (readers never see a half-written model).
pub fn save<T: Serialize>(dir: &Path, config: &T, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let tmp = AtomicDir::create(dir)?;
    let cfg_path = tmp.path().join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(config).expect("quantizer config serialises");
    crate::fs::atomic::write_file(&cfg_path, (text + "\n").as_bytes())?;
    let weights = tmp.path().join(WEIGHTS_FILE);
    candle_core::safetensors::save(tensors, &weights)?;
    // The safetensors writer creates a private (0600) file; a model is meant to be shared.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(&weights, e))?;
    }
    tmp.commit()
}

/// All tensors of `dir/model.safetensors`, on the CPU.
pub fn load_tensors(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.exists() {
        return Err(Error::artifact(
            &path,
            "missing: the quantizer directory is incomplete",
        ));
    }
    candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| Error::artifact(&path, format!("cannot read weights: {e}")))
}

/// Fetch a tensor by name and check its shape.
pub fn take(
    tensors: &HashMap<String, Tensor>,
    dir: &Path,
    name: &str,
    shape: &[usize],
) -> Result<Tensor> {
    let path = dir.join(WEIGHTS_FILE);
    let t = tensors
        .get(name)
        .ok_or_else(|| Error::artifact(&path, format!("tensor `{name}` is missing")))?;
    if t.dims() != shape {
        return Err(Error::artifact(
            &path,
            format!(
                "tensor `{name}` has shape {:?} but config.json implies {:?}",
                t.dims(),
                shape
            ),
        ));
    }
    Ok(t.to_dtype(candle_core::DType::F32)?)
}
