//! `ptsel verify`: recompute every checksum.

use anyhow::Result;
use ptsel::{Index, OpenOptions};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `ptsel verify`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file.
    pub path: PathBuf,
}

/// Run `ptsel verify`.
pub fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let index = Index::open_with(&args.path, OpenOptions { verify: true })?;
    let sections = index.sections();
    let bytes: u64 = sections.iter().map(|s| s.len).sum();
    outln!(
        "{}: ok, {} sections, {:.1} MiB checked in {:.3} s",
        args.path.display(),
        sections.len(),
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    )?;
    Ok(())
}
