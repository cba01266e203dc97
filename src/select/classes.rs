//! Class-level selection: rank the classes (UOT importance, similarity, random), then keep
//! whole classes until the amount is reached.

use super::manifest::Stopwatch;
use super::{
    baselines, Amount, Excluded, Groups, Method, Phase, Pick, SelectParams, Selection, SolverStats,
    Target,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::score;
use crate::uot;
use rayon::prelude::*;

/// Rank the classes of the engine's index or corpus by `method` for `target` and keep whole
/// classes up to `amount` (rows set in `mask` left out).
pub(super) fn select(
    engine: &Engine,
    target: &Target,
    method: Method,
    amount: Amount,
    mask: Option<&Excluded>,
    p: &SelectParams,
) -> Result<Selection> {
    let groups = Groups::resolve(engine, p.pseudo_classes)?;
    let units = target.units();
    let masses = target.unit_masses();
    let mut notes = Vec::new();
    let mut phases = Vec::new();
    let (order, importance, solver) = match method {
        Method::Uot => {
            let (imp, stats) = match p.graph_k {
                Some(k) => {
                    let (imp, stats, note) = super::uot_knn::class_importance(
                        &groups,
                        &units,
                        masses.as_deref(),
                        k,
                        p,
                        &mut phases,
                    )?;
                    notes.extend(note);
                    (imp, stats)
                }
                None => {
                    let mut clock = Stopwatch::start();
                    let solved = uot_importance(&groups, &units, masses.as_deref(), p)?;
                    phases.push(Phase {
                        name: "solve",
                        seconds: clock.lap(),
                    });
                    solved
                }
            };
            (rank(&groups, &imp), Some(imp), Some(stats))
        }
        Method::Similarity => {
            let imp = baselines::similarity_importance(&groups, &units);
            (rank(&groups, &imp), Some(imp), None)
        }
        _ => (baselines::random_classes(&groups, p.seed), None, None),
    };
    let score = |c: u32| importance.as_ref().map_or(0.0, |imp| imp[c as usize]);
    let (picks, selected_classes) = take_classes(&groups, &order, &score, amount, mask, &units)?;
    Ok(Selection {
        method,
        picks,
        grouping: Some(groups.grouping),
        importance,
        selected_classes,
        solver,
        excluded: 0,
        notes,
        phases,
    })
}

/// UOT importance (docs/ARCHITECTURE.md, "The method", steps 3-5) of every class: row sums of the
/// plan between the L2-normalised class means (`a = 1` per non-empty class) and the target units
/// (masses `target_mass`, or `b = 1` each). Empty classes are left out of the problem and get
/// importance 0.
pub fn uot_importance(
    groups: &Groups<'_>,
    target_units: &[f64],
    target_mass: Option<&[f64]>,
    p: &SelectParams,
) -> Result<(Vec<f64>, SolverStats)> {
    let dim = groups.engine.dim();
    let classes = groups.non_empty();
    if classes.is_empty() {
        return Err(Error::invalid(format!(
            "{}: every class is empty",
            groups.engine.path().display()
        )));
    }
    let means = groups.means_of(&classes);
    let (rows, plan) =
        uot::class_importance(&means, target_units, target_mass, dim, p.p_m, &p.uot)?;
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
        graph: None,
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
    mask: Option<&Excluded>,
    target_units: &[f64],
) -> Result<(Vec<Pick>, Vec<u32>)> {
    let kept = |r: &u32| !mask.is_some_and(|m| m.contains(*r));
    let chosen: Vec<u32> = match amount {
        Amount::Classes(k) => {
            if k > order.len() {
                return Err(Error::invalid(format!(
                    "{k} classes asked for, but the index has only {} non-empty classes",
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
            super::check_budget(n, usize::try_from(available).unwrap_or(usize::MAX))?;
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
            closest(groups.engine, &rows, target_units, left)?
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
fn closest(engine: &Engine, rows: &[u32], target_units: &[f64], n: usize) -> Result<Vec<u32>> {
    let dim = engine.dim();
    let units: Vec<f32> = target_units
        .chunks_exact(dim)
        .flat_map(|t| {
            let norm = t.iter().map(|x| x * x).sum::<f64>().sqrt();
            t.iter()
                .map(move |x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        })
        .collect();
    let dot = score::simd::kernels().dot_f32;
    let mut scored: Vec<(f32, u32)> = rows
        .par_iter()
        .map_init(
            || vec![0f32; dim],
            |x, &r| {
                engine.unit_row(r as usize, x)?;
                Ok((
                    units
                        .chunks_exact(dim)
                        .map(|t| dot(x, t))
                        .fold(f32::NEG_INFINITY, f32::max),
                    r,
                ))
            },
        )
        .collect::<Result<_>>()?;
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(scored.into_iter().take(n).map(|(_, r)| r).collect())
}
