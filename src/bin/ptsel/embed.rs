//! `ptsel embed`: a TorchScript backbone over an image folder into a feature matrix (.npy), and
//! the image source of `ptsel build --images`.

use crate::progress::Bars;
use anyhow::Result;
use ptsel::embed::{EmbedOptions, Embedder, ImageFolder};
use ptsel::{BuildOptions, BuildReport};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `ptsel embed`.
#[derive(clap::Args)]
pub struct Args {
    /// TorchScript backbone (torch.jit.trace / torch.jit.script, saved with .save()).
    #[arg(long, value_name = "BACKBONE.pt")]
    pub model: PathBuf,
    /// Image folder: one sub-folder per class (sorted names = labels 0..C-1), or a flat folder.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Output features: float32 .npy of shape [images, D].
    #[arg(long, value_name = "F.npy")]
    pub out: PathBuf,
    /// Also write the labels (int64 .npy); needs class sub-folders.
    #[arg(long, value_name = "L.npy")]
    pub labels: Option<PathBuf>,
    /// Also write the ids (paths relative to DIR), one per line.
    #[arg(long, value_name = "IDS.txt")]
    pub ids: Option<PathBuf>,
    /// Also write the class names (sub-folder names), one per line; needs class sub-folders.
    #[arg(long, value_name = "NAMES.txt")]
    pub class_names: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    // Last: its help heading applies to the arguments after it.
    #[command(flatten)]
    pub tuning: Tuning,
}

/// The image source of `ptsel build` (instead of --features).
#[derive(clap::Args, Default)]
pub struct ImageSource {
    /// Compute the features from this image folder with --model instead of --features (labels,
    /// class names and ids come from the folder; see `ptsel embed`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["features", "labels", "ids", "class_names"], requires = "model")]
    pub images: Option<PathBuf>,
    /// TorchScript backbone for --images.
    #[arg(long, value_name = "BACKBONE.pt", requires = "images")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// How images are turned into features (shared by `embed` and `build --images`).
#[derive(clap::Args)]
#[command(next_help_heading = "Embedding")]
pub struct Tuning {
    /// Images per forward pass.
    #[arg(long, default_value_t = EmbedOptions::default().batch)]
    pub batch: usize,
    /// Shorter side after resizing (torchvision Resize).
    #[arg(long, default_value_t = EmbedOptions::default().resize)]
    pub resize: u32,
    /// Side of the centre crop fed to the model (torchvision CenterCrop).
    #[arg(long, default_value_t = EmbedOptions::default().crop)]
    pub crop: u32,
    /// Threads for the model and for decoding [default: all cores].
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
    /// Skip unreadable images and list them in the bad-image report instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Bad-image report (with --skip-bad) [default: beside the output, OUT with extension .bad.txt].
    #[arg(long, value_name = "PATH", requires = "skip_bad")]
    pub bad_report: Option<PathBuf>,
}

impl Default for Tuning {
    fn default() -> Self {
        let d = EmbedOptions::default();
        Tuning {
            batch: d.batch,
            resize: d.resize,
            crop: d.crop,
            threads: None,
            skip_bad: false,
            bad_report: None,
        }
    }
}

impl Tuning {
    fn options(&self) -> EmbedOptions {
        let defaults = EmbedOptions::default();
        EmbedOptions {
            batch: self.batch,
            resize: self.resize,
            crop: self.crop,
            threads: self.threads.unwrap_or(defaults.threads),
            skip_bad: self.skip_bad,
        }
    }

    /// Scan `images`, load `model` and start decoding.
    fn embedder(&self, model: &Path, images: &Path) -> Result<Embedder> {
        let folder = ImageFolder::scan(images)?;
        Ok(Embedder::new(model, folder, self.options())?)
    }

    /// Write the bad-image report for a run whose main output is `out` (with --skip-bad).
    fn finish(&self, embedder: &Embedder, out: &Path) -> Result<()> {
        let stats = embedder.stats();
        eprintln!(
            "embedded {} images ({} skipped): model {:.1} s, decoding {:.1} s over {} threads, waiting for decoding {:.1} s",
            stats.images,
            stats.skipped,
            stats.model_seconds,
            stats.decode_seconds,
            self.options().threads,
            stats.wait_seconds
        );
        if self.skip_bad {
            let report = self
                .bad_report
                .clone()
                .unwrap_or_else(|| out.with_extension("bad.txt"));
            ptsel::embed::write_bad_report(&report, embedder.bad())?;
            if !embedder.bad().is_empty() {
                eprintln!(
                    "skipped {} unreadable images, listed in {}",
                    embedder.bad().len(),
                    report.display()
                );
            }
        }
        Ok(())
    }
}

/// `ptsel build --images DIR --model BACKBONE.pt`: embed the folder straight into the index,
/// with its labels, class names and ids.
pub fn build_from_images(
    source: &ImageSource,
    out: &Path,
    opts: BuildOptions,
    bars: &Bars,
) -> Result<BuildReport> {
    let (Some(images), Some(model)) = (&source.images, &source.model) else {
        anyhow::bail!(ptsel::Error::invalid(
            "give --features, or --images with --model"
        ));
    };
    let tuning = &source.tuning;
    let mut embedder = tuning.embedder(model, images)?;
    let report = ptsel::embed::build_from_images(
        &mut embedder,
        model,
        &tuning.options(),
        out,
        opts,
        &|s, d, t| bars.update(s, d, t),
    )?;
    bars.finish();
    tuning.finish(&embedder, out)?;
    Ok(report)
}

/// Run `ptsel embed`.
pub fn run(args: Args) -> Result<()> {
    let mut embedder = args.tuning.embedder(&args.model, &args.images)?;
    let folder = embedder.folder();
    if folder.labels().is_none() && (args.labels.is_some() || args.class_names.is_some()) {
        anyhow::bail!(ptsel::Error::input(
            &args.images,
            "has no class sub-folders: --labels and --class-names need the ImageFolder layout"
        ));
    }
    let bars = Bars::new(args.quiet);
    let dim = embedder.dim();
    let rows =
        ptsel::embed::write_features(&mut embedder, &args.out, &|d, t| bars.update("embed", d, t))?;
    bars.finish();
    // Labels and ids of the images embedded (the skipped ones left out).
    let folder = embedder.folder();
    let bad: std::collections::HashSet<usize> = embedder.bad().iter().map(|b| b.position).collect();
    let kept = |i: &usize| !bad.contains(i);
    if let (Some(path), Some(labels)) = (&args.labels, folder.labels()) {
        let kept_labels: Vec<i64> = (0..folder.len())
            .filter(kept)
            .map(|i| i64::from(labels[i]))
            .collect();
        ptsel::npy::write_vector(path, &kept_labels)?;
    }
    if let Some(path) = &args.ids {
        write_lines(
            path,
            (0..folder.len())
                .filter(kept)
                .map(|i| folder.ids()[i].as_str()),
        )?;
    }
    if let Some(path) = &args.class_names {
        write_lines(path, folder.class_names().iter().map(String::as_str))?;
    }
    args.tuning.finish(&embedder, &args.out)?;
    eprintln!("wrote {}: {rows} x {dim} float32", args.out.display());
    Ok(())
}

/// Write `lines` to `path`, one per line, atomically.
fn write_lines<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) -> Result<()> {
    ptsel::output::atomic_write(path, |w| {
        lines.into_iter().try_for_each(|l| writeln!(w, "{l}"))
    })?;
    Ok(())
}
