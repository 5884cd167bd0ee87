//! Staging of `build` outputs: written into a hidden directory, moved into place at the end.

use crate::error::{Error, Result};
use crate::fs::atomic::remove_stale;
use std::path::{Path, PathBuf};

/// A hidden directory inside the output directory that receives a build's files; removed
/// (with the output directory, if the build created it) unless committed.
const STAGING_PREFIX: &str = ".sidtool-build-";
const BACKUP_PREFIX: &str = ".sidtool-old-";

pub(super) struct Staging {
    out: PathBuf,
    dir: PathBuf,
    created_out: bool,
    done: bool,
}

impl Staging {
    pub(super) fn create(out: &Path) -> Result<Self> {
        let created_out = !out.exists();
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        remove_stale(out, STAGING_PREFIX);
        remove_stale(out, BACKUP_PREFIX);
        let dir = out.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging {
            out: out.to_path_buf(),
            dir,
            created_out,
            done: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    /// Move each named entry into the output directory, replacing what was there. The old
    /// entries, and any of `known` (every file a build can write) this build did not write, are
    /// first moved aside, so no file of an earlier, differently configured build survives next
    /// to the new ones; if any step fails, everything is put back as it was.
    pub(super) fn commit(mut self, names: &[&str], known: &[&str]) -> Result<()> {
        let backup = self
            .out
            .join(format!("{BACKUP_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&backup);
        std::fs::create_dir(&backup).map_err(|e| Error::io(&backup, e))?;
        let mut aside: Vec<&str> = known.iter().chain(names).copied().collect();
        aside.sort_unstable();
        aside.dedup();
        let (mut set_aside, mut placed) = (Vec::new(), Vec::new());
        let mut swap = || -> Result<()> {
            for name in &aside {
                let old = self.out.join(name);
                if old.exists() {
                    std::fs::rename(&old, backup.join(name)).map_err(|e| Error::io(&old, e))?;
                    set_aside.push(*name);
                }
            }
            for name in names {
                let to = self.out.join(name);
                std::fs::rename(self.dir.join(name), &to).map_err(|e| Error::io(&to, e))?;
                placed.push(*name);
            }
            Ok(())
        };
        let result = swap();
        if result.is_err() {
            for name in &placed {
                let _ = std::fs::rename(self.out.join(name), self.dir.join(name));
            }
            for name in &set_aside {
                let _ = std::fs::rename(backup.join(name), self.out.join(name));
            }
        } else {
            self.done = true;
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&backup);
        result
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
            if self.created_out {
                let _ = std::fs::remove_dir(&self.out);
            }
        }
    }
}
