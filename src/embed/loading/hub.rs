//! Finding a model's files: a local directory, or a Hugging Face hub id resolved through the
//! normal HF cache (hf-hub).
//!
//! hf-hub 0.5 honours `HF_HOME` but not `HF_HUB_CACHE` nor `HF_HUB_OFFLINE`, and looks a
//! revision up only through `refs/`; pipelines rely on all three, so the cache lookup is done
//! here and hf-hub is only asked to download what the cache lacks.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where a model's files are, once resolved.
#[derive(Debug, Clone)]
pub(crate) struct ModelFiles {
    /// Shown in messages and recorded in metadata.
    pub source: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: Vec<PathBuf>,
    /// Directory holding `config.json` (other optional files are looked up beside it).
    pub dir: PathBuf,
}

impl ModelFiles {
    /// An optional file beside `config.json` (sentence-transformers' pooling config ...).
    pub fn optional(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.is_file().then_some(p)
    }
}

/// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub(crate) fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// `HF_HUB_OFFLINE` set to 1/true/yes/on.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Resolve `spec` (a directory, or a hub id such as `Qwen/Qwen3-Embedding-0.6B`) at
/// `revision` (branch, tag or 40-hex commit; hub ids only).
pub(crate) fn resolve(spec: &str, revision: &str) -> Result<ModelFiles> {
    let path = Path::new(spec);
    if path.is_dir() {
        return from_dir(path, spec);
    }
    if path.exists() {
        return Err(Error::Config(format!(
            "--model {spec}: is a file; give the model's directory (holding config.json, \
             tokenizer.json and *.safetensors) or a hub id such as Qwen/Qwen3-Embedding-0.6B"
        )));
    }
    let looks_like_id =
        spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.contains('\\');
    if !looks_like_id {
        return Err(Error::Config(format!(
            "--model {spec}: no such directory, and not a hub id of the form ORG/NAME"
        )));
    }
    Hub::new(spec, revision).resolve()
}

/// A directory laid out like a saved transformers model.
fn from_dir(dir: &Path, source: &str) -> Result<ModelFiles> {
    let need = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::artifact(
                dir,
                format!("model directory has no `{name}`"),
            ))
        }
    };
    let config = need("config.json")?;
    let tokenizer = need("tokenizer.json")?;
    let weights = if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else if dir.join("model.safetensors.index.json").is_file() {
        shards(&dir.join("model.safetensors.index.json"))?
            .into_iter()
            .map(|f| need(&f))
            .collect::<Result<_>>()?
    } else {
        return Err(Error::artifact(
            dir,
            "model directory has neither `model.safetensors` nor `model.safetensors.index.json` \
             (only safetensors weights are read; convert .bin checkpoints first)",
        ));
    };
    Ok(ModelFiles {
        source: source.to_string(),
        config,
        tokenizer,
        weights,
        dir: dir.to_path_buf(),
    })
}

/// The shard file names an index lists, in order of first appearance.
fn shards(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: index.to_path_buf(),
        cause: e,
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::artifact(index, "no `weight_map` object"))?;
    let mut files: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .ok_or_else(|| Error::artifact(index, "`weight_map` values must be file names"))?;
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    if files.is_empty() {
        return Err(Error::artifact(index, "`weight_map` is empty"));
    }
    Ok(files)
}

/// A hub repository in the HF cache (downloads only what the cache lacks).
pub(crate) struct Hub {
    id: String,
    revision: String,
    cache: PathBuf,
}

impl Hub {
    pub(crate) fn new(id: &str, revision: &str) -> Self {
        Hub {
            id: id.to_string(),
            revision: revision.to_string(),
            cache: hub_cache_dir(),
        }
    }

    fn repo_dir(&self) -> PathBuf {
        self.cache
            .join(format!("models--{}", self.id.replace('/', "--")))
    }

    /// The cached snapshot directory of the revision, if the cache knows it.
    pub(crate) fn snapshot(&self) -> Option<PathBuf> {
        let repo = self.repo_dir();
        let commit = if is_commit(&self.revision) {
            self.revision.clone()
        } else {
            std::fs::read_to_string(repo.join("refs").join(&self.revision))
                .ok()?
                .trim()
                .to_string()
        };
        let dir = repo.join("snapshots").join(commit);
        dir.is_dir().then_some(dir)
    }

    /// `id@commit`, the commit read from the snapshot directory's name (the HF cache keeps a
    /// revision's files in `snapshots/<commit>/`): a branch such as `main` moves, so recording
    /// it would not say which weights made the vectors.
    fn source(&self, snapshot: &Path) -> String {
        match snapshot.file_name().and_then(|n| n.to_str()) {
            Some(commit) if is_commit(commit) => format!("{}@{commit}", self.id),
            _ => format!("{}@{}", self.id, self.revision),
        }
    }

