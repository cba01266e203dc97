//! `ptsel info`: what an index holds.

use anyhow::Result;
use ptsel::Engine;
use std::path::PathBuf;

/// Arguments of `ptsel info`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file.
    pub path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `ptsel info`.
pub fn run(args: Args) -> Result<()> {
    let info = Engine::open(&args.path)?.info()?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    outln!("index     {}", info.path)?;
    outln!(
        "format    v{}, written by {}",
        info.format_version,
        info.writer
    )?;
    outln!(
        "shape     {} rows x {} dims, {} vectors, metric {}",
        info.rows,
        info.dim,
        info.dtype,
        info.metric
    )?;
    let names = if info.has_class_names { ", named" } else { "" };
    outln!("classes   {}{names}", info.classes)?;
    outln!(
        "ids       {}",
        if info.has_ids {
            "stored"
        } else {
            "row numbers"
        }
    )?;
    outln!(
        "size      {} ({:.1} MiB), opened in {:.3} ms, built in {:.2} s",
        info.file_bytes,
        info.file_bytes as f64 / 1048576.0,
        info.open_ms.unwrap_or_default(),
        info.build_seconds
    )?;
    match &info.hnsw {
        Some(h) => outln!(
            "hnsw      M {}, ef_construction {}, seed {}, {} levels; repaired {} unreachable, {} self-recall failures",
            h.m,
            h.ef_construction,
            h.seed,
            h.max_level + 1,
            h.unreachable_repaired,
            h.self_recall_repaired
        )?,
        None => outln!("hnsw      none (search needs --exact)")?,
    }
    for (k, v) in &info.params {
        outln!("param     {k} = {v}")?;
    }
    outln!("sections:")?;
    for s in &info.sections {
        outln!(
            "  {:<18} offset {:>14}  {:>14} bytes",
            s.kind,
            s.offset,
            s.bytes
        )?;
    }
    Ok(())
}
