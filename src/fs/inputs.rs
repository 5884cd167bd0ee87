//! Inputs are never outputs: every output path is checked against the inputs of the command
//! before it is written, by canonical path and (on unix) device + inode, so `./x`, a symlink or
//! a hard link to an input are caught as well as the same spelling.
//!
//! The library's readers note the files they are given ([`note`]); every atomic output
//! ([`crate::fs::atomic::AtomicFile`], [`crate::fs::dir::AtomicDir`]) and the entry points
//! that write ([`check_output`]) refuse an output that is, contains or lies inside one of them.
//! The notes live for the whole process (those inside a staged directory until its commit): a
//! sidtool command reads its inputs and writes its outputs, and a library user who really
//! means to rewrite a file it read calls [`forget`].

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether an output is one file or a directory of files (a directory output must not
/// contain an input either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputKind {
    File,
    Dir,
}

struct Noted {
    canonical: PathBuf,
    is_dir: bool,
    /// Device and inode, plus size and modification time: an inode number freed by a deleted
    /// input and reused by an unrelated new file must not make that file look like the input.
    #[cfg(unix)]
    id: Option<(u64, u64, u64, i64, i64)>,
}

static NOTED: Mutex<Vec<Noted>> = Mutex::new(Vec::new());

/// Record `path` as an input of this process. Paths that do not exist are ignored (the
/// reader reports them).
pub fn note(path: &Path) {
    let Some(n) = identify(path) else { return };
    let mut v = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    if !v.iter().any(|m| m.canonical == n.canonical) {
        v.push(n);
    }
}

/// Forget the inputs inside the directory whose canonical path is `dir`: a staged output's
/// own files, read back while it is built (`build` reads its staged sids.parquet), are not
/// inputs of a later writer.
pub(crate) fn forget_under(dir: &Path) {
    NOTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|n| !n.canonical.starts_with(dir));
}

fn identify(path: &Path) -> Option<Noted> {
    let canonical = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    Some(Noted {
        is_dir: meta.is_dir(),
        #[cfg(unix)]
        id: {
            use std::os::unix::fs::MetadataExt;
            Some((
                meta.dev(),
                meta.ino(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
            ))
        },
        canonical,
    })
}

/// Refuse `out` if it is one of `inputs` or of the noted inputs, contains one (directory
/// outputs: the swap would remove it), or lies inside an input directory. `inputs` are
/// noted too.
pub(crate) fn check_output(out: &Path, kind: OutputKind, inputs: &[&Path]) -> Result<()> {
    for p in inputs {
        note(p);
    }
    // An output that does not exist yet can be none of these; its parent might be an input
    // directory, though.
    let target = match identify(out) {
        Some(t) => t,
        None => match std::fs::canonicalize(crate::fs::parent_dir(out)) {
            Ok(p) => Noted {
                canonical: p.join(out.file_name().unwrap_or_default()),
                is_dir: false,
                #[cfg(unix)]
                id: None,
            },
            Err(_) => return Ok(()),
        },
    };
    let v = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    for input in v.iter() {
        #[cfg(unix)]
        let same_inode = input.id.is_some() && input.id == target.id;
        #[cfg(not(unix))]
        let same_inode = false;
        let relation = if same_inode || input.canonical == target.canonical {
            "is the input"
        } else if kind == OutputKind::Dir && input.canonical.starts_with(&target.canonical) {
            "contains the input"
        } else if input.is_dir && target.canonical.starts_with(&input.canonical) {
            "is inside the input"
        } else {
            continue;
        };
        return Err(Error::OutputIsInput {
            out: out.to_path_buf(),
            input: input.canonical.clone(),
            relation,
        });
    }
    Ok(())
}
