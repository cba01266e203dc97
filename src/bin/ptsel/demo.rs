//! `ptsel demo`: the main job on built-in synthetic data, no downloads.

use anyhow::{Context, Result};
use ptsel::synth::{self, Spec};
use std::path::PathBuf;

/// Arguments of `ptsel demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory for the demo's files.
    #[arg(long, default_value = "index-data")]
    pub dir: PathBuf,
    /// Corpus rows.
    #[arg(long, default_value_t = 20_000)]
    pub rows: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Source classes.
    #[arg(long, default_value_t = 100)]
    pub classes: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run `ptsel demo`.
pub fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let corpus = synth::clustered(Spec {
        rows: args.rows,
        dim: args.dim,
        classes: args.classes,
        spread: 1.0,
        seed: args.seed,
    });
    let features = args.dir.join("demo-features.npy");
    let labels = args.dir.join("demo-labels.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, corpus.rows, corpus.dim)?;
    ptsel::npy::write_vector(
        &labels,
        &corpus
            .labels
            .iter()
            .map(|&l| i64::from(l))
            .collect::<Vec<_>>(),
    )?;
    let out = args.dir.join("demo.ptsel");
    println!(
        "demo: {} synthetic rows x {} dims in {} classes -> {}",
        corpus.rows,
        corpus.dim,
        args.classes,
        out.display()
    );
    crate::build::run(crate::build::Args {
        features,
        labels: Some(labels),
        ids: None,
        class_names: None,
        dtype: ptsel::DType::F16,
        metric: ptsel::Metric::Cos,
        out: out.clone(),
        force: true,
        quiet: args.quiet,
    })?;
    crate::info::run(crate::info::Args {
        path: out,
        json: false,
    })
}
