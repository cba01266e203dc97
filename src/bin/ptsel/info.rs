//! `ptsel info`: what an index or corpus holds.

use anyhow::Result;
use ptsel::Engine;
use std::path::PathBuf;

/// Arguments of `ptsel info`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file or corpus folder.
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
    let what = if info.shards.is_empty() {
        "index  "
    } else {
        "corpus "
    };
    outln!("{what}   {}", info.path)?;
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
            "hnsw      {} layout ({:.1} MiB), M {}, ef_construction {}, seed {}, {} levels; repaired {} unreachable, {} self-recall failures",
            h.layout,
            h.bytes as f64 / 1048576.0,
            h.m,
            h.ef_construction,
            h.seed,
            h.max_level + 1,
            h.unreachable_repaired,
            h.self_recall_repaired
        )?,
        None if info.shards.is_empty() => outln!("hnsw      none (search needs --exact)")?,
        None => {}
    }
    if let Some(p) = &info.partitions {
        outln!(
            "partitions {} ({} codes, {:.1} MiB), seed {}",
            p.partitions,
            p.codes,
            p.bytes as f64 / 1048576.0,
            p.seed
        )?;
    }
    for s in &info.shards {
        let graph = match &s.hnsw {
            Some(h) => format!("hnsw M {}", h.m),
            None => "no hnsw".into(),
        };
        outln!(
            "shard     {}: rows {}..{}, {:.1} MiB, {graph}, built in {:.2} s",
            s.path,
            s.first_row,
            s.first_row + s.rows,
            s.file_bytes as f64 / 1048576.0,
            s.build_seconds
        )?;
    }
    for (k, v) in &info.params {
        outln!("param     {k} = {v}")?;
    }
    if !info.sections.is_empty() {
        outln!("sections:")?;
    }
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
