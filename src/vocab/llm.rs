//! The LLM whose tokenizer gets the SID tokens (`--llm`): a hub id resolved through the HF
//! cache, a model (or tokenizer) directory, or a bare `tokenizer.json`; and the files of it the
//! vocabulary stage reads (tokenizer, its config, the model's `config.json`, its embeddings).

use crate::embed::loading::hub::{self, Hub};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A resolved `--llm`.
pub struct Llm {
    /// For messages and the manifest: the path as given, or `id@commit` for a hub model.
    pub source: String,
    pub tokenizer: PathBuf,
    place: Place,
}

enum Place {
    /// A directory holding `tokenizer.json` and whatever else the LLM ships.
    Dir(PathBuf),
    /// A tokenizer file not named `tokenizer.json`: nothing else to look up.
    File,
    Hub(Hub),
}

impl Llm {
    /// Resolve `spec` at `revision` (hub ids only). A file is taken as the tokenizer; when it is
    /// named `tokenizer.json`, the files beside it (tokenizer_config.json, config.json …) are
    /// the LLM's too, as in a saved model directory.
    pub fn resolve(spec: &Path, revision: &str) -> Result<Llm> {
        let source = spec.display().to_string();
        if spec.is_file() {
            let dir = spec
                .parent()
                .filter(|_| spec.file_name() == Some("tokenizer.json".as_ref()));
            return Ok(Llm {
                source,
                tokenizer: spec.to_path_buf(),
                place: match dir {
                    Some(d) => Place::Dir(d.to_path_buf()),
                    None => Place::File,
                },
            });
        }
        if spec.is_dir() {
            let tokenizer = spec.join("tokenizer.json");
            if !tokenizer.is_file() {
                return Err(Error::artifact(
                    spec,
                    "the LLM directory has no `tokenizer.json` (only fast tokenizers are \
                     extended: save the tokenizer with transformers' save_pretrained first)",
                ));
            }
            return Ok(Llm {
                source,
                tokenizer,
                place: Place::Dir(spec.to_path_buf()),
            });
        }
        let s = spec.to_str().unwrap_or_default();
        let looks_like_id = s.split('/').count() == 2 && !s.starts_with('.') && !s.contains('\\');
        if !looks_like_id {
            return Err(Error::Config(format!(
                "--llm {source}: no such file or directory, and not a hub id of the form ORG/NAME"
            )));
        }
        let repo = Hub::new(s, revision);
        let Some(tokenizer) = repo.file("tokenizer.json")? else {
            return Err(Error::Model(format!(
                "--llm {}: no tokenizer.json in the Hugging Face cache at {}{}; download it \
                 first (`hf download {s} --revision {revision}`) or pass a local directory",
                repo.describe(),
                repo.cache().display(),
                if hub::offline() {
                    " and HF_HUB_OFFLINE is set"
                } else {
                    " nor on the hub"
                },
            )));
        };
        // The snapshot directory is named after the commit the revision resolved to.
        let commit = tokenizer
            .parent()
            .and_then(Path::file_name)
            .map(|c| c.to_string_lossy().into_owned())
            .filter(|c| hub::is_commit(c))
            .unwrap_or_else(|| revision.to_string());
        Ok(Llm {
            source: format!("{s}@{commit}"),
            tokenizer,
            place: Place::Hub(repo),
        })
    }

    /// Another file of the LLM (`tokenizer_config.json`, `config.json` …), if it has one.
    pub fn file(&self, name: &str) -> Result<Option<PathBuf>> {
        match &self.place {
            Place::Dir(d) => Ok(Some(d.join(name)).filter(|p| p.is_file())),
            Place::File => Ok(None),
            Place::Hub(h) => h.file(name),
        }
    }

