//! `ptsel select`: choose the pre-training samples to re-use for one target task.

use anyhow::Result;
use ptsel::npy::read_matrix;
use ptsel::score::Device;
use ptsel::select::knn::{EF_PER_NEIGHBOUR, MIN_DEFAULT_EF};
use ptsel::select::manifest::{self, Format};
use ptsel::select::{
    Amount, ClassWeights, Draw, Exclude, Method, SelectParams, Target, TargetKind, DEFAULT_CLASSES,
    DEFAULT_EXCLUDE_THRESHOLD,
};
use ptsel::uot::{Domain, UotParams};
use ptsel::Engine;
use std::path::PathBuf;

/// Arguments of `ptsel select`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file or corpus folder.
    #[arg(long, value_name = "PATH")]
    pub index: PathBuf,
    /// Target features: a float .npy `[rows, dim]` (samples, or class means with --target-means).
    #[arg(long, value_name = "T.npy")]
    pub target: PathBuf,
    /// Labels of the target samples (integer .npy `[rows]`): one unit of mass per target class.
    #[arg(long, value_name = "TL.npy", conflicts_with = "target_means")]
    pub target_labels: Option<PathBuf>,
    /// Weight of each target class (float .npy, one value per label from 0): class c carries w_c
    /// of the target mass (uot: its unit's mass; uot-knn: its samples' mass and that share of
    /// the budget). Every class weighs the same without it.
    #[arg(long, value_name = "W.npy", requires = "target_labels")]
    pub target_weights: Option<PathBuf>,
    /// The target rows are already one mean per target class.
    #[arg(long)]
    pub target_means: bool,
    /// Selection method.
    #[arg(long, value_enum, default_value_t = SelectParams::DEFAULT.method)]
    pub method: Method,
    #[arg(long, value_name = "K", conflicts_with = "budget", help = classes_help())]
    pub classes: Option<usize>,
    /// Keep N samples: whole classes in order, the last one cut to its samples closest to the
    /// target (class-level methods), or the N best rows (knn, random).
    #[arg(long, value_name = "N")]
    pub budget: Option<usize>,
    /// Manifest to write.
    #[arg(long, value_name = "SEL")]
    pub out: PathBuf,
    /// Manifest format (default: from the extension of --out, csv otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Summary JSON to write.
    #[arg(long, value_name = "SUM.json")]
    pub summary: Option<PathBuf>,
    /// Put the run time of each phase (open, read, select, write) in the summary (it is then no
    /// longer byte-identical between runs).
    #[arg(long)]
    pub timing: bool,
    /// Seed of the random baselines.
    #[arg(long, default_value_t = SelectParams::DEFAULT.seed)]
    pub seed: u64,
    /// Cost scale: `M = (1 - cos) / p_m`.
    #[arg(long, default_value_t = SelectParams::DEFAULT.p_m)]
    pub p_m: f64,
    #[arg(long, help = per_method_help("Entropic regularisation eps", |p| p.uot.eps.to_string()))]
    pub eps: Option<f64>,
    /// Source marginal relaxation tau_s.
    #[arg(long, default_value_t = SelectParams::DEFAULT.uot.tau_source)]
    pub tau_source: f64,
    /// Target marginal relaxation tau_t.
    #[arg(long, default_value_t = SelectParams::DEFAULT.uot.tau_target)]
    pub tau_target: f64,
    /// Sinkhorn iterations at most.
    #[arg(long, default_value_t = SelectParams::DEFAULT.uot.max_iter)]
    pub max_iter: usize,
    /// Sinkhorn tolerance on the relative change of the scalings.
    #[arg(long, default_value_t = SelectParams::DEFAULT.uot.tol)]
    pub tol: f64,
    /// Plain or log-domain Sinkhorn (auto: log domain only when the plain kernel would fail).
    #[arg(long, value_enum, default_value_t = SelectParams::DEFAULT.uot.domain)]
    pub uot_domain: Domain,
    #[arg(long, value_name = "K", help = per_method_help("Neighbours per target sample (knn, uot-knn)", |p| p.per_target.to_string()))]
    pub per_target: Option<usize>,
    /// Class-level UOT over each target unit's K nearest classes (a sparse plan).
    #[arg(long, value_name = "K")]
    pub graph_k: Option<usize>,
    /// uot-knn: also link each touched row to its K2 nearest target samples.
    #[arg(long, value_name = "K2")]
    pub reverse_k: Option<usize>,
    /// uot-knn: keep the rows of highest importance, or draw them (--seed) in proportion to it
    /// (with target labels, each class's quota in proportion to its rows' mass towards it).
    #[arg(long, value_enum, default_value_t = SelectParams::DEFAULT.draw)]
    pub draw: Draw,
    /// uot-knn: divide each row's mass by its density among its nearest pool rows within
    /// cosine C0 (near-copies share one row's mass).
    #[arg(long, value_name = "C0")]
    pub dedup_kde: Option<f32>,
    /// uot-knn: skip a row within cosine C0 of a row already kept.
    #[arg(long, value_name = "C0")]
    pub dedup_greedy: Option<f32>,
    /// Exact neighbour search (knn); otherwise the index's HNSW graph when it has one.
    #[arg(long)]
    pub exact: bool,
    #[arg(long, help = ef_help())]
    pub ef: Option<usize>,
    /// Search the partitions (knn; built with --partitions), scanning P per target sample.
    #[arg(long, value_name = "P", conflicts_with = "exact")]
    pub probes: Option<usize>,
    /// Use the index's k-means pseudo-classes even when it has labels.
    #[arg(long)]
    pub pseudo_classes: bool,
    /// Test-set features: drop corpus samples that are near-duplicates of any of them.
    #[arg(long, value_name = "TEST.npy")]
    pub exclude_near: Option<PathBuf>,
    /// Cosine at or above which a corpus sample counts as a near-duplicate.
    #[arg(long, default_value_t = DEFAULT_EXCLUDE_THRESHOLD)]
    pub exclude_threshold: f32,
    /// Scoring backend (knn, --exclude-near).
    #[arg(long, value_enum, default_value_t = SelectParams::DEFAULT.device)]
    pub device: Device,
}

