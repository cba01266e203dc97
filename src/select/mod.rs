//! Selection methods: which pre-training samples to re-use for a target task.
//!
//! Class-level methods rank the corpus's classes (its labels, or k-means pseudo-classes) and keep
//! whole classes ([`classes`]): [`Method::Uot`] (the paper; docs/ARCHITECTURE.md, "The method"),
//! [`Method::Similarity`] and the [`Amount::Classes`] form of [`Method::Random`]. Sample-level
//! methods rank rows: [`Method::Knn`] (neighbours of every target sample) and the
//! [`Amount::Budget`] form of [`Method::Random`]. [`crate::Engine::select`] runs one of them and
//! returns a [`Selection`]; [`manifest`] writes it.

pub mod baselines;
pub mod classes;
pub mod groups;
pub mod knn;
pub mod manifest;
mod order;
mod quotas;
pub mod target;
pub mod uot_knn;

pub use classes::uot_importance;
pub use groups::{Grouping, Groups};
pub use target::{ClassWeights, Target, TargetKind};

use crate::engine::{Engine, SearchOpts};
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::npy::Matrix;
use crate::score::Device;
use crate::uot;
use std::path::PathBuf;

/// A selection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Unbalanced OT between class means (the paper's method).
    #[default]
    Uot,
    /// Nearest corpus samples of every target sample, aggregated by summed similarity.
    Knn,
    /// Unbalanced OT between the target samples and the corpus rows, restricted to each target
    /// sample's nearest rows (the paper's objective at sample level).
    #[serde(rename = "uot-knn")]
    UotKnn,
    /// Classes ranked by cosine between class mean and the mean target direction.
    Similarity,
    /// Seeded uniform sample of rows (`--budget`) or of classes (`--classes`).
    Random,
}

parse_by_name!(Method, "method", {
    "uot" => Method::Uot,
    "knn" => Method::Knn,
    "uot-knn" => Method::UotKnn,
    "similarity" => Method::Similarity,
    "random" => Method::Random,
});

/// How many samples to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// The `K` best classes, every sample of each.
    Classes(usize),
    /// `N` samples: whole classes in order, the last one filled by its samples closest to the
    /// target (class-level methods); the `N` best rows (sample-level methods).
    Budget(usize),
}

impl Amount {
    /// The amount for `method` from an optional class count and budget, as the CLI defaults
    /// them: without either, class-level methods keep [`DEFAULT_CLASSES`] classes and kNN is an
    /// error (it needs a budget); both at once are an error.
    pub fn for_method(
        method: Method,
        classes: Option<usize>,
        budget: Option<usize>,
    ) -> Result<Self> {
        match (classes, budget, method) {
            (Some(_), Some(_), _) => Err(Error::invalid(
                "give a number of classes or a budget of samples, not both",
            )),
            (Some(k), None, _) => Ok(Amount::Classes(k)),
            (None, Some(n), _) => Ok(Amount::Budget(n)),
            (None, None, Method::Knn | Method::UotKnn) => Err(Error::invalid(
                "sample-level selection (knn, uot-knn) needs a budget (the number of samples to keep)",
            )),
            (None, None, _) => Ok(Amount::Classes(DEFAULT_CLASSES)),
        }
    }
}

/// Classes kept by class-level methods when neither a class count nor a budget is given (the
/// authors' scripts).
pub const DEFAULT_CLASSES: usize = 100;

/// Cosine at or above which a corpus sample counts as a near-duplicate of a test sample.
pub const DEFAULT_EXCLUDE_THRESHOLD: f32 = 0.95;

/// Near-duplicates of an evaluation set to keep out of the selection.
#[derive(Debug, Clone)]
pub struct Exclude {
    /// Test-set features (raw).
    pub test: Matrix,
    /// Where they came from.
    pub origin: PathBuf,
    /// Corpus rows with cosine `>=` this to any test feature are dropped.
    pub threshold: f32,
}

