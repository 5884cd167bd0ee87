//! Atomic outputs: write beside the destination under a temporary name, rename on success,
//! delete on failure or drop, so a crash or bad input never leaves a half-written file.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Temporary sibling name for `dest`: hidden, unique per process.
fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale(
        dest.parent().unwrap_or(Path::new(".")),
        &format!(".{name}.tmp-"),
    );
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Remove entries of `dir` named `{prefix}{pid}` (optionally with an extension) whose process
/// is gone: what a killed sidtool left behind, so interrupted runs do not pile up files.
pub fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !process_alive(pid)
        {
            let path = e.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// Whether a process exists; where that cannot be told, assume it does (and keep its files).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn ensure_parent(dest: &Path) -> Result<()> {
    if let Some(p) = dest.parent()
        && !p.as_os_str().is_empty()
    {
        std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    Ok(())
}

/// A file being written; becomes `dest` on [`AtomicFile::commit`], vanishes otherwise.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<(Self, std::fs::File)> {
        ensure_parent(dest)?;
        let tmp = temp_name(dest);
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok((
            AtomicFile {
                tmp,
                dest: dest.to_path_buf(),
                done: false,
            },
            f,
        ))
    }

    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write `bytes` to `dest` atomically.
pub fn write_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let (guard, mut f) = AtomicFile::create(dest)?;
    f.write_all(bytes).map_err(|e| Error::io(dest, e))?;
    drop(f);
    guard.commit()
}

/// A directory being filled; replaces `dest` on [`AtomicDir::commit`].
pub struct AtomicDir {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl AtomicDir {
    pub fn create(dest: &Path) -> Result<Self> {
        ensure_parent(dest)?;
        let tmp = temp_name(dest);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicDir {
            tmp,
            dest: dest.to_path_buf(),
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn commit(mut self) -> Result<()> {
        if self.dest.exists() {
            let old = temp_name(&self.dest).with_extension("old");
            std::fs::rename(&self.dest, &old).map_err(|e| Error::io(&self.dest, e))?;
            if let Err(e) = std::fs::rename(&self.tmp, &self.dest) {
                let _ = std::fs::rename(&old, &self.dest); // put the previous version back
                return Err(Error::io(&self.dest, e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Write `v` as pretty JSON (with a final newline), atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    write_file(path, text.as_bytes())
}
