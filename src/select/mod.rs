//! Selection methods: which pre-training samples to re-use for a target task.
//!
//! Class-level methods rank the corpus's classes (its labels, or k-means pseudo-classes) and
//! keep whole classes: [`Method::Uot`] (the paper, DESIGN.md §1), [`Method::Similarity`] and the
//! `--classes` form of [`Method::Random`]. Sample-level methods rank rows: [`Method::Knn`]
//! (neighbours of every target sample) and the `--budget` form of [`Method::Random`].
//! [`select`] runs one of them and returns a [`Selection`]; [`manifest`] writes it.

pub mod baselines;
pub mod kmeans;
pub mod knn;
pub mod manifest;
pub mod uot;

use crate::error::{Error, Result};
use crate::format::{Metric, NO_LABEL};
use crate::npy::Matrix;
use crate::score::{self, Device};
use crate::store::Index;
use rayon::prelude::*;
use std::borrow::Cow;
use std::path::PathBuf;

/// A selection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Unbalanced OT between class means (the paper's method).
    #[default]
    Uot,
    /// Nearest corpus samples of every target sample, aggregated by summed similarity.
    Knn,
    /// Classes ranked by cosine between class mean and the mean target direction.
    Similarity,
    /// Seeded uniform sample of rows (`--budget`) or of classes (`--classes`).
    Random,
}

/// What the rows of the target matrix are.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    /// Target samples, each its own unit of mass.
    Samples,
    /// One mean per target class (as the authors store them).
    Means,
    /// Target samples with their class labels: one unit of mass per class mean.
    Labelled(Vec<u32>),
}

/// The target task's features.
#[derive(Debug, Clone)]
pub struct Target {
    /// Row-major features (raw, unnormalised).
    pub features: Matrix,
    /// What the rows are.
    pub kind: TargetKind,
    /// Where the features came from (for errors).
    pub origin: PathBuf,
}

impl Target {
    /// Check the target against an index of dimension `dim`.
    fn check(&self, dim: usize) -> Result<()> {
        let f = &self.features;
        if f.rows == 0 {
            return Err(Error::input(&self.origin, "the target has no rows"));
        }
        if f.dim != dim {
            return Err(Error::input(
                &self.origin,
                format!("target features are {}-d but the index is {dim}-d", f.dim),
            ));
        }
        if let Some(i) = f.data.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                &self.origin,
                format!(
                    "row {} column {} is {} (features must be finite)",
                    i / dim,
                    i % dim,
                    f.data[i]
                ),
            ));
        }
        if let TargetKind::Labelled(l) = &self.kind {
            if l.len() != f.rows {
                return Err(Error::input(
                    &self.origin,
                    format!("{} target labels for {} target rows", l.len(), f.rows),
                ));
            }
        }
        Ok(())
    }

    /// The units of target mass, `[units, dim]` f64: the rows themselves, or per-class means of
    /// the samples (classes without samples are skipped).
    pub fn units(&self) -> Vec<f64> {
        let f = &self.features;
        match &self.kind {
            TargetKind::Samples | TargetKind::Means => {
                f.data.iter().map(|&x| f64::from(x)).collect()
            }
            TargetKind::Labelled(labels) => {
                let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
                let mut sums = vec![0f64; classes * f.dim];
                let mut counts = vec![0u64; classes];
                // Zipped with the rows, so a label list of the wrong length cannot index past
                // them (`check` reports that mismatch).
                for (row, &l) in f.data.chunks_exact(f.dim).zip(labels) {
                    counts[l as usize] += 1;
                    sums[l as usize * f.dim..(l as usize + 1) * f.dim]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(s, &x)| *s += f64::from(x));
                }
                sums.chunks_exact(f.dim)
                    .zip(&counts)
                    .filter(|(_, &c)| c > 0)
                    .flat_map(|(s, &c)| s.iter().map(move |x| x / c as f64))
                    .collect()
            }
        }
    }
}

/// How many samples to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// The `K` best classes, every sample of each.
    Classes(usize),
    /// `N` samples: whole classes in order, the last one filled by its samples closest to the
    /// target (class-level methods); the `N` best rows (sample-level methods).
    Budget(usize),
}

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
    /// HNSW beam width for kNN (raised to `per_target` when lower).
    pub ef: usize,
    /// Seed (random baselines).
    pub seed: u64,
    /// Use k-means pseudo-classes even when the index has labels.
    pub pseudo_classes: bool,
    /// Scoring backend (kNN, exclusion).
    #[serde(skip)]
    pub device: Device,
}