    /// Whether this is a sentence-transformers embedding model rather than an LLM: its
    /// tokenizer carries the embedding post-processor (an end token after every text).
    pub fn is_embedding_model(&self) -> Result<bool> {
        for marker in ["modules.json", "config_sentence_transformers.json"] {
            if self.file(marker)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rows of the LLM's input embedding matrix: `vocab_size` of its `config.json` (or of its
    /// `text_config`, for multimodal models). `None` without a `config.json`.
    pub fn embedding_rows(&self) -> Result<Option<usize>> {
        let Some(path) = self.file("config.json")? else {
            return Ok(None);
        };
        let v = read_json(&path)?;
        let rows = [
            "vocab_size",
            "text_config.vocab_size",
            "llm_config.vocab_size",
        ]
        .iter()
        .find_map(|key| {
            key.split('.')
                .try_fold(&v, |v, k| v.get(k))
                .and_then(serde_json::Value::as_u64)
        });
        match rows {
            Some(r) => Ok(Some(r as usize)),
            None => Err(Error::artifact(
                &path,
                "has no `vocab_size` (nor `text_config.vocab_size`): cannot tell the size of the \
                 model's embedding matrix",
            )),
        }
    }

    /// The safetensors file holding tensor names of the weights, and those names: the one
    /// `model.safetensors`, or the shard an index maps each name to.
    pub(crate) fn weights(&self) -> Result<Vec<(String, PathBuf)>> {
        if let Some(index) = self.file("model.safetensors.index.json")? {
            let v = read_json(&index)?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::artifact(&index, "no `weight_map` object"))?;
            return Ok(map
                .iter()
                .filter_map(|(name, file)| Some((name.clone(), PathBuf::from(file.as_str()?))))
                .collect());
        }
        if let Some(single) = self.file("model.safetensors")? {
            // SAFETY: mapped read-only, only to list names (as in embed/loading/weights.rs).
            let names = unsafe { candle_core::safetensors::MmapedSafetensors::new(&single) }
                .map_err(|e| Error::artifact(&single, format!("not a safetensors file: {e}")))?
                .tensors()
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>();
            return Ok(names.into_iter().map(|n| (n, single.clone())).collect());
        }
        Err(Error::Config(format!(
            "--init-embeddings needs the LLM's weights, and {} has neither model.safetensors \
             nor model.safetensors.index.json; give --llm the model directory or hub id",
            self.source
        )))
    }

    /// A weight file named by an index, fetched when it is a hub model.
    pub(crate) fn shard(&self, file: &Path) -> Result<PathBuf> {
        if file.is_absolute() {
            return Ok(file.to_path_buf());
        }
        let name = file.to_string_lossy();
        self.file(&name)?.ok_or_else(|| {
            Error::Config(format!(
                "{}: the weight file {name} its index names is missing",
                self.source
            ))
        })
    }
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        cause: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokenizer_json_brings_the_files_beside_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokenizer.json"), "{}").unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"text_config":{"vocab_size":7}}"#,
        )
        .unwrap();
        let llm = Llm::resolve(&d.path().join("tokenizer.json"), "main").unwrap();
        assert_eq!(llm.embedding_rows().unwrap(), Some(7));
        assert!(!llm.is_embedding_model().unwrap());
        std::fs::write(d.path().join("modules.json"), "[]").unwrap();
        assert!(llm.is_embedding_model().unwrap());
        // Under another name it stands alone.
        std::fs::copy(d.path().join("tokenizer.json"), d.path().join("t.json")).unwrap();
        let bare = Llm::resolve(&d.path().join("t.json"), "main").unwrap();
        assert_eq!(bare.embedding_rows().unwrap(), None);
        assert!(bare.file("config.json").unwrap().is_none());
    }

    #[test]
    fn a_directory_without_a_tokenizer_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = Llm::resolve(d.path(), "main").err().unwrap().to_string();
        assert!(e.contains("no `tokenizer.json`"), "{e}");
        let e = Llm::resolve(Path::new("no/such/dir/here"), "main")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a hub id"), "{e}");
    }
}
