//! `sidtool man`: manual pages (roff) generated from the same clap definition as `--help`.

use crate::args::Cli;
use crate::report::{Say, print_out};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

/// The top-level page on stdout, or with `out` one page per (sub)command into that directory:
/// `sidtool.1`, `sidtool-build.1`, `sidtool-bench-kmeans.1`, ….
pub fn write(out: Option<&Path>, say: Say) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building gives every subcommand its display name (`sidtool-build`), the pages' names.
    cmd.build();
    let Some(dir) = out else {
        return print_out(&render(cmd)?);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = 0;
    write_pages(cmd, dir, &mut pages)?;
    say.log(&format!(
        "wrote {pages} manual pages into {}",
        dir.display()
    ));
    Ok(())
}

fn render(cmd: clap::Command) -> Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    Ok(String::from_utf8(buf)?)
}

fn write_pages(cmd: clap::Command, dir: &Path, pages: &mut usize) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, pages)?;
    }
    let name = clap_mangen::Man::new(cmd.clone()).get_filename();
    sidtool::fs::atomic::write_file(&dir.join(name), render(cmd)?.as_bytes())?;
    *pages += 1;
    Ok(())
}
