//! `ptsel build`: features (.npy) into a one-file index.

use crate::progress::Bars;
use anyhow::Result;
use ptsel::{BuildOptions, DType, Labels, Metric};
use std::path::PathBuf;

/// Arguments of `ptsel build`.
#[derive(clap::Args)]
pub struct Args {
    /// Features: a float16/32/64 .npy of shape [rows, dim], C order.
    #[arg(long, value_name = "F.npy")]
    pub features: PathBuf,
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
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: DType,
    /// Search metric (cos stores unit-normalised vectors and keeps the raw norms).
    #[arg(long, value_enum, default_value = "cos")]
    pub metric: Metric,
    /// Output index file.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Args {
    /// Engine options for these arguments.
    pub fn options(&self) -> Result<BuildOptions> {
        let labels = self.labels.as_deref().map(Labels::from_npy).transpose()?;
        let mut params = std::collections::BTreeMap::new();
        if let Some(l) = &self.labels {
            params.insert("labels".into(), l.display().to_string());
        }
        if let Some(i) = &self.ids {
            params.insert("ids".into(), i.display().to_string());
        }
        Ok(BuildOptions {
            dtype: self.dtype,
            metric: self.metric,
            force: self.force,
            labels,
            ids: self.ids.clone(),
            class_names: self.class_names.clone(),
            params,
            extensions: Vec::new(),
        })
    }
}

/// Run `ptsel build`.
pub fn run(args: Args) -> Result<()> {
    let mut source = ptsel::npy::MatrixReader::open(&args.features)?;
    let opts = args.options()?;
    let bars = Bars::new(args.quiet);
    let report = ptsel::build(&mut source, &args.out, opts, &|s, d, t| {
        bars.update(s, d, t)
    })?;
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
