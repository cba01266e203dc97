//! Exact-scoring benchmark: times exact top-k search of a query batch on one backend, on a
//! feature matrix from a .npy file or on seeded Gaussian data; prints one JSON line. Built with
//! `cargo build --release --example bench_score`; used by `scripts/score-vs-faiss.py`.

use anyhow::{Context, Result};
use clap::Parser;
use ptsel::score::oracle::OwnedVectors;
use ptsel::score::{self, Device, Scorer};
use ptsel::{DType, Metric};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Time exact top-k search of one query batch on one backend (prints JSON).
#[derive(Parser)]
struct Args {
    /// Corpus features (.npy, [rows, dim]); seeded Gaussian rows when absent.
    #[arg(long, value_name = "X.npy")]
    data: Option<PathBuf>,
    /// Query features (.npy, [nq, dim]); seeded Gaussian queries when absent.
    #[arg(long, value_name = "Q.npy")]
    queries_file: Option<PathBuf>,
    /// Synthetic corpus rows.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Synthetic dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Synthetic queries per batch.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stored element type.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: DType,
    /// Metric.
    #[arg(long, value_enum, default_value = "ip")]
    metric: Metric,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Timed repetitions (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The CPU's products: auto, f32, bf16 or amx.
    #[arg(long, value_enum, default_value = "auto")]
    kernel: ptsel::score::simd::Kernel,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    rows: usize,
    dim: usize,
    queries: usize,
    k: usize,
    dtype: &'static str,
    metric: &'static str,
    best_seconds: f64,
    qps: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.kernel.choose()?;
    let (data, rows, dim) = match &args.data {
        Some(p) => {
            let m = ptsel::npy::read_matrix(p)?;
            (m.data, m.rows, m.dim)
        }
        None => (
            ptsel::synth::gaussian_matrix(args.rows, args.dim, args.seed),
            args.rows,
            args.dim,
        ),
    };
    let queries = match &args.queries_file {
        Some(p) => {
            let m = ptsel::npy::read_matrix(p)?;
            anyhow::ensure!(
                m.dim == dim,
                "{}: queries have {} dims, the corpus {dim}",
                p.display(),
                m.dim
            );
            m.data
        }
        None => ptsel::synth::gaussian_matrix(args.queries, dim, args.seed ^ 0x5eed),
    };
    let stored = OwnedVectors::new(data, dim, args.dtype, args.metric);
    let scorer = score::scorer_for_vectors(stored.view(), dim, args.metric, args.device)?;
    let mut best = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        scorer.top_k(&queries, args.k).context("scoring")?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let nq = queries.len() / dim;
    let report = Report {
        backend: scorer.describe(),
        rows,
        dim,
        queries: nq,
        k: args.k,
        dtype: args.dtype.name(),
        metric: args.metric.name(),
        best_seconds: best,
        qps: nq as f64 / best,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
