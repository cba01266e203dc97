//! `ptsel bench-score` (hidden): times exact top-k search of a query batch on one backend, on
//! a feature matrix from a .npy file or on seeded Gaussian data; prints one JSON line. Used by
//! `scripts/score-vs-faiss.py` and `scripts/gpu-check.sh`.

use anyhow::{Context, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;
use ptsel::score::{self, Device, Scorer};
use ptsel::{DType, Metric, Vectors};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `ptsel bench-score`.
#[derive(clap::Args)]
pub struct Args {
    /// Corpus features (.npy, [rows, dim]); seeded Gaussian rows when absent.
    #[arg(long, value_name = "X.npy")]
    pub data: Option<PathBuf>,
    /// Query features (.npy, [nq, dim]); seeded Gaussian queries when absent.
    #[arg(long, value_name = "Q.npy")]
    pub queries_file: Option<PathBuf>,
    /// Synthetic corpus rows.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Synthetic dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Synthetic queries per batch.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stored element type.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: DType,
    /// Metric.
    #[arg(long, value_enum, default_value = "ip")]
    pub metric: Metric,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// Timed repetitions (the best is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

/// Owned corpus in its storage type.
pub enum Stored {
    /// Half precision.
    F16(Vec<f16>),
    /// Single precision.
    F32(Vec<f32>),
}

impl Stored {
    /// `data` (`[rows, dim]`) in `dtype`, unit-normalised first for cos.
    pub fn new(mut data: Vec<f32>, dim: usize, dtype: DType, metric: Metric) -> Self {
        if metric == Metric::Cos {
            for r in data.chunks_exact_mut(dim) {
                let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 {
                    r.iter_mut().for_each(|x| *x /= n);
                }
            }
        }
        match dtype {
            DType::F16 => {
                let mut halves = vec![f16::ZERO; data.len()];
                halves.convert_from_f32_slice(&data);
                Stored::F16(halves)
            }
            DType::F32 => Stored::F32(data),
        }
    }

    /// Borrowed view.
    pub fn view(&self) -> Vectors<'_> {
        match self {
            Stored::F16(v) => Vectors::F16(v),
            Stored::F32(v) => Vectors::F32(v),
        }
    }
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

/// Run `ptsel bench-score`.
pub fn run(args: Args) -> Result<()> {
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
    let stored = Stored::new(data, dim, args.dtype, args.metric);
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
    outln!("{}", serde_json::to_string(&report)?)?;
    Ok(())
}
