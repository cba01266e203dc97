//! `ptsel search`: k nearest rows of each query, through the HNSW graph or exactly.

use anyhow::Result;
use ptsel::hnsw::Graph;
use ptsel::score::{scorer_for, Device, Neighbors};
use ptsel::{Error, Index};
use std::path::{Path, PathBuf};

/// The index, the queries and k: shared by `search` and `bench`.
#[derive(clap::Args)]
pub struct Input {
    /// Index file.
    #[arg(long, value_name = "PATH")]
    pub index: PathBuf,
    /// Queries: a float .npy of shape [nq, dim] (raw features; cos normalises them).
    #[arg(long, value_name = "Q.npy")]
    pub queries: PathBuf,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
}

/// Arguments of `ptsel search`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: Input,
    /// HNSW beam width (raised to k if lower): higher is slower and more exact.
    #[arg(long, default_value_t = 64)]
    pub ef: usize,
    /// Exact search (brute force on --device) instead of the graph.
    #[arg(long)]
    pub exact: bool,
    /// Search threads (default: all cores).
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
    /// Backend of the exact search.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// Output: int64 .npy [nq, k] of row numbers, best first.
    #[arg(long, value_name = "NN.npy")]
    pub out: PathBuf,
    /// Output: float32 .npy [nq, k] of scores (cos similarity, inner product, or squared L2).
    #[arg(long, value_name = "S.npy")]
    pub scores: Option<PathBuf>,
}

/// Read a query batch and check it against the index and `k`.
pub fn load_queries(index: &Index, path: &Path, k: usize) -> Result<ptsel::npy::Matrix> {
    let q = ptsel::npy::read_matrix(path)?;
    if q.dim != index.dim() {
        return Err(Error::input(
            path,
            format!(
                "queries have dimension {}, the index {} has {}",
                q.dim,
                index.path().display(),
                index.dim()
            ),
        )
        .into());
    }
    if q.rows == 0 {
        return Err(Error::input(path, "no queries").into());
    }
    if k == 0 || k > index.rows() {
        return Err(Error::invalid(format!(
            "-k {k} must be between 1 and the number of rows ({})",
            index.rows()
        ))
        .into());
    }
    Ok(q)
}

/// The graph of `index`, or an error that says what to do without one.
pub fn require_graph(index: &Index) -> Result<Graph<'_>> {
    Graph::open(index)?.ok_or_else(|| {
        Error::invalid(format!("{} has no HNSW graph (built with --no-hnsw): use --exact, or rebuild without --no-hnsw", index.path().display())).into()
    })
}

/// A rayon pool of `threads` threads (all cores when `None`).
pub fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    if threads == Some(0) {
        return Err(Error::invalid("--threads must be at least 1").into());
    }
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()?)
}

/// Exact neighbours of `queries` on `device`.
pub fn exact(index: &Index, queries: &[f32], k: usize, device: Device) -> Result<Neighbors> {
    Ok(scorer_for(index, device)?.top_k(queries, k)?)
}

/// Run `ptsel search`.
pub fn run(args: Args) -> Result<()> {
    let Input { index, queries, k } = &args.input;
    let index = Index::open(index)?;
    let q = load_queries(&index, queries, *k)?;
    let pool = pool(args.threads)?;
    let nn = pool.install(|| -> Result<Neighbors> {
        if args.exact {
            exact(&index, &q.data, *k, args.device)
        } else {
            Ok(require_graph(&index)?.search_batch(&q.data, *k, args.ef)?)
        }
    })?;
    let ids: Vec<i64> = nn.ids.iter().map(|&i| i64::from(i)).collect();
    ptsel::npy::write_matrix(&args.out, &ids, q.rows, *k)?;
    if let Some(s) = &args.scores {
        ptsel::npy::write_matrix(s, &nn.scores, q.rows, *k)?;
    }
    Ok(())
}
