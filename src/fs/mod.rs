//! Filesystem primitives every stage's writers share: files and directories that appear
//! whole or not at all (`atomic`, `dir`), one writer per output (`lock`), inputs that are
//! never overwritten (`inputs`), and the test-only fault hooks (`fault`).

pub mod atomic;
pub mod dir;
pub mod fault;
pub mod inputs;
pub mod lock;

use std::path::{Path, PathBuf};

/// The directory holding `path`: "." for a bare relative name, whose `parent()` is "".
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The hidden sibling `.NAME.{tag}` of `path`, in the same directory (so on the same
/// filesystem, where a rename is atomic).
pub(crate) fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.{tag}"))
}

/// Flush a directory's entries (a rename inside it) to disk, so the rename survives a power
/// loss. Best effort: not every platform can open a directory.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
