//! `ptsel demo`: the main job on built-in synthetic data, no downloads: build an index, make a
//! target task from a few known source classes, select for it with UOT and check that those
//! classes come first. `--real` runs the paper's selection on the MoCo-v2 class means of
//! ImageNet and 8 target sets shipped in `data/classmeans-moco128` and built into the binary.

use anyhow::{Context, Result};
use ptsel::data::{ClassMeans, TARGETS};
use ptsel::select::{SelectParams, DEFAULT_CLASSES};
use ptsel::synth::{self, Spec};
use ptsel::uot::class_importance;

const DEFAULT: SelectParams = SelectParams::DEFAULT;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Source classes the synthetic target is drawn from.
const TARGET_CLASSES: [usize; 3] = [3, 17, 42];
/// Classes the demo selects.
const DEMO_CLASSES: usize = 10;
/// Arguments of `ptsel demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory for the demo's files.
    #[arg(long, default_value = "index-data")]
    pub dir: PathBuf,
    /// Corpus rows.
    #[arg(long, default_value_t = Spec::DEMO.rows)]
    pub rows: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = Spec::DEMO.dim)]
    pub dim: usize,
    /// Source classes (at least 43: the target is drawn from classes 3, 17 and 42).
    #[arg(long, default_value_t = Spec::DEMO.classes)]
    pub classes: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = Spec::DEMO.seed)]
    pub seed: u64,
    /// Instead: the classes chosen for the 8 real target sets (MoCo-v2 class means).
    #[arg(long)]
    pub real: bool,
    /// Directory of the real class means, in the layout of data/classmeans-moco128 (default:
    /// the copy built into the binary).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run `ptsel demo`.
pub fn run(args: Args) -> Result<()> {
    if args.real {
        return real(args.data.as_deref());
    }
    if args.classes <= TARGET_CLASSES[2] {
        anyhow::bail!(ptsel::Error::invalid(format!(
            "--classes {}: the demo needs at least {} classes",
            args.classes,
            TARGET_CLASSES[2] + 1
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let corpus = synth::clustered(Spec {
        rows: args.rows,
        dim: args.dim,
        classes: args.classes,
        seed: args.seed,
        ..Spec::DEMO
    });
    let features = args.dir.join("demo-features.npy");
    let labels = args.dir.join("demo-labels.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, corpus.rows, corpus.dim)?;
    ptsel::npy::write_labels(&labels, &corpus.labels)?;
    let out = args.dir.join("demo.ptsel");
    outln!(
        "demo: {} synthetic rows x {} dims in {} classes -> {}",
        corpus.rows,
        corpus.dim,
        args.classes,
        out.display()
    )?;
    let mut build: Vec<OsString> = vec!["--features".into(), features.into()];
    build.extend([
        "--labels".into(),
        labels.into(),
        "--out".into(),
        out.clone().into(),
    ]);
    build.extend([
        "--seed".into(),
        args.seed.to_string().into(),
        "--force".into(),
    ]);
    if args.quiet {
        build.push("--quiet".into());
    }
    crate::build::run(crate::parse_args(build)?)?;
    crate::info::run(crate::info::Args {
        path: out.clone(),
        json: false,
    })?;

    let (target, target_labels) =
        synth::target_like(&corpus, &TARGET_CLASSES, 50, 1.0, args.seed + 1);
    let target_path = args.dir.join("demo-target.npy");
    let target_labels_path = args.dir.join("demo-target-labels.npy");
    ptsel::npy::write_matrix(&target_path, &target, target_labels.len(), corpus.dim)?;
    ptsel::npy::write_labels(&target_labels_path, &target_labels)?;
    let summary = args.dir.join("demo-summary.json");
    let manifest = args.dir.join("demo-selection.csv");
    outln!("\ntarget: {} samples drawn around source classes {TARGET_CLASSES:?}; selecting {DEMO_CLASSES} classes with UOT", target_labels.len())?;
    crate::select::run(crate::parse_args([
        "--index".into(),
        out.into_os_string(),
        "--target".into(),
        target_path.into_os_string(),
        "--target-labels".into(),
        target_labels_path.into_os_string(),
        "--classes".into(),
        DEMO_CLASSES.to_string().into(),
        "--out".into(),
        manifest.clone().into_os_string(),
        "--summary".into(),
        summary.clone().into_os_string(),
    ])?)?;
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&summary)
            .with_context(|| format!("reading {}", summary.display()))?,
    )?;
    let chosen: Vec<u64> = s["selected_classes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["class"].as_u64()).collect())
        .unwrap_or_default();
    for c in s["selected_classes"].as_array().into_iter().flatten() {
        outln!(
            "  {:>2}. class {:>3}  importance {:.4}  {} samples",
            c["rank"],
            c["class"],
            c["importance"].as_f64().unwrap_or(0.0),
            c["samples"]
        )?;
    }
    let mut first: Vec<u64> = chosen.iter().take(TARGET_CLASSES.len()).copied().collect();
    first.sort_unstable();
    let truth: Vec<u64> = TARGET_CLASSES.iter().map(|&c| c as u64).collect();
    let verdict = if first == truth { "yes" } else { "NO" };
    outln!("the target's source classes ranked first: {verdict}")?;
    outln!(
        "manifest {}, summary {}",
        manifest.display(),
        summary.display()
    )?;
    Ok(())
}

fn real(data: Option<&Path>) -> Result<()> {
    let data = data.map_or(ClassMeans::BuiltIn, ClassMeans::from);
    let (source, dim) = data.means("imagenet")?;
    let classes = data.imagenet_classes()?;
    outln!(
        "UOT over {} ImageNet class means ({dim}-d MoCo-v2) from {}",
        source.len() / dim,
        data.origin().display()
    )?;
    for name in TARGETS {
        let (target, tdim) = data.means(name)?;
        if tdim != dim {
            anyhow::bail!(ptsel::Error::input(
                data.origin().join(format!("{name}.npy")),
                format!("{tdim}-d means, ImageNet's are {dim}-d")
            ));
        }
        let (importance, plan) =
            class_importance(&source, &target, None, dim, DEFAULT.p_m, &DEFAULT.uot)?;
        let mut order: Vec<usize> = (0..importance.len()).collect();
        order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]).then(a.cmp(&b)));
        let mut concepts: std::collections::BTreeMap<&str, usize> = Default::default();
        for &c in order.iter().take(DEFAULT_CLASSES) {
            *concepts
                .entry(classes.get(c).map_or("?", |x| x.concept.as_str()))
                .or_default() += 1;
        }
        let mut concepts: Vec<(&str, usize)> = concepts.into_iter().collect();
        concepts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = order
            .iter()
            .take(8)
            .map(|&c| classes.get(c).map_or(format!("#{c}"), |x| x.name.clone()))
            .collect();
        let mix: Vec<String> = concepts
            .iter()
            .take(4)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        outln!(
            "\n{name}: {} target classes, {} iterations{}",
            target.len() / dim,
            plan.iterations,
            if plan.log_domain { " (log domain)" } else { "" }
        )?;
        outln!("  top classes: {}", top.join(", "))?;
        outln!("  top-100 concepts: {}", mix.join(", "))?;
    }
    Ok(())
}
