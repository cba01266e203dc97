//! `ptsel search`: k nearest rows of each query, through the HNSW graph, the partitions, or
//! exactly.

use anyhow::Result;
use ptsel::score::Device;
use ptsel::{Engine, Error, SearchOpts};
use std::path::{Path, PathBuf};

/// The index, the queries and k: shared by `search` and `bench`.
#[derive(clap::Args)]
pub struct Input {
    /// Index file or corpus folder.
    #[arg(long, value_name = "PATH")]
    pub index: PathBuf,
    /// Queries: a float .npy of shape [nq, dim] (raw features; cos normalises them).
    #[arg(long, value_name = "Q.npy")]
    pub queries: PathBuf,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = ptsel::engine::DEFAULT_K)]
    pub k: usize,
}

/// Arguments of `ptsel search`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: Input,
    /// HNSW beam width, or with --probes the rows re-ranked exactly (raised to k if lower):
    /// higher is slower and more exact.
    #[arg(long, default_value_t = ptsel::engine::DEFAULT_EF)]
    pub ef: usize,
    /// Search the partitions (built with --partitions) instead of the graph, scanning this many
    /// per query: higher is slower and more exact.
    #[arg(long, value_name = "P", conflicts_with = "exact")]
    pub probes: Option<usize>,
    /// Exact search (brute force on --device) instead of the graph.
    #[arg(long)]
    pub exact: bool,
    /// Search threads (default: all cores).
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
    /// Backend of the exact search.
    #[arg(long, value_enum, default_value_t = SearchOpts::default().device)]
    pub device: Device,
    /// Output: int64 .npy [nq, k] of (global) row numbers, best first.
    #[arg(long, value_name = "NN.npy")]
    pub out: PathBuf,
    /// Output: float32 .npy [nq, k] of scores (cos similarity, inner product, or squared L2).
    #[arg(long, value_name = "S.npy")]
    pub scores: Option<PathBuf>,
}

/// Read a query batch and check it against the index or corpus.
pub fn load_queries(engine: &Engine, path: &Path) -> Result<ptsel::npy::Matrix> {
    let q = ptsel::npy::read_matrix(path)?;
    if q.dim != engine.dim() {
        return Err(Error::input(
            path,
            format!(
                "queries have dimension {}, the index {} has {}",
                q.dim,
                engine.path().display(),
                engine.dim()
            ),
        )
        .into());
    }
    if q.rows == 0 {
        return Err(Error::input(path, "no queries").into());
    }
    Ok(q)
}

/// Run `ptsel search`.
pub fn run(args: Args) -> Result<()> {
    let Input { index, queries, k } = &args.input;
    let engine = Engine::open(index)?;
    let q = load_queries(&engine, queries)?;
    if !args.exact && engine.approx(args.probes)?.is_none() {
        if args.probes.is_some() {
            return Err(ptsel::engine::missing(engine.path(), args.probes).into());
        }
        return Err(Error::invalid(format!(
            "{} has no HNSW graph (built with --no-hnsw): use --exact or --probes, or rebuild without --no-hnsw",
            index.display()
        ))
        .into());
    }
    let opts = SearchOpts {
        ef: Some(args.ef),
        probes: args.probes,
        exact: args.exact,
        threads: args.threads,
        device: args.device,
    };
    let nn = engine.search(&q.data, *k, &opts)?;
    let ids: Vec<i64> = nn.ids.iter().map(|&i| i64::from(i)).collect();
    ptsel::npy::write_matrix(&args.out, &ids, q.rows, *k)?;
    if let Some(s) = &args.scores {
        ptsel::npy::write_matrix(s, &nn.scores, q.rows, *k)?;
    }
    Ok(())
}
