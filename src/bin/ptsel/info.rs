//! `ptsel info`: what an index holds.

use anyhow::Result;
use ptsel::Index;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `ptsel info`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file.
    pub path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Section {
    kind: String,
    offset: u64,
    bytes: u64,
}

/// The HNSW graph's parameters and post-build check counts.
#[derive(Serialize)]
struct Hnsw {
    m: u32,
    ef_construction: u32,
    seed: u64,
    max_level: u32,
    entry: u32,
    unreachable_repaired: u32,
    self_recall_repaired: u32,
}

#[derive(Serialize)]
struct Info {
    path: String,
    format_version: u32,
    rows: u64,
    dim: u32,
    dtype: &'static str,
    metric: &'static str,
    classes: u32,
    has_class_names: bool,
    has_ids: bool,
    file_bytes: u64,
    open_ms: f64,
    created_unix: u64,
    build_seconds: f64,
    writer: String,
    params: BTreeMap<String, String>,
    hnsw: Option<Hnsw>,
    sections: Vec<Section>,
}

/// Run `ptsel info`.
pub fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let index = Index::open(&args.path)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let m = index.meta();
    let hnsw = ptsel::hnsw::Graph::open(&index)?.map(|g| {
        let h = g.header();
        Hnsw {
            m: h.m,
            ef_construction: h.ef_construction,
            seed: h.seed,
            max_level: h.max_level,
            entry: h.entry,
            unreachable_repaired: h.unreachable_repaired,
            self_recall_repaired: h.self_recall_repaired,
        }
    });
    let info = Info {
        path: args.path.display().to_string(),
        format_version: index.header().version,
        rows: m.rows,
        dim: m.dim,
        dtype: m.dtype.name(),
        metric: m.metric.name(),
        classes: m.classes,
        has_class_names: !m.class_names.is_empty(),
        has_ids: m.has_ids,
        file_bytes: index.header().file_len,
        open_ms,
        created_unix: m.created_unix,
        build_seconds: m.build_seconds,
        writer: m.writer.clone(),
        params: m.params.clone(),
        hnsw,
        sections: index
            .sections()
            .iter()
            .map(|e| Section {
                kind: e.kind.name(),
                offset: e.offset,
                bytes: e.len,
            })
            .collect(),
    };
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
        info.open_ms,
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
