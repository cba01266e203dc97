//! Plots of benchmark results (SVG through `plotters`; with the `cli` feature).

use crate::engine::Measured;
use crate::error::{Error, Result};
use std::path::Path;

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
pub fn recall_qps(path: &Path, rows: &[Measured], title: &str) -> Result<()> {
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
        draw().map_err(|e| Error::invalid(format!("drawing {}: {e}", path.display())))?;
    }
    crate::output::atomic_write(path, |w| std::io::Write::write_all(w, svg.as_bytes()))?;
    Ok(())
}

/// A point's label in the plot: its ef, and its partitions scanned.
fn label(r: &Measured) -> String {
    match r.probes {
        Some(p) => format!("ef {} p {p}", r.ef),
        None => format!("ef {}", r.ef),
    }
}