/// Parameters of a selection run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SelectParams {
    /// Method.
    pub method: Method,
    /// Classes or budget.
    #[serde(skip)]
    pub amount: Amount,
    /// `p_m` of the cost `(1 - cos) / p_m`.
    pub p_m: f64,
    /// UOT solver parameters.
    pub uot: uot::UotParams,
    /// Neighbours retrieved per target sample (kNN).
    pub per_target: usize,
    /// Exact search for kNN (otherwise the index's HNSW graph when it has one).
    pub exact: bool,
    /// HNSW beam width for kNN (raised to `per_target` when lower), or with `probes` the rows
    /// re-ranked exactly; `None`: [`knn::default_ef`] of `per_target` ([`SelectParams::ef`]).
    pub ef: Option<usize>,
    /// kNN through the index's partitions, scanning this many per target sample, instead of
    /// its HNSW graph (see [`crate::partitions`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<usize>,
    /// Seed (random baselines).
    pub seed: u64,
    /// Use k-means pseudo-classes even when the index has labels.
    pub pseudo_classes: bool,
    /// Scoring backend (kNN, exclusion).
    #[serde(skip)]
    pub device: Device,
    /// Class-level UOT over each target unit's `K` nearest classes (a sparse plan) instead of
    /// the dense plan; `K` equal to the number of classes is the dense problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_k: Option<usize>,
    /// uot-knn: also link each touched row to its `K2` nearest target samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse_k: Option<usize>,
    /// uot-knn: keep the rows of highest importance, or draw them in proportion to it.
    pub draw: Draw,
    /// uot-knn: divide each row's source mass by its local density among its
    /// [`uot_knn::DENSITY_NEIGHBOURS`] nearest pool rows, `sum max(0, 1 - (1 - cos) / (1 - C0))`
    /// (TSDS's kernel-density de-duplication with cosine `C0`), so that near-copies share one
    /// row's mass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_kde: Option<f32>,
    /// uot-knn: skip a row whose cosine to a row already kept is at least `C0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_greedy: Option<f32>,
}

/// How uot-knn turns importance into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Draw {
    /// The `N` rows of highest importance (ties: lower row first).
    #[default]
    Top,
    /// `N` distinct rows drawn (seeded) with probability in proportion to importance.
    Sample,
}

parse_by_name!(Draw, "draw", {
    "top" => Draw::Top,
    "sample" => Draw::Sample,
});

impl SelectParams {
    /// The defaults, the one place they are written (the CLI's `--help` and the Python
    /// package's `None` arguments take them from here): the paper's UOT (`p_m` 0.1 and
    /// [`uot::UotParams::DEFAULT`]) keeping [`DEFAULT_CLASSES`] classes; for kNN, 50 neighbours
    /// per target sample through the HNSW graph.
    pub const DEFAULT: SelectParams = SelectParams {
        method: Method::Uot,
        amount: Amount::Classes(DEFAULT_CLASSES),
        p_m: 0.1,
        uot: uot::UotParams::DEFAULT,
        per_target: 50,
        exact: false,
        ef: None,
        probes: None,
        seed: 0,
        pseudo_classes: false,
        device: Device::Auto,
        graph_k: None,
        reverse_k: None,
        draw: Draw::Top,
        dedup_kde: None,
        dedup_greedy: None,
    };

    /// The defaults of [`Method::UotKnn`], where they differ from [`SelectParams::DEFAULT`]:
    /// `eps` 0.1 (at the paper's 1 the sample-level plan is so diffuse that a kNN graph cuts
    /// much of it) and 64 neighbours per target sample.
    pub const UOT_KNN: SelectParams = SelectParams {
        method: Method::UotKnn,
        uot: uot::UotParams {
            eps: 0.1,
            ..uot::UotParams::DEFAULT
        },
        per_target: 64,
        ..Self::DEFAULT
    };

    /// The defaults for `method`: [`SelectParams::UOT_KNN`] for uot-knn, else
    /// [`SelectParams::DEFAULT`] with that method.
    pub const fn for_method(method: Method) -> SelectParams {
        match method {
            Method::UotKnn => Self::UOT_KNN,
            _ => SelectParams {
                method,
                ..Self::DEFAULT
            },
        }
    }

    /// The kNN search's beam width (or rows re-ranked through the partitions): `ef` when given,
    /// else [`knn::default_ef`] of `per_target`.
    pub fn ef(&self) -> usize {
        self.ef.unwrap_or_else(|| knn::default_ef(self.per_target))
    }

    /// How kNN selection searches `engine` for each target sample's `per_target` neighbours:
    /// exact scoring when asked, or when no partitions are asked for and the index (or a shard
    /// of the corpus) has no graph (`fallback` is then set); else the graph or the partitions
    /// with [`SelectParams::ef`]. An error when both exact search and partitions are asked for.
    pub fn knn_search(&self, engine: &Engine) -> Result<KnnSearch> {
        if self.exact && self.probes.is_some() {
            return Err(Error::invalid(
                "kNN: give exact or probes (a partitioned search), not both",
            ));
        }
        let fallback = !self.exact && self.probes.is_none() && engine.graphs()?.is_none();
        Ok(KnnSearch {
            k: self.per_target,
            opts: SearchOpts {
                ef: Some(self.ef()),
                probes: self.probes,
                exact: self.exact || fallback,
                threads: None,
                device: self.device,
            },
            fallback,
        })
    }
}

