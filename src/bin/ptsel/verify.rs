//! `ptsel verify`: recompute every checksum (of every shard of a corpus).

use anyhow::Result;
use ptsel::Engine;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `ptsel verify`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file or corpus folder.
    pub path: PathBuf,
}

/// Run `ptsel verify`.
pub fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let engine = Engine::open(&args.path)?;
    let bytes = engine.verify()?;
    let parts = match engine.corpus() {
        Some(c) => format!("{} shards", c.shards.len()),
        None => format!("{} sections", engine.index()?.sections().len()),
    };
    outln!(
        "{}: ok, {parts}, {:.1} MiB checked in {:.3} s",
        args.path.display(),
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    )?;
    Ok(())
}
