//! `ptsel build`: features (.npy, or computed from an image folder) into a one-file index, or
//! (`--shard-rows`) into a corpus folder of shards built in parallel.

use crate::progress::Bars;
use anyhow::Result;
use ptsel::kmeans::KmeansParams;
use ptsel::{BuildOptions, DType, Labels, Metric};
use std::path::PathBuf;

/// Arguments of `ptsel build`.
#[derive(clap::Args)]
pub struct Args {
    /// Features: a float16/32/64 .npy of shape [rows, dim], C order.
    #[arg(long, value_name = "F.npy", required_unless_present = "images")]
    pub features: Option<PathBuf>,
    /// Labels: an integer .npy of shape [rows]; classes are 0..max+1.
    #[arg(long, value_name = "L.npy")]
    pub labels: Option<PathBuf>,
    /// Ids: a text file with one id (a path or a key) per row.
    #[arg(long, value_name = "IDS.txt")]
    pub ids: Option<PathBuf>,
    /// Class names: a text file with one name per class.
    #[arg(long, value_name = "NAMES.txt")]
    pub class_names: Option<PathBuf>,
    /// Element type of the stored vectors.
    #[arg(long, value_enum, default_value_t = BuildOptions::default().dtype)]
    pub dtype: DType,
    /// Search metric (cos stores unit-normalised vectors and keeps the raw norms).
    #[arg(long, value_enum, default_value_t = BuildOptions::default().metric)]
    pub metric: Metric,
    /// Output index file (a corpus folder with --shard-rows).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Write a sharded corpus: a folder of index files of N rows each (the last one shorter),
    /// built in parallel, and the corpus file listing them. Rerunning an interrupted build keeps
    /// the shards it completed.
    #[arg(
        long,
        value_name = "N",
        requires = "features",
        conflicts_with = "kmeans"
    )]
    pub shard_rows: Option<usize>,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Also cluster the vectors into K pseudo-classes (spherical k-means), for class-level
    /// selection on unlabelled corpora.
    #[arg(long, value_name = "K")]
    pub kmeans: Option<usize>,
    /// Lloyd iterations of k-means at most.
    #[arg(long, value_name = "N", default_value_t = ptsel::kmeans::DEFAULT_ITERS)]
    pub kmeans_iters: usize,
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Seed of the HNSW level draws and insertion order, and of k-means++ seeding (same input
    /// and seed, same index).
    #[arg(long, default_value_t = ptsel::hnsw::Params::DEFAULT.seed, value_name = "S")]
    pub seed: u64,
    /// Do not build the HNSW graph (search then needs --exact or --probes).
    #[arg(long)]
    pub no_hnsw: bool,
    /// Also build N partitions for partitioned search (`search --probes`; without N,
    /// 2 sqrt(rows)): faster than the graph on clustered corpora. N is at least 1.
    #[arg(long, value_name = "N", num_args = 0..=1)]
    pub partitions: Option<Option<usize>>,
    /// Codes the partitions scan: sq8 (8 bits per dimension; faster when a query scans few
    /// partitions) or pq4 (4 bits per pair of dimensions; faster when it scans many).
    #[arg(long, value_enum, default_value_t = ptsel::partitions::Params::DEFAULT.codes, value_name = "KIND")]
    pub partition_codes: ptsel::partitions::CodeKind,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    // Last: its help heading applies to the arguments after it.
    #[command(flatten)]
    pub images: crate::embed::ImageSource,
}

/// The HNSW options of `build` and `rebuild-graph`.
#[derive(clap::Args)]
pub struct GraphArgs {
    /// HNSW: links per node (M; level 0 keeps 2 M).
    #[arg(long, default_value_t = ptsel::hnsw::Params::DEFAULT.m, value_name = "M")]
    pub hnsw_m: usize,
    /// HNSW: beam width while inserting (efConstruction).
    #[arg(long, default_value_t = ptsel::hnsw::Params::DEFAULT.ef_construction, value_name = "N")]
    pub ef_construction: usize,
    /// HNSW storage: `blocks` (each node's neighbour list beside an 8-bit code of its vector,
    /// breadth-first order: fastest search) or `compact` (neighbour ids only: the smallest).
    #[arg(long, value_enum, default_value_t = ptsel::hnsw::Params::DEFAULT.layout)]
    pub graph_layout: ptsel::hnsw::GraphLayout,
}

impl GraphArgs {
    /// The construction parameters with `seed`.
    pub fn params(&self, seed: u64) -> ptsel::hnsw::Params {
        ptsel::hnsw::Params {
            m: self.hnsw_m,
            ef_construction: self.ef_construction,
            seed,
            layout: self.graph_layout,
        }
    }
}

impl Args {
    /// Engine options for these arguments.
    pub fn options(&self) -> Result<BuildOptions> {
        Ok(BuildOptions {
            dtype: self.dtype,
            metric: self.metric,
            force: self.force,
            labels: self.labels.as_deref().map(Labels::from_npy).transpose()?,
            ids: self.ids.clone().map(Into::into),
            class_names: self.class_names.clone().map(Into::into),
            hnsw: (!self.no_hnsw).then_some(self.graph.params(self.seed)),
            kmeans: self.kmeans.map(|k| KmeansParams {
                k,
                iters: self.kmeans_iters,
                seed: self.seed,
            }),
            partitions: self.partitions.map(|partitions| ptsel::partitions::Params {
                partitions,
                seed: self.seed,
                codes: self.partition_codes,
            }),
            ..BuildOptions::default()
        })
    }
}

/// Run `ptsel build`.
pub fn run(args: Args) -> Result<()> {
    let opts = args.options()?;
    let bars = Bars::new(args.quiet);
    if let (Some(n), Some(features)) = (args.shard_rows, &args.features) {
        let report = ptsel::corpus::build(features, n, &args.out, opts, &|s, d, t| {
            bars.update(s, d, t)
        })?;
        bars.finish();
        eprintln!(
            "built {}: {} shards ({} kept from an earlier run), {} rows x {} dims, {} classes in {:.2} s ({:.0} rows/s)",
            args.out.display(),
            report.shards,
            report.kept,
            report.rows,
            report.dim,
            report.classes,
            report.seconds,
            report.rows as f64 / report.seconds.max(1e-9)
        );
        return Ok(());
    }
    let report = match &args.features {
        Some(features) => {
            let mut source = ptsel::npy::MatrixReader::open(features)?;
            ptsel::build(&mut source, &args.out, opts, &|s, d, t| {
                bars.update(s, d, t)
            })?
        }
        None => crate::embed::build_from_images(&args.images, &args.out, opts, &bars)?,
    };
    bars.finish();
    eprintln!(
        "built {}: {} rows x {} dims, {} classes in {:.2} s ({:.0} rows/s)",
        args.out.display(),
        report.rows,
        report.dim,
        report.classes,
        report.seconds,
        report.rows as f64 / report.seconds.max(1e-9)
    );
    Ok(())
}