impl Default for SelectParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The search behind a kNN selection ([`SelectParams::knn_search`]): what each shard, or the
/// whole corpus, is searched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnnSearch {
    /// Neighbours per target sample.
    pub k: usize,
    /// The search.
    pub opts: SearchOpts,
    /// Exact search because the index has no graph (not because it was asked for).
    pub fallback: bool,
}

/// One selected sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Corpus row.
    pub row: u32,
    /// Its source class (label or pseudo-class), when known.
    pub class: Option<u32>,
    /// What ranked it: the class importance (uot, similarity), the summed similarity (knn),
    /// the row's plan mass (uot-knn), 0 (random).
    pub score: f64,
}

/// How the UOT solver ran.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SolverStats {
    /// Source classes (non-empty) in the problem.
    pub source_classes: usize,
    /// Units of target mass (target classes, or samples).
    pub target_units: usize,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached.
    pub converged: bool,
    /// Largest deviation of the target marginal from `b`.
    pub marginal_error: f64,
    /// Whether the log-domain iteration was used.
    pub log_domain: bool,
    /// The sparse plan's graph and terms (uot with a graph, uot-knn).
    #[serde(flatten)]
    pub graph: Option<GraphStats>,
}

/// The graph of a sparse UOT plan and what it may have cut off.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GraphStats {
    /// Edges of the graph.
    pub edges: usize,
    /// Source rows (or classes) touched by an edge: the rows of the problem.
    pub touched_rows: usize,
    /// The objective's terms.
    pub objective: uot::Objective,
    /// Median over targets of the estimated plan mass the graph cut off, relative to `b_j`: an
    /// upper bound, loose at sample level (it lets every row outside the graph take mass from
    /// the target alone), so the note is driven by `kth_kernel_median` instead.
    pub tail_median: f64,
    /// Largest such estimate.
    pub tail_max: f64,
    /// Median over targets of the kernel at the farthest kept neighbour relative to the
    /// nearest, `exp(-(c_far - c_near) / eps)`: near 1, the plan is still flat where the graph
    /// ends, so it likely cut real mass off (raise k or lower eps); near 0, it has decayed.
    pub kth_kernel_median: f64,
    /// Rows whose source mass the density de-duplication lowered (`dedup_kde`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kde_downweighted: Option<usize>,
    /// Rows skipped as near-copies of a row already kept (`dedup_greedy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greedy_skipped: Option<usize>,
}

/// Wall-clock seconds of one phase inside a selection (the search, the solve, ...): reported
/// under the summary's `timing` when asked for, never part of the result.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Phase {
    /// What ran: `search`, `reverse`, `density`, `graph`, `solve`, `rank`.
    pub name: &'static str,
    /// Its wall-clock seconds.
    pub seconds: f64,
}

/// The outcome of a selection.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Method used.
    pub method: Method,
    /// Selected samples in rank order.
    pub picks: Vec<Pick>,
    /// Where the classes came from (class-level methods).
    pub grouping: Option<Grouping>,
    /// Importance of every source class (uot, similarity); 0 for empty classes.
    pub importance: Option<Vec<f64>>,
    /// Selected classes in order (class-level methods).
    pub selected_classes: Vec<u32>,
    /// Solver statistics (uot).
    pub solver: Option<SolverStats>,
    /// Corpus rows dropped by the contamination guard.
    pub excluded: usize,
    /// Things the caller should tell the user (a fallback taken, a short selection).
    pub notes: Vec<String>,
    /// Where the time went, for the sparse and dense UOT methods (empty for the others).
    pub phases: Vec<Phase>,
}

/// Two selections are equal when their results are: the run times in `phases` are left out.
impl PartialEq for Selection {
    fn eq(&self, other: &Self) -> bool {
        let Selection {
            method,
            picks,
            grouping,
            importance,
            selected_classes,
            solver,
            excluded,
            notes,
            phases: _,
        } = self;
        *method == other.method
            && *picks == other.picks
            && *grouping == other.grouping
            && *importance == other.importance
            && *selected_classes == other.selected_classes
            && *solver == other.solver
            && *excluded == other.excluded
            && *notes == other.notes
    }
}

impl Selection {
    /// A sample-level selection (no classes, no importance).
    fn samples(method: Method, picks: Vec<Pick>, notes: Vec<String>) -> Self {
        Selection {
            method,
            picks,
            grouping: None,
            importance: None,
            selected_classes: Vec::new(),
            solver: None,
            excluded: 0,
            notes,
            phases: Vec::new(),
        }
    }
}

