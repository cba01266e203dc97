//! `ptsel bench`: recall@k against exact search, queries per second and latency for a list of
//! beam widths (and of partitions scanned, for a partitioned search), with the exact ground
//! truth cached beside the index.

use crate::search::{load_queries, Input};
use anyhow::Result;
use ptsel::score::Device;
use ptsel::Engine;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `ptsel bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: Input,
    /// Beam widths to measure, comma-separated (with --probes: rows re-ranked exactly).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub ef: Vec<usize>,
    /// Measure the partitioned search instead of the graph: partitions scanned per query,
    /// comma-separated (each with every --ef).
    #[arg(long, value_delimiter = ',', value_name = "P,...")]
    pub probes: Vec<usize>,
    /// Search threads (1 measures latency without contention).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Backend of the exact ground truth.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// Write the results as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Draw recall against QPS (log scale) as an SVG.
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
}

/// One setting's measurements.
#[derive(Serialize, Clone, Copy)]
struct Row {
    ef: usize,
    /// Partitions scanned (a partitioned search), else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    probes: Option<usize>,
    recall: f64,
    qps: f64,
    mean_ms: f64,
    p99_ms: f64,
}

#[derive(Serialize)]
struct Report {
    rows: Vec<Row>,
    open_ms: f64,
    build_s: f64,
}

fn measure(
    approx: &ptsel::engine::Approx<'_>,
    queries: &[f32],
    dim: usize,
    truth: &[u32],
    k: usize,
    (ef, probes): (usize, Option<usize>),
) -> Result<Row> {
    use rayon::prelude::*;
    let start = Instant::now();
    let per: Vec<(f64, usize)> = queries
        .par_chunks_exact(dim)
        .zip(truth.par_chunks_exact(k))
        .map(|(q, t)| {
            let t0 = Instant::now();
            let (ids, _) = approx.search(q, k, ef)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let want: HashSet<u32> = t.iter().copied().collect();
            Ok((ms, ids.iter().filter(|i| want.contains(i)).count()))
        })
        .collect::<ptsel::Result<_>>()?;
    let wall = start.elapsed().as_secs_f64();
    let nq = per.len();
    let mut lat: Vec<f64> = per.iter().map(|p| p.0).collect();
    lat.sort_by(f64::total_cmp);
    let p99 = lat[((nq as f64 * 0.99).ceil() as usize).clamp(1, nq) - 1];
    Ok(Row {
        ef,
        probes,
        recall: per.iter().map(|p| p.1).sum::<usize>() as f64 / (nq * k) as f64,
        qps: nq as f64 / wall,
        mean_ms: lat.iter().sum::<f64>() / nq as f64,
        p99_ms: p99,
    })
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
            "exact ground truth: {} queries in {s:.2} s, cached in {}",
            q.rows,
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
    let rows = pool.install(|| -> Result<Vec<Row>> {
        let run = |a: &ptsel::engine::Approx<'_>, setting| {
            measure(a, &q.data, q.dim, &truth, args.input.k, setting)
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
        plot(
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

/// Tick marks 1, 2, 5 x 10^n inside `lo..hi` (plotters' own log ticks are too sparse on a
/// range of one decade).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.max(1e-9).log10().floor());
    while decade <= hi {
        out.extend(
            [1.0, 2.0, 5.0]
                .iter()
                .map(|m| m * decade)
                .filter(|t| (lo..=hi).contains(t)),
        );
        decade *= 10.0;
    }
    out
}

/// Recall@k against QPS (log scale), one labelled point per setting, written atomically.
fn plot(path: &Path, rows: &[Row], title: &str) -> Result<()> {
    use plotters::prelude::*;
    let (lo, hi) = rows.iter().fold((f64::MAX, 0f64), |(lo, hi), r| {
        (lo.min(r.qps), hi.max(r.qps))
    });
    let (rlo, rhi) = rows.iter().fold((1f64, 0f64), |(lo, hi), r| {
        (lo.min(r.recall), hi.max(r.recall))
    });
    // Head room above the best point keeps its label clear of the caption.
    let span = (rhi - rlo).max(0.01);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        let draw = || -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(
                    (lo * 0.8..hi * 1.25)
                        .log_scale()
                        .with_key_points(ticks(lo * 0.8, hi * 1.25)),
                    (rlo - 0.1 * span).max(0.0)..rhi + 0.12 * span,
                )?;
            chart
                .configure_mesh()
                .x_desc("queries per second (log scale)")
                .y_desc("recall@k")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.3}"))
                .light_line_style(WHITE)
                .draw()?;
            let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.qps, r.recall)).collect();
            chart.draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))?;
            chart.draw_series(rows.iter().map(|r| {
                EmptyElement::at((r.qps, r.recall))
                    + Circle::new((0, 0), 4, BLUE.filled())
                    + Text::new(label(r), (6, -14), ("sans-serif", 13))
            }))?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    ptsel::output::atomic_write(path, |w| std::io::Write::write_all(w, svg.as_bytes()))?;
    Ok(())
}

/// A point's label in the plot: its ef, and its partitions scanned.
fn label(r: &Row) -> String {
    match r.probes {
        Some(p) => format!("ef {} p {p}", r.ef),
        None => format!("ef {}", r.ef),
    }
}