impl Default for SelectParams {
    fn default() -> Self {
        SelectParams {
            method: Method::Uot,
            amount: Amount::Classes(100),
            p_m: 0.1,
            uot: uot::UotParams::default(),
            per_target: 50,
            exact: false,
            ef: knn::default_ef(50),
            seed: 0,
            pseudo_classes: false,
            device: Device::Auto,
        }
    }
}

/// Where class-level methods get their classes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// The index's labels.
    Labels,
    /// The index's k-means pseudo-classes.
    Kmeans,
}

/// The classes of a corpus: labels or k-means clusters, with counts and raw-feature means.
pub struct Groups<'a> {
    index: &'a Index,
    /// Labels or k-means.
    pub grouping: Grouping,
    assign: &'a [u32],
    /// Samples per class.
    pub counts: Cow<'a, [u64]>,
    /// Means of the raw features, `[classes, dim]`.
    pub means: Cow<'a, [f64]>,
}

impl<'a> Groups<'a> {
    /// The index's labels, or its k-means pseudo-classes when it has no labels or when
    /// `pseudo` is set; an error when neither is available.
    pub fn resolve(index: &'a Index, pseudo: bool) -> Result<Self> {
        if !pseudo {
            if let Some(assign) = index.labels() {
                let counts = Cow::Borrowed(index.class_counts());
                return Ok(Groups {
                    index,
                    grouping: Grouping::Labels,
                    assign,
                    counts,
                    means: Cow::Borrowed(index.class_means()),
                });
            }
        }
        let Some(km) = kmeans::KmeansView::open(index)? else {
            let why = if pseudo {
                "--pseudo-classes was given"
            } else {
                "the index has no labels"
            };
            return Err(Error::invalid(format!(
                "{}: class-level selection needs classes, but {why} and the index has no k-means pseudo-classes (rebuild it with `ptsel build --kmeans K`, or use --method knn)",
                index.path().display()
            )));
        };
        if let Some((r, &c)) = km
            .assign
            .iter()
            .enumerate()
            .find(|(_, &c)| c as usize >= km.k)
        {
            return Err(Error::corrupt(
                index.path(),
                "kmeans_assign",
                format!(
                    "row {r} is assigned to cluster {c} but there are {} clusters",
                    km.k
                ),
            ));
        }
        let members = kmeans::members(km.assign, km.k);
        let dim = index.dim();
        let counts: Vec<u64> = members.iter().map(|m| m.len() as u64).collect();
        let means: Vec<f64> = members
            .par_iter()
            .flat_map_iter(|rows| {
                let mut sum = vec![0f64; dim];
                let mut x = vec![0f32; dim];
                for &r in rows {
                    kmeans::raw_row(index, r as usize, &mut x);
                    sum.iter_mut()
                        .zip(&x)
                        .for_each(|(s, v)| *s += f64::from(*v));
                }
                let n = rows.len().max(1) as f64;
                sum.into_iter().map(move |s| s / n)
            })
            .collect();
        Ok(Groups {
            index,
            grouping: Grouping::Kmeans,
            assign: km.assign,
            counts: Cow::Owned(counts),
            means: Cow::Owned(means),
        })
    }