/// What the corpus-wide scans of a selection found when they ran elsewhere (one Spark task per
/// shard, say): the engine then merges them and runs the rest of the selection without
/// scanning the corpus. Each part covers some shards and holds global rows.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// kNN: each part's answer to the search of the target samples for `per_target`
    /// neighbours ([`Engine::search_shards`]).
    pub neighbors: Vec<crate::score::Neighbors>,
    /// The contamination guard: each part's near-duplicates of the test set
    /// ([`Engine::near_duplicates`]).
    pub excluded: Vec<Vec<u32>>,
}

/// Rows left out of a selection (near-duplicates of the test set): global rows, ascending.
#[derive(Debug, Clone, Default)]
pub(crate) struct Excluded(Vec<u32>);

impl Excluded {
    fn new(parts: Vec<Vec<u32>>) -> Self {
        let mut rows: Vec<u32> = parts.into_iter().flatten().collect();
        rows.sort_unstable();
        rows.dedup();
        Excluded(rows)
    }

    /// Whether `row` is left out.
    fn contains(&self, row: u32) -> bool {
        self.0.binary_search(&row).is_ok()
    }

    /// How many rows are left out.
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Selection on an open index or corpus: the methods of this module as [`Engine`] calls.
impl Engine {
    /// Run the selection `params` for `target`, leaving out near-duplicates of `exclude`.
    pub fn select(
        &self,
        target: &Target,
        exclude: Option<&Exclude>,
        params: &SelectParams,
    ) -> Result<Selection> {
        run(self, target, exclude, params, Found::default())
    }

    /// [`Engine::select`] with the corpus-wide scans already done elsewhere and their parts
    /// in `found` (the kNN searches of [`Engine::search_shards`], the near-duplicates of
    /// [`Engine::near_duplicates`]): what a driver runs after one task per group of shards. The
    /// result is the one [`Engine::select`] gives when the parts cover every shard.
    pub fn select_found(
        &self,
        target: &Target,
        exclude: Option<&Exclude>,
        params: &SelectParams,
        found: Found,
    ) -> Result<Selection> {
        run(self, target, exclude, params, found)
    }

