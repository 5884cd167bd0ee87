//! Atomic directory outputs (`build --out`, `train --out`, `vocab --out`,
//! `import-recbole --out`): the complete new output is staged in a hidden sibling of the
//! destination, `.NAME.sidtool-new-PID` (same filesystem), then swapped in with one atomic
//! operation, and the old output is removed afterwards.
//!
//! - Linux: `renameat2(RENAME_EXCHANGE)` swaps the staged and the existing directory in one
//!   step; without an existing destination, `renameat2(RENAME_NOREPLACE)` moves the staged
//!   one in. Whenever the process dies, the destination is the complete old output or the
//!   complete new one.
//! - Elsewhere, or on a filesystem without exchange: the old output is renamed aside to
//!   `.NAME.sidtool-old-PID`, the staged one renamed into place, the old one removed. A death
//!   between the two renames leaves no destination but the complete old output aside; the
//!   next writer (under the lock) renames it back before doing anything else.
//!
//! Every writer holds the output's lock ([`OutputLock`]) from staging to the end of the
//! commit, and starts by cleaning what dead writers left: hidden siblings of the destination
//! are never the only complete output once that recovery has run.

use crate::error::{Error, Result};
use crate::fs::atomic::ensure_parent;
use crate::fs::inputs::{self, OutputKind};
use crate::fs::lock::OutputLock;
use crate::fs::{fault, parent_dir, sibling, sync_dir};
use std::path::{Path, PathBuf};

const NEW_TAG: &str = "sidtool-new-";
const OLD_TAG: &str = "sidtool-old-";

/// A directory being filled; replaces `dest` on [`AtomicDir::commit`], vanishes otherwise.
pub(crate) struct AtomicDir {
    stage: PathBuf,
    /// The staging directory's canonical path, for [`inputs::forget_under`] once it is gone.
    stage_key: PathBuf,
    dest: PathBuf,
    done: bool,
    _lock: OutputLock,
}

impl AtomicDir {
    /// Lock `dest`, recover from earlier killed writers, and create the staging directory.
    /// Refuses a `dest` that is a file, or is, contains or lies inside an input.
    pub fn create(dest: &Path) -> Result<Self> {
        // A symlink to a directory: the directory it points to is the output (swapping the
        // link itself would turn it into a plain directory and leave the target stale).
        let resolved;
        let dest = match std::fs::symlink_metadata(dest) {
            Ok(m) if m.file_type().is_symlink() && dest.is_dir() => {
                resolved = std::fs::canonicalize(dest).map_err(|e| Error::io(dest, e))?;
                resolved.as_path()
            }
            _ => dest,
        };
        if let Ok(m) = std::fs::metadata(dest)
            && !m.is_dir()
        {
            return Err(Error::artifact(
                dest,
                "exists and is not a directory; give a directory for this output",
            ));
        }
        ensure_parent(dest)?;
        inputs::check_output(dest, OutputKind::Dir, &[])?;
        let lock = OutputLock::acquire(dest)?;
        recover(dest)?;
        let stage = sibling(dest, &format!("{NEW_TAG}{}", std::process::id()));
        std::fs::create_dir(&stage).map_err(|e| Error::io(&stage, e))?;
        let stage_key = std::fs::canonicalize(&stage).unwrap_or_else(|_| stage.clone());
        Ok(AtomicDir {
            stage,
            stage_key,
            dest: dest.to_path_buf(),
            done: false,
            _lock: lock,
        })
    }

    /// Where to write the new output's entries.
    pub fn path(&self) -> &Path {
        &self.stage
    }

    /// Replace `dest` with the staged directory; nothing of the old output survives.
    pub fn commit(self) -> Result<()> {
        self.commit_keeping(|_| false)
    }

    /// Replace `dest` with the staged directory, carrying over the entries of the old output
    /// for which `keep(name)` is true and which the new output does not have (a user's own
    /// files in an output directory): hard links (copies where links fail) made before the
    /// swap, so they are in the new directory from its first instant.
    pub(crate) fn commit_keeping(mut self, keep: impl Fn(&str) -> bool) -> Result<()> {
        let exists = std::fs::symlink_metadata(&self.dest).is_ok();
        if exists {
            let entries = std::fs::read_dir(&self.dest).map_err(|e| Error::io(&self.dest, e))?;
            for e in entries {
                let e = e.map_err(|e| Error::io(&self.dest, e))?;
                let name = e.file_name();
                let to = self.stage.join(&name);
                if !keep(&name.to_string_lossy()) || std::fs::symlink_metadata(&to).is_ok() {
                    continue;
                }
                link_tree(&e.path(), &to)?;
                fault::step();
            }
        }
        sync_tree(&self.stage)?;
        if exists {
            swap(&self.stage, &self.dest)?;
        } else {
            move_new(&self.stage, &self.dest)?;
        }
        self.done = true;
        fault::step();
        sync_dir(parent_dir(&self.dest));
        // After an exchange the staging path holds the old output; after the fallback it is
        // gone (and this removal is a no-op).
        let _ = std::fs::remove_dir_all(&self.stage);
        fault::step();
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        inputs::forget_under(&self.stage_key);
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.stage);
        }
    }
}

