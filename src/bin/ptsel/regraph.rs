//! `ptsel rebuild-graph`: give a built index a new HNSW graph (another layout or other
//! parameters) without reading its features again.

use crate::build::GraphArgs;
use crate::progress::Bars;
use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `ptsel rebuild-graph`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file to read.
    pub index: PathBuf,
    /// Where to write the result (default: replace the index in place, atomically).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out.
    #[arg(long)]
    pub force: bool,
    // The stored graph is re-encoded, not rebuilt, when --hnsw-m, --ef-construction and --seed
    // equal its own.
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Seed of the HNSW level draws and insertion order.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run `ptsel rebuild-graph`.
pub fn run(args: Args) -> Result<()> {
    let params = args.graph.params(args.seed);
    let out = args.out.clone().unwrap_or_else(|| args.index.clone());
    let bars = Bars::new(args.quiet);
    let report = ptsel::rebuild_graph(&args.index, &out, &params, args.force, &|s, d, t| {
        bars.update(s, d, t)
    })?;
    bars.finish();
    eprintln!(
        "{}: {} graph ({}) over {} rows in {:.2} s",
        out.display(),
        params.layout.name(),
        if report.reused {
            "the stored graph, re-encoded"
        } else {
            "constructed"
        },
        report.rows,
        report.seconds
    );
    Ok(())
}