    /// The summary of a selection, as `ptsel select --summary` writes it (without timing).
    pub fn summary(
        &self,
        target: &Target,
        exclude: Option<&Exclude>,
        params: &SelectParams,
        sel: &Selection,
    ) -> serde_json::Value {
        manifest::summary(self, sel, parameters(target, exclude, params), None)
    }
}

/// Run the selection `p` for `target` over the engine's index or corpus (global rows),
/// dropping near-duplicates of `exclude`, with the scans in `found` already done elsewhere
/// ([`Engine::select`], [`Engine::select_found`]).
fn run(
    engine: &Engine,
    target: &Target,
    exclude: Option<&Exclude>,
    p: &SelectParams,
    found: Found,
) -> Result<Selection> {
    target.check(engine.dim())?;
    if let Some(e) = exclude {
        check_exclude(engine, e)?;
    }
    let weighted = matches!(
        &target.kind,
        TargetKind::Labelled {
            weights: Some(_),
            ..
        }
    );
    if weighted && !matches!(p.method, Method::Uot | Method::UotKnn) {
        return Err(Error::invalid(
            "target class weights apply to the uot and uot-knn methods (the others do not weigh target classes)",
        ));
    }
    match (p.method, p.amount) {
        (_, Amount::Classes(0) | Amount::Budget(0)) => {
            return Err(Error::invalid(
                "the number of classes or the budget must be at least 1",
            ))
        }
        (Method::Knn | Method::UotKnn, Amount::Classes(_)) => {
            return Err(Error::invalid(
                "sample-level selection (knn, uot-knn) picks samples: give a budget of samples, not a number of classes",
            ))
        }
        _ => {}
    }
    if p.graph_k.is_some() && p.method != Method::Uot {
        return Err(Error::invalid(
            "graph_k restricts the class-level UOT plan: it needs the uot method",
        ));
    }
    let dedup = p.dedup_kde.is_some() || p.dedup_greedy.is_some();
    if (p.reverse_k.is_some() || p.draw != Draw::Top || dedup) && p.method != Method::UotKnn {
        return Err(Error::invalid(
            "reverse_k, a sampled draw and de-duplication are options of the uot-knn method",
        ));
    }
    for c0 in [p.dedup_kde, p.dedup_greedy].into_iter().flatten() {
        if !(-1.0..1.0).contains(&c0) {
            return Err(Error::invalid(format!(
                "a de-duplication threshold is a cosine in [-1, 1) (got {c0})"
            )));
        }
    }
    let mask = match exclude {
        Some(_) if !found.excluded.is_empty() => Some(Excluded::new(found.excluded)),
        Some(e) => Some(Excluded::new(vec![engine.near_duplicates(
            0..engine.shards().len(),
            &e.test.data,
            e.threshold,
        )?])),
        None => None,
    };
    let mask = mask.as_ref();
    let hits = match found.neighbors.as_slice() {
        [] => None,
        parts => Some(crate::engine::merge_neighbors(
            engine.metric(),
            p.per_target,
            parts,
        )?),
    };
    let mut sel = match (p.method, p.amount) {
        (Method::Knn, Amount::Budget(n)) => {
            knn::select(engine, &target.features.data, n, mask, p, hits)?
        }
        (Method::UotKnn, Amount::Budget(n)) => uot_knn::select(engine, target, n, mask, p, hits)?,
        (Method::Random, Amount::Budget(n)) => baselines::random_rows(engine, n, mask, p.seed)?,
        (method, amount) => classes::select(engine, target, method, amount, mask, p)?,
    };
    sel.excluded = mask.map_or(0, Excluded::len);
    Ok(sel)
}

/// An error unless a budget of `n` samples fits in the `available` selectable ones.
fn check_budget(n: usize, available: usize) -> Result<()> {
    if n > available {
        return Err(Error::invalid(format!(
            "a budget of {n} exceeds the {available} selectable samples of the corpus"
        )));
    }
    Ok(())
}

/// The parameter block of a selection's summary: `p` with the amount, the target and the
/// exclusion spelled out (paths as given, so that summaries are byte-identical between runs).
pub fn parameters(
    target: &Target,
    exclude: Option<&Exclude>,
    p: &SelectParams,
) -> serde_json::Value {
    let (classes, budget) = match p.amount {
        Amount::Classes(k) => (Some(k), None),
        Amount::Budget(n) => (None, Some(n)),
    };
    let mut block = serde_json::to_value(p).unwrap_or_default();
    if let Some(map) = block.as_object_mut() {
        map.insert("ef".into(), p.ef().into());
        let (kind, labels, weights) = match &target.kind {
            TargetKind::Samples => ("samples", None, None),
            TargetKind::Means => ("means", None, None),
            TargetKind::Labelled {
                origin, weights, ..
            } => (
                "labelled",
                Some(origin),
                weights.as_ref().map(|w| &w.origin),
            ),
        };
        map.insert("classes".into(), classes.into());
        map.insert("budget".into(), budget.into());
        map.insert("target".into(), target.origin.display().to_string().into());
        map.insert("target_kind".into(), kind.into());
        map.insert(
            "target_labels".into(),
            labels.map(|p| p.display().to_string()).into(),
        );
        map.insert(
            "target_weights".into(),
            weights.map(|p| p.display().to_string()).into(),
        );
        map.insert(
            "exclude_near".into(),
            exclude.map(|e| e.origin.display().to_string()).into(),
        );
        map.insert(
            "exclude_threshold".into(),
            f64::from(exclude.map_or(DEFAULT_EXCLUDE_THRESHOLD, |e| e.threshold)).into(),
        );
    }
    block
}

fn check_exclude(engine: &Engine, e: &Exclude) -> Result<()> {
    if engine.metric() != Metric::Cos {
        return Err(Error::invalid(format!("excluding near-duplicates compares cosines: it needs an index built with the cos metric (this one is {})", engine.metric().name())));
    }
    if !(-1.0..=1.0).contains(&e.threshold) {
        return Err(Error::invalid(format!(
            "the exclusion threshold must be a cosine in [-1, 1] (got {})",
            e.threshold
        )));
    }
    if e.test.dim != engine.dim() {
        return Err(Error::input(
            &e.origin,
            format!(
                "test features are {}-d but the index is {}-d",
                e.test.dim,
                engine.dim()
            ),
        ));
    }
    if e.test.rows == 0 {
        return Err(Error::input(&e.origin, "the test set has no rows"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_default_as_the_cli_does_and_refuse_both_forms() {
        let a = |m, c, b| Amount::for_method(m, c, b);
        assert_eq!(
            a(Method::Uot, None, None).unwrap(),
            Amount::Classes(DEFAULT_CLASSES)
        );
        assert_eq!(a(Method::Knn, None, Some(7)).unwrap(), Amount::Budget(7));
        assert_eq!(
            a(Method::Random, Some(3), None).unwrap(),
            Amount::Classes(3)
        );
        assert!(a(Method::Knn, None, None).is_err());
        let both = a(Method::Uot, Some(3), Some(7)).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }
}