/// The siblings of `dest` that writers of it leave while they run, with the pid in the name.
fn leftovers(dest: &Path) -> Vec<(PathBuf, bool)> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (new, old) = (format!(".{name}.{NEW_TAG}"), format!(".{name}.{OLD_TAG}"));
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, bool)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let is_old = n.starts_with(&old);
            (is_old || n.starts_with(&new)).then(|| (e.path(), is_old))
        })
        .collect();
    v.sort();
    v
}

/// Under the lock, no other writer is running: every leftover is a dead writer's. A
/// destination missing next to a set-aside old output means a writer died between the two
/// renames of the fallback; that old output is the only complete one and goes back first.
/// Everything else is removed (each a staged, possibly incomplete, new output, or an old
/// output already replaced).
fn recover(dest: &Path) -> Result<()> {
    let found = leftovers(dest);
    if std::fs::symlink_metadata(dest).is_err()
        && let Some((old, _)) = found.iter().find(|(_, is_old)| *is_old)
    {
        std::fs::rename(old, dest).map_err(|e| Error::io(dest, e))?;
        sync_dir(parent_dir(dest));
        tracing::warn!(
            "{}: restored the previous output, which an interrupted run had set aside",
            dest.display()
        );
    }
    for (p, _) in leftovers(dest) {
        // One that cannot be removed is only clutter (`dest` itself is complete): say so, and
        // go on.
        if let Err(e) = std::fs::remove_dir_all(&p) {
            tracing::warn!("{}: cannot remove: {e}", p.display());
        }
    }
    Ok(())
}

/// Put the staged `stage` in place of the existing `dest` in one step where the system can,
/// else through the documented rename-aside fallback.
fn swap(stage: &Path, dest: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    if !fault::no_exchange() {
        match renameat2(stage, dest, libc::RENAME_EXCHANGE) {
            Ok(()) => return Ok(()),
            // Filesystems without exchange (some network and FUSE ones) say EINVAL; old kernels
            // and libcs ENOSYS. Anything else is a real failure.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
            Err(e) => return Err(Error::io(dest, e)),
        }
    }
    let aside = sibling(dest, &format!("{OLD_TAG}{}", std::process::id()));
    std::fs::rename(dest, &aside).map_err(|e| Error::io(dest, e))?;
    fault::step();
    if let Err(e) = std::fs::rename(stage, dest) {
        let _ = std::fs::rename(&aside, dest); // put the previous output back
        return Err(Error::io(dest, e));
    }
    fault::step();
    let _ = std::fs::remove_dir_all(&aside);
    Ok(())
}

/// Move the staged `stage` to the (absent) `dest`, refusing to replace one that appeared
/// meanwhile (a writer that does not take the lock).
fn move_new(stage: &Path, dest: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    match renameat2(stage, dest, libc::RENAME_NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
        Err(e) => return Err(Error::io(dest, e)),
    }
    std::fs::rename(stage, dest).map_err(|e| Error::io(dest, e))
}

#[cfg(target_os = "linux")]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths, resolved against the working directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Recreate `from` at `to` sharing the file data: directories are created, files hard-linked
/// (copied where the filesystem has no hard links), symlinks recreated.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io(from, e))?;
    if meta.is_dir() {
        std::fs::create_dir(to).map_err(|e| Error::io(to, e))?;
        for e in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let e = e.map_err(|e| Error::io(from, e))?;
            link_tree(&e.path(), &to.join(e.file_name()))?;
        }
        return Ok(());
    }
    #[cfg(unix)]
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io(from, e))?;
        return std::os::unix::fs::symlink(target, to).map_err(|e| Error::io(to, e));
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    }
    Ok(())
}

/// Flush every file and directory of the staged output to disk before it is swapped in, so
/// after a power loss the swapped-in directory never holds empty or truncated files.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let t = e.file_type().map_err(|err| Error::io(&e.path(), err))?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            sync_file(&e.path())?;
        }
    }
    sync_dir(dir);
    Ok(())
}

fn sync_file(path: &Path) -> Result<()> {
    // Unix can flush through a read-only handle; Windows needs write access.
    let f = if cfg!(unix) {
        std::fs::File::open(path)
    } else {
        std::fs::OpenOptions::new().write(true).open(path)
    };
    f.and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// Prefix of the staging directories that `build` of earlier sidtool versions made inside the
/// output directory (never part of an output; a killed build left them behind).
pub(crate) const LEGACY_STAGING_PREFIX: &str = ".sidtool-build-";

/// Whether `name` is such a staging directory. (Earlier versions' `.sidtool-old-PID` backups
/// are kept: one may hold the only copy of an output.)
pub(crate) fn is_legacy_scratch(name: &str) -> bool {
    name.starts_with(LEGACY_STAGING_PREFIX)
}
