//! `manifest.json`: how an output directory was made.

use crate::config::Config;
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One stage's wall time.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub stage: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
}

/// manifest.json: enough to know exactly how an output directory was made.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub sidtool_version: String,
    pub command: String,
    pub created_unix_s: u64,
    pub seed: u64,
    pub config: Config,
    pub inputs: Vec<InputFile>,
    pub outputs: Vec<String>,
    /// How item text became vectors, when `build` embedded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embed: Option<crate::embed::job::EmbedReport>,
    /// The tokenizer extension, when `build` wrote vocabulary artefacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab: Option<VocabSummary>,
    pub timings: Vec<Timing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VocabSummary {
    /// The LLM whose tokenizer was extended (`id@commit` for a hub model).
    pub llm: String,
    pub base_vocab_size: usize,
    pub added: usize,
    pub vocab_size: usize,
    pub resize_embeddings_to: usize,
}

/// Hex SHA-256 and size of an input (a file, or all parts of a directory or glob in order),
/// read in 1 MiB chunks (inputs can be many GiB).
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    // A directory or glob input: its part files' bytes, in the order they are read.
    for part in crate::io::parts::files(path)? {
        let mut f = std::fs::File::open(&part).map_err(|e| Error::io(&part, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&part, e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
    }
    Ok((format!("{:x}", h.finalize()), total))
}
