//! `ptsel bench`: recall@k against exact search, queries per second and latency for a list of
//! beam widths (and of partitions scanned, for a partitioned search), with the exact ground
//! truth cached beside the index.

use crate::search::{load_queries, Input};
use anyhow::Result;
use ptsel::engine::Measured;
use ptsel::score::Device;
use ptsel::Engine;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `ptsel bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: Input,
    /// Beam widths to measure, comma-separated (with --probes: rows re-ranked exactly).
    #[arg(long, value_delimiter = ',', default_values_t = ptsel::engine::DEFAULT_EF_SWEEP)]
    pub ef: Vec<usize>,
    /// Measure the partitioned search instead of the graph: partitions scanned per query,
    /// comma-separated (each with every --ef).
    #[arg(long, value_delimiter = ',', value_name = "P,...")]
    pub probes: Vec<usize>,
    /// Search threads (1 measures latency without contention).
    #[arg(long, default_value_t = ptsel::engine::DEFAULT_THREADS)]
    pub threads: usize,
    /// Backend of the exact ground truth.
    #[arg(long, value_enum, default_value_t = ptsel::SearchOpts::default().device)]
    pub device: Device,
    /// Write the results as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Draw recall against QPS (log scale) as an SVG.
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    rows: Vec<Measured>,
    open_ms: f64,
    build_s: f64,
}

/// Run `ptsel bench`.
pub fn run(args: Args) -> Result<()> {
    if args.ef.is_empty() || args.ef.contains(&0) {
        return Err(ptsel::Error::invalid("--ef needs one or more beam widths >= 1").into());
    }
    if args.probes.contains(&0) {
        return Err(ptsel::Error::invalid("--probes needs partition counts >= 1").into());
    }
    if args.threads == 0 {
        return Err(ptsel::Error::invalid("--threads must be at least 1").into());
    }
    let t = Instant::now();
    let engine = Engine::open(&args.input.index)?;
    // One probe count per approximate index: none for the graph.
    let probes: Vec<Option<usize>> = match args.probes.as_slice() {
        [] => vec![None],
        p => p.iter().copied().map(Some).collect(),
    };
    let mut approx = Vec::with_capacity(probes.len());
    for &p in &probes {
        let a = engine.approx(p)?;
        approx.push(a.ok_or_else(|| ptsel::engine::missing(engine.path(), p))?);
    }
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let q = load_queries(&engine, &args.input.queries)?;
    let truth = engine.ground_truth(&q.data, args.input.k, args.device)?;
    match truth.computed_s {
        Some(s) => eprintln!(
            "exact ground truth: {} queries in {s:.2} s ({} products), cached in {}",
            q.rows,
            ptsel::score::simd::kernel_name(),
            truth.path.display()
        ),
        None => eprintln!("exact ground truth from {}", truth.path.display()),
    }
    if let Some(e) = &truth.cache_error {
        eprintln!("warning: ground truth not cached: {e}");
    }
    let truth = truth.ids;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let rows = pool.install(|| -> Result<Vec<Measured>> {
        let run = |a: &ptsel::engine::Approx<'_>, setting| {
            a.measure(&q.data, q.dim, &truth, args.input.k, setting)
        };
        // Warm-up: page the index in so the first setting is not charged for it.
        run(&approx[0], (args.ef[0], probes[0]))?;
        let mut rows = Vec::new();
        for (a, &p) in approx.iter().zip(&probes) {
            for &ef in &args.ef {
                rows.push(run(a, (ef, p))?);
            }
        }
        Ok(rows)
    })?;
    let report = Report {
        rows,
        open_ms,
        build_s: engine.info()?.build_seconds,
    };
    outln!(
        "{}: {} rows x {} dims, {} queries, k {}, {} thread(s), opened in {:.3} ms, built in {:.1} s",
        args.input.index.display(),
        engine.rows(),
        engine.dim(),
        q.rows,
        args.input.k,
        args.threads,
        report.open_ms,
        report.build_s
    )?;
    outln!(
        "{:>6} {:>6} {:>9} {:>11} {:>9} {:>9}",
        "ef",
        "probes",
        "recall",
        "QPS",
        "mean ms",
        "p99 ms"
    )?;
    for r in &report.rows {
        outln!(
            "{:>6} {:>6} {:>9.4} {:>11.0} {:>9.4} {:>9.4}",
            r.ef,
            r.probes.map_or("-".into(), |p| p.to_string()),
            r.recall,
            r.qps,
            r.mean_ms,
            r.p99_ms
        )?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        ptsel::output::atomic_write(path, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    }
    if let Some(path) = &args.plot {
        ptsel::plot::recall_qps(
            path,
            &report.rows,
            &format!(
                "{} (k = {})",
                args.input
                    .index
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy(),
                args.input.k
            ),
        )?;
    }
    Ok(())
}
