//! `ptsel partition`: give a built index partitions for partitioned search without reading its
//! features again.

use anyhow::Result;
use ptsel::partitions::Params;

/// Arguments of `ptsel partition`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub file: crate::regraph::Rewrite,
    /// Number of partitions, at least 1 [default: 2 sqrt(rows)].
    #[arg(long, value_name = "N")]
    pub partitions: Option<usize>,
    /// Seed of the k-means sample and seeding.
    #[arg(long, default_value_t = Params::DEFAULT.seed, value_name = "S")]
    pub seed: u64,
    /// Codes scanned: sq8 (8 bits per dimension; faster when a query scans few partitions) or
    /// pq4 (4 bits per pair of dimensions; faster when it scans many).
    #[arg(long, value_enum, default_value_t = Params::DEFAULT.codes, value_name = "KIND")]
    pub codes: ptsel::partitions::CodeKind,
}

/// Run `ptsel partition`.
pub fn run(args: Args) -> Result<()> {
    let params = Params {
        partitions: args.partitions,
        seed: args.seed,
        codes: args.codes,
    };
    let t = std::time::Instant::now();
    let (out, made) = args.file.run(|src, dest, force, progress| {
        ptsel::add_partitions(src, dest, &params, force, progress)
    })?;
    eprintln!(
        "{}: {made} partitions in {:.2} s",
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