/// `--classes`'s help, with the library's default.
fn classes_help() -> String {
    format!("Keep the K best classes and all their samples [default: {DEFAULT_CLASSES} for class-level methods]")
}

/// A help line with the library's default, and uot-knn's where it differs.
fn per_method_help(what: &str, get: fn(&SelectParams) -> String) -> String {
    let (d, s) = (get(&SelectParams::DEFAULT), get(&SelectParams::UOT_KNN));
    format!("{what} [default: {d}; {s} for uot-knn]")
}

/// `--ef`'s help, with the library's default.
fn ef_help() -> String {
    format!(
        "HNSW beam width (knn; raised to --per-target when lower), or with --probes the rows \
         re-ranked exactly [default: {EF_PER_NEIGHBOUR} x --per-target, at least {MIN_DEFAULT_EF}]"
    )
}

impl Args {
    /// Engine parameters for these arguments.
    fn params(&self) -> Result<SelectParams> {
        let d = SelectParams::for_method(self.method);
        Ok(SelectParams {
            method: self.method,
            amount: Amount::for_method(self.method, self.classes, self.budget)?,
            p_m: self.p_m,
            uot: UotParams {
                eps: self.eps.unwrap_or(d.uot.eps),
                tau_source: self.tau_source,
                tau_target: self.tau_target,
                max_iter: self.max_iter,
                tol: self.tol,
                domain: self.uot_domain,
            },
            per_target: self.per_target.unwrap_or(d.per_target),
            exact: self.exact,
            ef: self.ef,
            probes: self.probes,
            seed: self.seed,
            pseudo_classes: self.pseudo_classes,
            device: self.device,
            graph_k: self.graph_k,
            reverse_k: self.reverse_k,
            draw: self.draw,
            dedup_kde: self.dedup_kde,
            dedup_greedy: self.dedup_greedy,
        })
    }

    fn target(&self) -> Result<Target> {
        let kind = match (&self.target_labels, self.target_means) {
            (Some(l), _) => TargetKind::Labelled {
                labels: ptsel::npy::read_labels(l)?,
                origin: l.clone(),
                weights: match &self.target_weights {
                    Some(w) => Some(ClassWeights {
                        values: ptsel::npy::read_floats(w)?,
                        origin: w.clone(),
                    }),
                    None => None,
                },
            },
            (None, true) => TargetKind::Means,
            (None, false) => TargetKind::Samples,
        };
        Ok(Target {
            features: read_matrix(&self.target)?,
            kind,
            origin: self.target.clone(),
        })
    }
}

/// Run `ptsel select`.
pub fn run(args: Args) -> Result<()> {
    let mut clock = manifest::Stopwatch::start();
    let mut timing = manifest::Timing::default();
    let params = args.params()?;
    let engine = Engine::open(&args.index)?;
    timing.open_s = clock.lap();
    let target = args.target()?;
    let exclude = match &args.exclude_near {
        Some(p) => Some(Exclude {
            test: read_matrix(p)?,
            origin: p.clone(),
            threshold: args.exclude_threshold,
        }),
        None => None,
    };
    timing.read_s = clock.lap();
    let sel = engine.select(&target, exclude.as_ref(), &params)?;
    timing.select_s = clock.lap();
    timing.select_phases = sel
        .phases
        .iter()
        .map(|p| (format!("{}_s", p.name), p.seconds))
        .collect();
    let format = args.format.unwrap_or_else(|| Format::from_path(&args.out));
    manifest::write(&args.out, format, &engine, &sel)?;
    timing.write_s = clock.lap();
    timing.total_s = clock.total();
    if let Some(path) = &args.summary {
        let parameters = ptsel::select::parameters(&target, exclude.as_ref(), &params);
        manifest::write_summary(
            path,
            &manifest::summary(&engine, &sel, parameters, args.timing.then_some(&timing)),
        )?;
    }
    for note in &sel.notes {
        eprintln!("note: {note}");
    }
    let classes = if sel.selected_classes.is_empty() {
        String::new()
    } else {
        format!(" from {} classes", sel.selected_classes.len())
    };
    let excluded = if exclude.is_some() {
        format!(", {} near-duplicates excluded", sel.excluded)
    } else {
        String::new()
    };
    eprintln!(
        "selected {} samples{classes}{excluded} in {:.3} s -> {}",
        sel.picks.len(),
        timing.total_s,
        args.out.display()
    );
    Ok(())
}