    fn resolve(&self) -> Result<ModelFiles> {
        if let Some(dir) = self.snapshot()
            && let Ok(files) = from_dir(&dir, &self.source(&dir))
        {
            return Ok(files);
        }
        if offline() {
            return Err(Error::Model(format!(
                "model {} (revision {}) is not in the Hugging Face cache at {} and HF_HUB_OFFLINE \
                 is set (nor is there a local directory of that name); download it first \
                 (`hf download {} --revision {}`), point HF_HUB_CACHE or HF_HOME at \
                 the cache that has it, or pass a local directory to --model",
                self.id,
                self.revision,
                self.cache.display(),
                self.id,
                self.revision
            )));
        }
        self.download()
    }

    fn download(&self) -> Result<ModelFiles> {
        use hf_hub::api::sync::ApiBuilder;
        use hf_hub::{Repo, RepoType};
        let fail = |what: &str, e: hf_hub::api::sync::ApiError| {
            Error::Model(format!(
                "cannot fetch {what} of model {} (revision {}) from the Hugging Face hub: {e} \
                 (there is no local directory of that name either); set HF_HUB_OFFLINE=1 to use \
                 only the cache at {}, or pass a local directory",
                self.id,
                self.revision,
                self.cache.display()
            ))
        };
        let api = ApiBuilder::from_env()
            .with_cache_dir(self.cache.clone())
            .with_progress(false)
            .build()
            .map_err(|e| fail("anything", e))?;
        let repo = api.repo(Repo::with_revision(
            self.id.clone(),
            RepoType::Model,
            self.revision.clone(),
        ));
        let config = repo
            .get("config.json")
            .map_err(|e| fail("config.json", e))?;
        let tokenizer = repo
            .get("tokenizer.json")
            .map_err(|e| fail("tokenizer.json", e))?;
        let weights = match repo.get("model.safetensors") {
            Ok(p) => vec![p],
            Err(single) => {
                let index = repo
                    .get("model.safetensors.index.json")
                    .map_err(|_| fail("model.safetensors", single))?;
                shards(&index)?
                    .iter()
                    .map(|f| repo.get(f).map_err(|e| fail(f, e)))
                    .collect::<Result<_>>()?
            }
        };
        for optional in ["modules.json", "1_Pooling/config.json"] {
            let _ = repo.get(optional);
        }
        let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(ModelFiles {
            source: self.source(&dir),
            config,
            tokenizer,
            weights,
            dir,
        })
    }
}

impl Hub {
    /// `name` from the cached snapshot, else (unless offline) downloaded into the cache;
    /// `None` when neither has it (a 404, or offline without it).
    pub(crate) fn file(&self, name: &str) -> Result<Option<PathBuf>> {
        if let Some(p) = self
            .snapshot()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
        {
            return Ok(Some(p));
        }
        if offline() {
            return Ok(None);
        }
        use hf_hub::api::sync::{ApiBuilder, ApiError};
        use hf_hub::{Repo, RepoType};
        let api = ApiBuilder::from_env()
            .with_cache_dir(self.cache.clone())
            .with_progress(false)
            .build()
            .map_err(|e| Error::Model(format!("cannot reach the Hugging Face hub: {e}")))?;
        let repo = api.repo(Repo::with_revision(
            self.id.clone(),
            RepoType::Model,
            self.revision.clone(),
        ));
        match repo.get(name) {
            Ok(p) => Ok(Some(p)),
            // A file the repository does not have: optional files are often absent.
            Err(ApiError::RequestError(e)) if e.to_string().contains("status: 404") => Ok(None),
            Err(e) => Err(Error::Model(format!(
                "cannot fetch {name} of {} (revision {}) from the Hugging Face hub: {e}; set \
                 HF_HUB_OFFLINE=1 to use only the cache at {}, or pass a local directory",
                self.id,
                self.revision,
                self.cache.display()
            ))),
        }
    }

    /// Shown in messages: `id@revision`.
    pub(crate) fn describe(&self) -> String {
        format!("{}@{}", self.id, self.revision)
    }

    pub(crate) fn cache(&self) -> &Path {
        &self.cache
    }
}

pub(crate) fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_names_the_snapshot_commit_not_the_branch() {
        let hub = Hub {
            id: "org/model".into(),
            revision: "main".into(),
            cache: PathBuf::from("/cache"),
        };
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = hub.repo_dir().join("snapshots").join(commit);
        assert_eq!(hub.source(&snap), format!("org/model@{commit}"));
        assert_eq!(hub.source(Path::new("/elsewhere/x")), "org/model@main");
    }
}
