//! The `ptsel` command line. Each subcommand lives in its own module with its clap arguments and
//! a `run` function; `main` is one match on the command.

/// `println!` that returns the write error instead of panicking, so that a closed pipe
/// (`ptsel ... | head -1`) ends the command quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod bench;
mod build;
mod demo;
mod embed;
mod info;
mod kernels;
mod partition;
mod progress;
mod regraph;
mod search;
mod select;
mod verify;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

/// Select the pre-training data worth re-using when fine-tuning on a new target task.
#[derive(Parser)]
#[command(name = "ptsel", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The unit exact scoring multiplies on: auto (AMX tiles, else AVX512-BF16, else f32),
    /// f32, bf16 or amx. Every kernel gives the same exact top-k (bf16 products only propose
    /// rows, re-scored in f64); forcing one is for tests and benchmarks.
    #[arg(long, global = true, env = "PTSEL_KERNEL", value_name = "KERNEL")]
    kernel: Option<ptsel::score::simd::Kernel>,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from a feature matrix (.npy) with optional labels, ids and class names,
    /// or from an image folder and a TorchScript backbone.
    Build(build::Args),
    /// Compute features of an image folder with a TorchScript backbone into a .npy file.
    Embed(embed::Args),
    /// Show an index's shape, dtype, classes, sections and creation parameters.
    Info(info::Args),
    /// Recompute every checksum of an index; exit 0 only if all match.
    Verify(verify::Args),
    /// Give a built index a new HNSW graph (layout or parameters) without reading its features
    /// again.
    RebuildGraph(regraph::Args),
    /// Give a built index partitions (for `search --probes`) without reading its features again.
    Partition(partition::Args),
    /// Choose the pre-training samples to re-use for a target task (UOT, kNN, baselines) and
    /// write a manifest and a summary.
    Select(select::Args),
    /// Run the main job on built-in synthetic data: build an index and select for a target.
    Demo(demo::Args),
    /// The k nearest rows of each query, through the HNSW graph, the partitions, or exactly.
    Search(search::Args),
    /// Recall@k, QPS and latency of the HNSW (or partitioned) search per setting, against exact
    /// ground truth.
    Bench(bench::Args),
    /// List the CUDA kernels; with --check, compile each with NVRTC and report PTX size or log.
    Kernels(kernels::Args),
}

/// A subcommand's arguments parsed from `args` exactly as `ptsel SUBCOMMAND ARGS...` would
/// parse them, defaults included: how the demo runs the commands a user would type.
fn parse_args<A: clap::Args + clap::FromArgMatches>(
    args: impl IntoIterator<Item = OsString>,
) -> anyhow::Result<A> {
    let command = A::augment_args(clap::Command::new("ptsel"));
    let matches = command.try_get_matches_from(std::iter::once("ptsel".into()).chain(args))?;
    Ok(A::from_arg_matches(&matches)?)
}

fn main() -> ExitCode {
    let result = run(Cli::parse());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): the usual ending, not a failure.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Runs the command line's subcommand with its kernel choice.
fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(kernel) = cli.kernel {
        kernel.choose()?;
    }
    match cli.command {
        Command::Build(a) => build::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Info(a) => info::run(a),
        Command::Verify(a) => verify::run(a),
        Command::RebuildGraph(a) => regraph::run(a),
        Command::Partition(a) => partition::run(a),
        Command::Select(a) => select::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Search(a) => search::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Kernels(a) => kernels::run(a),
    }
}

/// Whether `e` is, or was caused by, a write to a closed pipe (bare, or inside
/// `ptsel::Error::Io`, which shows its I/O error in its message instead of chaining it).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = match c.downcast_ref::<ptsel::Error>() {
            Some(ptsel::Error::Io { error, .. }) => Some(error),
            _ => c.downcast_ref::<std::io::Error>(),
        };
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// 2 for bad input or parameters, 3 for a corrupt index, 4 for an unavailable backend, 1 otherwise.
fn exit_code(e: &anyhow::Error) -> u8 {
    use ptsel::ErrorKind;
    match e.downcast_ref::<ptsel::Error>().map(ptsel::Error::kind) {
        Some(ErrorKind::Input | ErrorKind::Invalid) => 2,
        Some(ErrorKind::Corrupt) => 3,
        Some(ErrorKind::Unavailable) => 4,
        _ => 1,
    }
}
