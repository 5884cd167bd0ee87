//! `-` as an output path: the data goes to stdout.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub fn is_stdout(p: &Path) -> bool {
    p == Path::new("-")
}

/// At most one output may be `-`: two files on one stdout could not be told apart.
pub fn refuse_two(outputs: &[(&str, Option<&Path>)]) -> Result<()> {
    let dashes: Vec<&str> = outputs
        .iter()
        .filter(|(_, p)| p.is_some_and(is_stdout))
        .map(|(flag, _)| *flag)
        .collect();
    if dashes.len() > 1 {
        anyhow::bail!(
            "{} are both `-`: only one output can go to stdout",
            dashes.join(" and ")
        );
    }
    Ok(())
}

/// Write `name` with the library's usual (atomic) writer into a private temporary directory,
/// then copy the finished file to stdout: a run that fails part-way puts nothing on stdout,
/// and Parquet's footer is only known once the whole file is written.
pub fn via_temp_file(name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = TempDir::new()?;
    let file = dir.0.join(name);
    write(&file)?;
    let mut f = std::fs::File::open(&file).with_context(|| format!("{}", file.display()))?;
    let mut o = std::io::stdout().lock();
    std::io::copy(&mut f, &mut o)?;
    std::io::Write::flush(&mut o)?;
    Ok(())
}

/// A directory under the system's temporary directory, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("sidtool-{}-{nanos}", std::process::id()));
        // create_dir (not _all) fails if the name is taken: never write into someone else's.
        std::fs::create_dir(&dir).with_context(|| {
            format!("cannot create a temporary directory in {}", base.display())
        })?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dash_at_most() {
        let dash = Path::new("-");
        let file = Path::new("out.parquet");
        assert!(refuse_two(&[("--out", Some(dash)), ("--stats", Some(file))]).is_ok());
        assert!(refuse_two(&[("--out", Some(file)), ("--stats", None)]).is_ok());
        let e = refuse_two(&[("--out", Some(dash)), ("--stats", Some(dash))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--out and --stats are both `-`: only one output can go to stdout"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_directory() {
        let mut seen = PathBuf::new();
        let r = via_temp_file("x.parquet", |p| {
            seen = p.parent().unwrap().to_path_buf();
            std::fs::write(p, b"partial")?;
            anyhow::bail!("failed half way")
        });
        assert!(r.is_err());
        assert!(!seen.as_os_str().is_empty() && !seen.exists());
    }
}
