//! `ptsel rebuild-graph`: give a built index a new HNSW graph (another layout or other
//! parameters) without reading its features again.

use crate::progress::Bars;
use anyhow::Result;
use ptsel::hnsw::{Graph, GraphLayout, Params};
use std::path::{Path, PathBuf};

/// The index a command rewrites with a new derived section, and where the result goes:
/// shared by `rebuild-graph` and `partition`.
#[derive(clap::Args)]
pub struct Rewrite {
    /// Index file to read.
    pub index: PathBuf,
    /// Where to write the result (default: replace the index in place, atomically).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Rewrite {
    /// Run `rewrite(index, dest, force, progress)` under a progress bar; returns the file
    /// written and what `rewrite` returned.
    pub fn run<T>(
        &self,
        rewrite: impl FnOnce(&Path, &Path, bool, ptsel::Progress<'_>) -> ptsel::Result<T>,
    ) -> Result<(PathBuf, T)> {
        let dest = self.out.clone().unwrap_or_else(|| self.index.clone());
        let bars = Bars::new(self.quiet);
        let done = rewrite(&self.index, &dest, self.force, &|s, d, t| {
            bars.update(s, d, t)
        })?;
        bars.finish();
        Ok((dest, done))
    }
}

/// Arguments of `ptsel rebuild-graph`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub file: Rewrite,
    // The stored graph is re-encoded, not rebuilt, when --hnsw-m, --ef-construction and --seed
    // equal its own, which is what each of them defaults to.
    /// HNSW: links per node (default: the stored graph's, else `ptsel build`'s).
    #[arg(long, value_name = "M")]
    pub hnsw_m: Option<usize>,
    /// HNSW: beam width while inserting (default: the stored graph's, else `ptsel build`'s).
    #[arg(long, value_name = "N")]
    pub ef_construction: Option<usize>,
    /// Seed of the HNSW level draws and insertion order (default: the stored graph's, else `ptsel
    /// build`'s).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// HNSW storage: `blocks` (fastest search) or `compact` (smallest); see `ptsel build`.
    #[arg(long, value_enum, default_value_t = ptsel::hnsw::Params::DEFAULT.layout)]
    pub graph_layout: GraphLayout,
}

/// Run `ptsel rebuild-graph`.
pub fn run(args: Args) -> Result<()> {
    // An index that does not open (or has no graph) takes the build's defaults here; the
    // rebuild below then reports what is wrong with it.
    let stored = ptsel::Index::open(&args.file.index)
        .ok()
        .and_then(|index| Some(Graph::open(&index).ok()??.header().params()))
        .unwrap_or_default();
    let params = Params {
        m: args.hnsw_m.unwrap_or(stored.m),
        ef_construction: args.ef_construction.unwrap_or(stored.ef_construction),
        seed: args.seed.unwrap_or(stored.seed),
        layout: args.graph_layout,
    };
    let (out, report) = args.file.run(|src, dest, force, progress| {
        ptsel::rebuild_graph(src, dest, &params, force, progress)
    })?;
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