    /// Number of classes (some may be empty).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Name of class `c` (labels with class names only).
    pub fn name(&self, c: u32) -> Option<&'a str> {
        match self.grouping {
            Grouping::Labels => self.index.class_name(c as usize),
            Grouping::Kmeans => None,
        }
    }

    /// Classes with at least one sample, in class order.
    pub fn non_empty(&self) -> Vec<u32> {
        (0..self.len() as u32)
            .filter(|&c| self.counts[c as usize] > 0)
            .collect()
    }

    /// Rows of each of `classes` (in row order), validating every class value read.
    pub fn members_of(&self, classes: &[u32]) -> Result<Vec<Vec<u32>>> {
        let mut slot = vec![usize::MAX; self.len()];
        for (i, &c) in classes.iter().enumerate() {
            slot[c as usize] = i;
        }
        let mut out = vec![Vec::new(); classes.len()];
        for (r, &c) in self.assign.iter().enumerate() {
            if c == NO_LABEL && self.grouping == Grouping::Labels {
                continue;
            }
            match slot.get(c as usize) {
                Some(&usize::MAX) => {}
                Some(&i) => out[i].push(r as u32),
                None => {
                    let section = if self.grouping == Grouping::Labels {
                        "labels"
                    } else {
                        "kmeans_assign"
                    };
                    return Err(Error::corrupt(
                        self.index.path(),
                        section,
                        format!("row {r} has class {c} but there are {} classes", self.len()),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// One selected sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Corpus row.
    pub row: u32,
    /// Its source class (label or pseudo-class), when known.
    pub class: Option<u32>,
    /// What ranked it: the class importance (uot, similarity), the summed similarity (knn),
    /// 0 (random).
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
}

/// The outcome of a selection.
#[derive(Debug, Clone, PartialEq)]
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
        }
    }
}

/// Run the selection `p` for `target` over `index`, dropping near-duplicates of `exclude`.
pub fn select(
    index: &Index,
    target: &Target,
    exclude: Option<&Exclude>,
    p: &SelectParams,
) -> Result<Selection> {
    target.check(index.dim())?;
    if let Some(e) = exclude {
        check_exclude(index, e)?;
    }
    match (p.method, p.amount) {
        (_, Amount::Classes(0) | Amount::Budget(0)) => {
            return Err(Error::invalid("--classes and --budget must be at least 1"))
        }
        (Method::Knn, Amount::Classes(_)) => {
            return Err(Error::invalid(
                "--method knn selects samples: give --budget N, not --classes",
            ))
        }
        _ => {}
    }
    let mask = match exclude {
        Some(e) => Some(exclusion_mask(index, e, p.device)?),
        None => None,
    };
    let excluded = mask
        .as_ref()
        .map_or(0, |m| m.iter().filter(|&&x| x).count());
    let mut sel = match (p.method, p.amount) {
        (Method::Knn, Amount::Budget(n)) => {
            knn::select(index, &target.features.data, n, mask.as_deref(), p)?
        }
        (Method::Random, Amount::Budget(n)) => {
            baselines::random_rows(index, n, mask.as_deref(), p.seed)?
        }
        (method, amount) => {
            let groups = Groups::resolve(index, p.pseudo_classes)?;
            let units = target.units();
            let (order, importance, solver) = match method {
                Method::Uot => {
                    let (imp, stats) = uot_importance(&groups, &units, p)?;
                    (rank(&groups, &imp), Some(imp), Some(stats))
                }
                Method::Similarity => {
                    let imp = baselines::similarity_importance(&groups, &units);
                    (rank(&groups, &imp), Some(imp), None)
                }
                _ => (baselines::random_classes(&groups, p.seed), None, None),
            };
            let score = |c: u32| importance.as_ref().map_or(0.0, |imp| imp[c as usize]);
            let (picks, selected_classes) =
                take_classes(&groups, &order, &score, amount, mask.as_deref(), &units)?;
            Selection {
                method,
                picks,
                grouping: Some(groups.grouping),
                importance,
                selected_classes,
                solver,
                excluded: 0,
                notes: Vec::new(),
            }
        }
    };
    sel.excluded = excluded;
    Ok(sel)
}

/// UOT importance (DESIGN.md §1, steps 3-5) of every class: row sums of the plan between the
/// L2-normalised class means (`a = 1` per non-empty class) and the target units (`b = 1` each).
/// Empty classes are left out of the problem and get importance 0.
pub fn uot_importance(
    groups: &Groups<'_>,
    target_units: &[f64],
    p: &SelectParams,
) -> Result<(Vec<f64>, SolverStats)> {
    let dim = groups.index.dim();
    let classes = groups.non_empty();
    if classes.is_empty() {
        return Err(Error::invalid(format!(
            "{}: every class is empty",
            groups.index.path().display()
        )));
    }
    let means: Vec<f64> = classes
        .iter()
        .flat_map(|&c| {
            groups.means[c as usize * dim..(c as usize + 1) * dim]
                .iter()
                .copied()
        })
        .collect();
    let (rows, plan) = uot::class_importance(&means, target_units, dim, p.p_m, &p.uot)?;
    let mut importance = vec![0.0; groups.len()];
    for (&c, s) in classes.iter().zip(rows) {
        importance[c as usize] = s;
    }
    let stats = SolverStats {
        source_classes: classes.len(),
        target_units: plan.cols,
        iterations: plan.iterations,
        converged: plan.converged,
        marginal_error: plan.marginal_error,
        log_domain: plan.log_domain,
    };
    Ok((importance, stats))
}

/// Non-empty classes by importance, highest first (ties: lower class first).
fn rank(groups: &Groups<'_>, importance: &[f64]) -> Vec<u32> {
    let mut order = groups.non_empty();
    order.sort_by(|&a, &b| {
        importance[b as usize]
            .total_cmp(&importance[a as usize])
            .then(a.cmp(&b))
    });
    order
}

/// Whole classes in `order` until `amount` is reached; with a budget, the last class is cut to
/// its samples closest to the target (highest cosine to the nearest target unit).
fn take_classes(
    groups: &Groups<'_>,
    order: &[u32],
    score: &dyn Fn(u32) -> f64,
    amount: Amount,
    mask: Option<&[bool]>,
    target_units: &[f64],
) -> Result<(Vec<Pick>, Vec<u32>)> {
    let kept = |r: &u32| !mask.is_some_and(|m| m[*r as usize]);
    let chosen: Vec<u32> = match amount {
        Amount::Classes(k) => {
            if k > order.len() {
                return Err(Error::invalid(format!(
                    "--classes {k}: the index has only {} non-empty classes",
                    order.len()
                )));
            }
            order[..k].to_vec()
        }
        Amount::Budget(n) => {
            let per_class: Vec<Vec<u32>> = match mask {
                Some(_) => groups.members_of(order)?,
                None => Vec::new(),
            };
            let sizes: Vec<u64> = if mask.is_some() {
                per_class
                    .iter()
                    .map(|rows| rows.iter().filter(|r| kept(r)).count() as u64)
                    .collect()
            } else {
                order.iter().map(|&c| groups.counts[c as usize]).collect()
            };
            let available: u64 = sizes.iter().sum();
            if n as u64 > available {
                return Err(Error::invalid(format!(
                    "--budget {n} exceeds the {available} selectable samples of the corpus"
                )));
            }
            let mut total = 0u64;
            let upto = sizes.iter().position(|&s| {
                total += s;
                total >= n as u64
            });
            order[..=upto.unwrap_or(order.len() - 1)].to_vec()
        }
    };
    let members = groups.members_of(&chosen)?;
    let mut picks = Vec::new();
    let budget = match amount {
        Amount::Budget(n) => n,
        Amount::Classes(_) => usize::MAX,
    };
    for (&c, rows) in chosen.iter().zip(&members) {
        let rows: Vec<u32> = rows.iter().copied().filter(kept).collect();
        let left = budget - picks.len();
        let rows = if rows.len() > left {
            closest(groups.index, &rows, target_units, left)
        } else {
            rows
        };
        picks.extend(rows.into_iter().map(|row| Pick {
            row,
            class: Some(c),
            score: score(c),
        }));
    }
    Ok((picks, chosen))
}

/// The `n` rows of `rows` with the highest cosine to their nearest target unit, best first
/// (ties: lower row first).
fn closest(index: &Index, rows: &[u32], target_units: &[f64], n: usize) -> Vec<u32> {
    let dim = index.dim();
    let units: Vec<f32> = target_units
        .chunks_exact(dim)
        .flat_map(|t| {
            let norm = t.iter().map(|x| x * x).sum::<f64>().sqrt();
            t.iter()
                .map(move |x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        })
        .collect();
    let dot = score::simd::kernels().dot_f32;
    let vectors = index.vectors();
    let mut scored: Vec<(f32, u32)> = rows
        .par_iter()
        .map_init(
            || vec![0f32; dim],
            |x, &r| {
                kmeans::unit_row(&vectors, r as usize, dim, x);
                (
                    units
                        .chunks_exact(dim)
                        .map(|t| dot(x, t))
                        .fold(f32::NEG_INFINITY, f32::max),
                    r,
                )
            },
        )
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(n).map(|(_, r)| r).collect()
}

fn check_exclude(index: &Index, e: &Exclude) -> Result<()> {
    if index.metric() != Metric::Cos {
        return Err(Error::invalid(format!("--exclude-near compares cosines: it needs an index built with --metric cos (this one is {})", index.metric().name())));
    }
    if !(-1.0..=1.0).contains(&e.threshold) {
        return Err(Error::invalid(format!(
            "--exclude-threshold must be a cosine in [-1, 1] (got {})",
            e.threshold
        )));
    }
    if e.test.dim != index.dim() {
        return Err(Error::input(
            &e.origin,
            format!(
                "test features are {}-d but the index is {}-d",
                e.test.dim,
                index.dim()
            ),
        ));
    }
    if e.test.rows == 0 {
        return Err(Error::input(&e.origin, "the test set has no rows"));
    }
    Ok(())
}

/// `true` for every corpus row whose cosine to some test feature reaches the threshold.
fn exclusion_mask(index: &Index, e: &Exclude, device: Device) -> Result<Vec<bool>> {
    let scorer = score::scorer_for(index, device)?;
    Ok(scorer
        .max_similarity(&e.test.data)?
        .into_iter()
        .map(|s| s >= e.threshold)
        .collect())
}
