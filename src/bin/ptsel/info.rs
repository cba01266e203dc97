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
    sections: Vec<Section>,
}

/// Run `ptsel info`.
pub fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let index = Index::open(&args.path)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let m = index.meta();
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
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("index     {}", info.path);
    println!(
        "format    v{}, written by {}",
        info.format_version, info.writer
    );
    println!(
        "shape     {} rows x {} dims, {} vectors, metric {}",
        info.rows, info.dim, info.dtype, info.metric
    );
    let names = if info.has_class_names { ", named" } else { "" };
    println!("classes   {}{names}", info.classes);
    println!(
        "ids       {}",
        if info.has_ids {
            "stored"
        } else {
            "row numbers"
        }
    );
    println!(
        "size      {} ({:.1} MiB), opened in {:.3} ms, built in {:.2} s",
        info.file_bytes,
        info.file_bytes as f64 / 1048576.0,
        info.open_ms,
        info.build_seconds
    );
    for (k, v) in &info.params {
        println!("param     {k} = {v}");
    }
    println!("sections:");
    for s in &info.sections {
        println!(
            "  {:<18} offset {:>14}  {:>14} bytes",
            s.kind, s.offset, s.bytes
        );
    }
    Ok(())
}
