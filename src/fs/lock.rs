//! One writer per output: an advisory lock (`flock` on unix, through std's `File::try_lock`)
//! on a lock file beside the output, `.NAME.sidtool.lock`, holding the writer's pid. A second
//! writer fails at once with the holder's pid instead of interleaving its commit with the
//! first. The kernel releases the lock when the holder dies, however it dies, so a stale lock
//! file never blocks anyone; it is reused and removed by the next run.

use crate::error::{Error, Result};
use crate::fs::{fault, sibling};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The lock file of `out`: a hidden sibling, so it survives the swap of a directory output.
pub(crate) fn lock_path(out: &Path) -> PathBuf {
    sibling(out, "sidtool.lock")
}

/// Locks this process holds, by canonical lock-file path. A process may lock an output it
/// already holds (`embed` holds its output for the whole run, then writes it through
/// `AtomicFile`, which locks too): flocks taken through two descriptors of one process
/// conflict, so the second taker shares the first one's lock instead.
static HELD: Mutex<Option<HashMap<PathBuf, Held>>> = Mutex::new(None);

struct Held {
    count: usize,
    path: PathBuf,
    file: File,
}

/// The lock on one output, released (and its lock file removed) when the last guard of this
/// process for that output is dropped.
#[must_use = "the lock is released when this guard is dropped"]
pub(crate) struct OutputLock {
    key: PathBuf,
}

impl OutputLock {
    /// Lock `out` (a file or directory output; its parent directory must exist).
    pub(crate) fn acquire(out: &Path) -> Result<Self> {
        let path = lock_path(out);
        let parent = path.parent().unwrap_or(Path::new("."));
        let key = std::fs::canonicalize(parent)
            .map_err(|e| Error::io(parent, e))?
            .join(path.file_name().unwrap_or_default());
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let map = held.get_or_insert_with(HashMap::new);
        if let Some(h) = map.get_mut(&key) {
            h.count += 1;
            return Ok(OutputLock { key });
        }
        let Some(file) = lock_file(&path, out)? else {
            return Ok(OutputLock { key }); // no locking on this filesystem (warned)
        };
        map.insert(
            key.clone(),
            Held {
                count: 1,
                path,
                file,
            },
        );
        drop(held);
        fault::hold_lock();
        Ok(OutputLock { key })
    }
}

/// Open, lock and stamp the lock file; None where the filesystem has no locks.
fn lock_file(path: &Path, out: &Path) -> Result<Option<File>> {
    loop {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = f.read_to_string(&mut text);
                return Err(Error::Locked {
                    path: out.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(
                    "{}: this filesystem has no file locks; nothing stops two sidtool \
                     processes from writing it at once",
                    out.display()
                );
                drop(f);
                let _ = std::fs::remove_file(path);
                return Ok(None);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        // The previous holder removes the file before it unlocks: if it did so between our
        // open and our lock, we hold a lock on a deleted file that nobody else can see; take
        // the one now at the path instead.
        if same_file(&f, path) {
            let stamp = |f: &mut File| -> std::io::Result<()> {
                f.set_len(0)?;
                f.rewind()?;
                writeln!(f, "{}", std::process::id())
            };
            stamp(&mut f).map_err(|e| Error::io(path, e))?;
            return Ok(Some(f));
        }
    }
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let Some(map) = held.as_mut() else { return };
        let Some(h) = map.get_mut(&self.key) else {
            return;
        };
        h.count -= 1;
        if h.count == 0
            && let Some(h) = map.remove(&self.key)
        {
            // Removed while still locked (see `lock_file`), then unlocked by the close.
            let _ = std::fs::remove_file(&h.path);
            drop(h.file);
        }
    }
}
