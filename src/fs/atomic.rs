//! Atomic file outputs: written beside the destination under a temporary name, flushed to
//! disk, renamed on success and deleted on failure or drop, so a crash or bad input never
//! leaves a half-written file. Directory outputs are in [`crate::fs::dir`].

use crate::error::{Error, Result};
use crate::fs::inputs::{self, OutputKind};
use crate::fs::lock::OutputLock;
use crate::fs::{fault, parent_dir, sync_dir};
use std::path::{Path, PathBuf};

/// Temporary sibling name for `dest`: hidden, unique per process. Leftovers of killed
/// processes are removed first, so interrupted runs do not pile up files.
fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale(parent_dir(dest), &format!(".{name}.tmp-"));
    parent_dir(dest).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Remove entries of `dir` named `{prefix}{pid}` (optionally with an extension) whose process
/// is gone: what a killed sidtool left behind, so interrupted runs do not pile up files.
pub(crate) fn remove_stale(dir: &Path, prefix: &str) {
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

pub(crate) fn ensure_parent(dest: &Path) -> Result<()> {
    let p = parent_dir(dest);
    std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))
}

/// A file being written; becomes `dest` on [`AtomicFile::commit`], vanishes otherwise. It
/// holds `dest`'s lock from creation to commit, and refuses a `dest` that is an input.
pub(crate) struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    /// A second handle on the temporary file, to flush its data before the rename.
    sync: Option<std::fs::File>,
    done: bool,
    _lock: OutputLock,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<(Self, std::fs::File)> {
        ensure_parent(dest)?;
        inputs::check_output(dest, OutputKind::File, &[])?;
        let lock = OutputLock::acquire(dest)?;
        let tmp = temp_name(dest);
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok((
            AtomicFile {
                sync: f.try_clone().ok(),
                tmp,
                dest: dest.to_path_buf(),
                done: false,
                _lock: lock,
            },
            f,
        ))
    }

    /// Flush the data, rename it into place, flush the directory entry: after a power loss
    /// `dest` is the old file or the complete new one, never an empty or truncated one.
    pub fn commit(mut self) -> Result<()> {
        if let Some(f) = self.sync.take() {
            f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.done = true;
        fault::step();
        sync_dir(parent_dir(&self.dest));
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

/// Write `v` as pretty JSON (with a final newline), atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    write_file(path, text.as_bytes())
}
