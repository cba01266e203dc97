//! UOT over a kNN graph (docs/ARCHITECTURE.md, "The method", UOT over the kNN graph): the
//! paper's objective with the plan restricted to each target unit's nearest source rows.
//!
//! Sample level ([`super::Method::UotKnn`]): every target sample is linked to its `per_target`
//! nearest corpus rows found by the index's search (optionally each touched row to its
//! `reverse_k` nearest targets), the cost is `(1 - cos) / p_m`, and a row's importance is its
//! plan row sum. Class level (`graph_k`): every target unit is linked to its `K` nearest class
//! means, in place of the dense plan.

use super::manifest::Stopwatch;
use super::order::{self, Stream};
use super::{
    Draw, Excluded, GraphStats, Groups, Method, Phase, Pick, SelectParams, Selection, SolverStats,
    Target,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::hnsw::NO_NODE;
use crate::score::{self, cpu::CpuScorer, Neighbors, Scorer};
use crate::store::Vectors;
use crate::uot::{self, SparseCost, SparsePlan};
use rayon::prelude::*;

/// Median kernel at the farthest kept neighbour, relative to the nearest, above which the
/// summary says that the graph may have cut off much of the plan (the plan has not decayed by
/// an order of magnitude where the graph ends).
pub const FLAT_NOTE: f64 = 0.1;

/// Pool rows around a touched row whose similarity makes its density (`dedup_kde`), itself
/// included (TSDS's choice).
pub const DENSITY_NEIGHBOURS: usize = 32;

/// Select `budget` rows for the target samples (raw features) by their mass in the plan over
/// the kNN graph; rows in `mask` are dropped from the graph first. Neighbours are `hits` when a
/// search elsewhere found them, else the engine's search as for kNN. A labelled target gives
/// column masses `b_j = w_c / n_c` (scaled to one unit per sample in all) and each class its
/// share of the budget.
pub(super) fn select(
    engine: &Engine,
    target: &Target,
    budget: usize,
    mask: Option<&Excluded>,
    p: &SelectParams,
    hits: Option<Neighbors>,
) -> Result<Selection> {
    if engine.metric() != Metric::Cos {
        return Err(Error::invalid(format!("uot-knn's cost is 1 - cos: it needs an index built with the cos metric (this one is {})", engine.metric().name())));
    }
    if p.reverse_k == Some(0) {
        return Err(Error::invalid("reverse_k must be at least 1"));
    }
    uot::check_p_m(p.p_m)?;
    let queries = &target.features.data;
    let classes = target.classes();
    let mut clock = Stopwatch::start();
    let mut phases = Vec::new();
    let mut lap = |name: &'static str| {
        phases.push(Phase {
            name,
            seconds: clock.lap(),
        })
    };
    let (hits, mut notes) = super::knn::neighbours(engine, queries, p, hits, "uot-knn")?;
    lap("search");
    let nq = hits.ids.len() / hits.k.max(1);
    // Forward edges: (global row, target, cost), rows in `mask` dropped.
    let mut edges: Vec<(u32, u32, f64)> = Vec::with_capacity(hits.ids.len());
    for (j, (ids, scores)) in hits
        .ids
        .chunks_exact(hits.k)
        .zip(hits.scores.chunks_exact(hits.k))
        .enumerate()
    {
        for (&r, &s) in ids.iter().zip(scores) {
            if r != NO_NODE && s.is_finite() && !mask.is_some_and(|m| m.contains(r)) {
                edges.push((r, j as u32, (1.0 - f64::from(s)) / p.p_m));
            }
        }
    }
    let mut touched: Vec<u32> = edges.iter().map(|e| e.0).collect();
    touched.sort_unstable();
    touched.dedup();
    if let Some(k2) = p.reverse_k {
        edges.extend(reverse_edges(engine, queries, &touched, k2, p.p_m)?);
        lap("reverse");
    }
    let compact = |r: u32| touched.binary_search(&r).unwrap_or(0) as u32;
    let mut columns: Vec<Vec<(u32, f64)>> = vec![Vec::new(); nq];
    for &(r, j, c) in &edges {
        columns[j as usize].push((compact(r), c));
    }
    for col in &mut columns {
        // A reverse edge may repeat a forward one: keep the forward one (pushed first).
        col.sort_by_key(|e| e.0);
        col.dedup_by_key(|e| e.0);
    }
    if let Some(j) = columns.iter().position(Vec::is_empty) {
        return Err(Error::invalid(format!(
            "uot-knn: target sample {j} has no neighbour left (all excluded?)"
        )));
    }
    if budget > touched.len() {
        return Err(Error::invalid(format!(
            "a budget of {budget} exceeds the {} corpus rows the graph touches; raise per_target (or reverse_k)",
            touched.len()
        )));
    }
    let g = SparseCost::from_columns(touched.len(), columns)?;
    let a = match p.dedup_kde {
        Some(c0) => density_masses(engine, &touched, c0, p)?,
        None => vec![1.0; g.rows()],
    };
    lap("graph");
    let b: Vec<f64> = match &classes {
        Some(c) => c
            .of_row
            .iter()
            .map(|&k| nq as f64 * c.shares[k] / c.counts[k] as f64)
            .collect(),
        None => vec![1.0; g.cols()],
    };
    let plan = uot::solve_sparse(&g, &a, &b, &p.uot, None)?;
    lap("solve");
    let total = engine.rows() - mask.map_or(0, Excluded::len);
    let (mut stats, note) = graph_stats(&g, &plan, total, p);
    notes.extend(note);
    let mut order = match p.draw {
        Draw::Top => order::top(&plan.row_sums, touched.len()),
        Draw::Sample => order::draw(&plan.row_sums, touched.len(), p.seed, Stream::Rows),
    };
    let mut owner = None;
    if let Some(c) = &classes {
        let sample = (p.draw == Draw::Sample).then_some(p.seed);
        let (by_class, quota_of) = super::quotas::order(&g, &plan, c, budget, &order, sample);
        order = by_class;
        owner = Some(quota_of);
    }
    let (chosen, skipped) = match p.dedup_greedy {
        Some(c0) => greedy(engine, &touched, &order, budget, c0)?,
        None => (order.into_iter().take(budget).collect(), 0),
    };
    if let (Some(c), Some(owner)) = (&classes, &owner) {
        // Counted on the rows kept, after de-duplication dropped some.
        let mut taken = vec![0usize; c.labels.len()];
        chosen
            .iter()
            .filter_map(|&r| owner[r])
            .for_each(|k| taken[k] += 1);
        let parts: Vec<String> = c
            .labels
            .iter()
            .zip(&taken)
            .map(|(l, n)| format!("{l}: {n}"))
            .collect();
        notes.push(format!(
            "uot-knn: rows per target class by its quota (label: rows): {}",
            parts.join(", ")
        ));
    }
    if chosen.len() < budget {
        notes.push(format!(
            "uot-knn: only {} rows are left after de-duplication for a budget of {budget}",
            chosen.len()
        ));
    }
    if let Some(graph) = stats.graph.as_mut() {
        graph.kde_downweighted = p.dedup_kde.map(|_| a.iter().filter(|&&m| m < 1.0).count());
        graph.greedy_skipped = p.dedup_greedy.map(|_| skipped);
    }
    let picks = chosen
        .into_iter()
        .map(|i| {
            let row = touched[i];
            Ok(Pick {
                row,
                class: engine.label(row as usize)?,
                score: plan.row_sums[i],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    lap("rank");
    let mut sel = Selection::samples(Method::UotKnn, picks, notes);
    sel.solver = Some(stats);
    sel.phases = phases;
    Ok(sel)
}

/// The source mass of each of `rows` (global, ascending) with TSDS's density de-duplication:
/// `1 / rho` with `rho = sum max(0, 1 - (1 - cos) / (1 - c0))` over the row's
/// [`DENSITY_NEIGHBOURS`] nearest pool rows (itself included, so `rho >= 1`), found by the
/// same search as the target samples' neighbours.
fn density_masses(engine: &Engine, rows: &[u32], c0: f32, p: &SelectParams) -> Result<Vec<f64>> {
    let dim = engine.dim();
    let mut vectors = vec![0f32; rows.len() * dim];
    for (&r, x) in rows.iter().zip(vectors.chunks_exact_mut(dim)) {
        engine.unit_row(r as usize, x)?;
    }
    let k = DENSITY_NEIGHBOURS.min(engine.rows());
    let search = SelectParams {
        per_target: k,
        ..*p
    }
    .knn_search(engine)?;
    let near = engine.search(&vectors, k, &search.opts)?;
    let width = 1.0 - f64::from(c0);
    Ok(near
        .scores
        .chunks_exact(k)
        .map(|s| {
            let rho: f64 = s
                .iter()
                .filter(|c| c.is_finite())
                .map(|&c| (1.0 - (1.0 - f64::from(c)) / width).max(0.0))
                .sum();
            1.0 / rho.max(1.0)
        })
        .collect())
}

/// The first `budget` of `order` (indices into `rows`) with every row whose cosine to a row
/// already kept is at least `c0` skipped; and how many were skipped.
fn greedy(
    engine: &Engine,
    rows: &[u32],
    order: &[usize],
    budget: usize,
    c0: f32,
) -> Result<(Vec<usize>, usize)> {
    let dim = engine.dim();
    let dot = score::simd::kernels().dot_f32;
    let mut kept: Vec<usize> = Vec::with_capacity(budget);
    let mut kept_vectors: Vec<f32> = Vec::with_capacity(budget * dim);
    let mut x = vec![0f32; dim];
    let mut skipped = 0;
    for &i in order {
        if kept.len() == budget {
            break;
        }
        engine.unit_row(rows[i] as usize, &mut x)?;
        if kept_vectors.par_chunks_exact(dim).any(|k| dot(k, &x) >= c0) {
            skipped += 1;
            continue;
        }
        kept.push(i);
        kept_vectors.extend_from_slice(&x);
    }
    Ok((kept, skipped))
}

/// Each of `rows` linked to its `k2` nearest `queries` by exact cosine: `(row, target, cost)`.
/// The rows, in blocks, are the queries of the exact scorer over the unit targets (AMX tiles
/// where the CPU has them, float64 ranking whichever kernel).
fn reverse_edges(
    engine: &Engine,
    queries: &[f32],
    rows: &[u32],
    k2: usize,
    p_m: f64,
) -> Result<Vec<(u32, u32, f64)>> {
    /// Rows scored per call (a parallel task each).
    const BLOCK: usize = 1024;
    let dim = engine.dim();
    let units: Vec<f32> = queries.chunks_exact(dim).flat_map(score::unit).collect();
    let k = k2.min(units.len() / dim);
    let scorer = CpuScorer::from_vectors(Vectors::F32(&units), dim, Metric::Ip)?;
    let per_block: Vec<Vec<(u32, u32, f64)>> = rows
        .par_chunks(BLOCK)
        .map(|block| {
            let mut x = vec![0f32; block.len() * dim];
            for (&r, out) in block.iter().zip(x.chunks_exact_mut(dim)) {
                engine.unit_row(r as usize, out)?;
            }
            let nn = scorer.top_k(&x, k)?;
            Ok(block
                .iter()
                .enumerate()
                .flat_map(|(i, &r)| {
                    nn.ids_of(i)
                        .iter()
                        .zip(nn.scores_of(i))
                        .map(move |(&j, &c)| (r, j, (1.0 - f64::from(c)) / p_m))
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    Ok(per_block.into_iter().flatten().collect())
}

/// The summary's graph block and, when the median tail is large, a note. The tail of target
/// `j` estimates the mass the graph cut off: `(R - k_j) a_max^fi_s (v_j exp(-c_j,max /
/// eps))^(1 - fi_s) / b_j` (here `a = b = 1`), with `R` the source rows of the whole problem.
fn graph_stats(
    g: &SparseCost,
    plan: &SparsePlan,
    total_rows: usize,
    p: &SelectParams,
) -> (SolverStats, Option<String>) {
    let eps = p.uot.eps;
    let fi_s = p.uot.tau_source / (p.uot.tau_source + eps);
    let mut tails: Vec<f64> = (0..g.cols())
        .map(|j| {
            let (rows, cost) = g.column(j);
            let c_max = cost.iter().fold(f64::NEG_INFINITY, |m, c| m.max(*c));
            let cut = total_rows.saturating_sub(rows.len()) as f64;
            cut * ((1.0 - fi_s) * (plan.beta[j] - c_max / eps)).exp()
        })
        .collect();
    tails.sort_by(f64::total_cmp);
    let tail_median = tails[tails.len() / 2];
    let tail_max = tails[tails.len() - 1];
    let mut flat: Vec<f64> = (0..g.cols())
        .map(|j| {
            let (_, cost) = g.column(j);
            let (lo, hi) = cost
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), c| {
                    (l.min(*c), h.max(*c))
                });
            (-(hi - lo) / eps).exp()
        })
        .collect();
    flat.sort_by(f64::total_cmp);
    let kth_kernel_median = flat[flat.len() / 2];
    let stats = SolverStats {
        source_classes: g.rows(),
        target_units: g.cols(),
        iterations: plan.iterations,
        converged: plan.converged,
        marginal_error: plan.marginal_error,
        log_domain: plan.log_domain,
        graph: Some(GraphStats {
            edges: g.edges(),
            touched_rows: g.rows(),
            objective: plan.objective,
            tail_median,
            tail_max,
            kth_kernel_median,
            kde_downweighted: None,
            greedy_skipped: None,
        }),
    };
    let note = (kth_kernel_median > FLAT_NOTE).then(|| {
        format!(
            "sparse UOT: at the median target the kernel at the farthest kept neighbour is still {kth_kernel_median:.3} of the nearest's, so the graph likely cut off part of the plan; raise the neighbours per target (per_target / graph_k) or lower eps"
        )
    });
    (stats, note)
}

/// Class-level UOT over each target unit's `k` nearest classes (by cost), target masses
/// `target_mass` (or 1 each): the importance of
/// every class (0 for classes no edge touches), the solver's statistics and a note; the time of
/// the graph and of the solve go to `phases`.
pub(super) fn class_importance(
    groups: &Groups<'_>,
    target_units: &[f64],
    target_mass: Option<&[f64]>,
    k: usize,
    p: &SelectParams,
    phases: &mut Vec<Phase>,
) -> Result<(Vec<f64>, SolverStats, Option<String>)> {
    let mut clock = Stopwatch::start();
    let dim = groups.engine.dim();
    let classes = groups.non_empty();
    if k == 0 || k > classes.len() {
        return Err(Error::invalid(format!(
            "graph_k = {k} must be between 1 and the number of non-empty classes ({})",
            classes.len()
        )));
    }
    uot::check_p_m(p.p_m)?;
    let rows = classes.len();
    let mut columns = nearest_classes(&groups.means_of(&classes), target_units, dim, k, p.p_m)?;
    let mut touched: Vec<u32> = columns.iter().flatten().map(|e| e.0).collect();
    touched.sort_unstable();
    touched.dedup();
    for col in &mut columns {
        col.iter_mut()
            .for_each(|e| e.0 = touched.binary_search(&e.0).unwrap_or(0) as u32);
    }
    let g = SparseCost::from_columns(touched.len(), columns)?;
    phases.push(Phase {
        name: "graph",
        seconds: clock.lap(),
    });
    let b = target_mass.map_or_else(|| vec![1.0; g.cols()], <[f64]>::to_vec);
    let plan = uot::solve_sparse(&g, &vec![1.0; g.rows()], &b, &p.uot, None)?;
    phases.push(Phase {
        name: "solve",
        seconds: clock.lap(),
    });
    let mut importance = vec![0.0; groups.len()];
    for (&i, s) in touched.iter().zip(&plan.row_sums) {
        importance[classes[i as usize] as usize] = *s;
    }
    let (stats, note) = graph_stats(&g, &plan, rows, p);
    Ok((importance, stats, note))
}

/// Means searched beyond `k` in f32 for [`nearest_classes`]' f64 cut.
const NEAREST_SLACK: usize = 8;

/// Each target unit's `k` nearest of the `means` as its column of edges `(mean, cost)`, cheapest
/// first (ties: lower mean first), with the dense path's cost `(1 - cos) / p_m` in f64. The
/// search runs on the unit means rounded to f32 (the matrix units, float64 ranking) for
/// [`NEAREST_SLACK`] more than `k`, and the f64 costs pick the `k`: near-ties at the cut that
/// f32 rounding could swap are settled in f64. Memory and time stay those of a search: 100k
/// means x 100k targets never form a dense cost matrix.
fn nearest_classes(
    means: &[f64],
    target_units: &[f64],
    dim: usize,
    k: usize,
    p_m: f64,
) -> Result<Vec<Vec<(u32, f64)>>> {
    /// Target units per call: bounds the scorer's per-query candidate lists.
    const BLOCK: usize = 8192;
    let (s, t) = (
        uot::unit_rows(means, dim),
        uot::unit_rows(target_units, dim),
    );
    let s32: Vec<f32> = s.iter().map(|&x| x as f32).collect();
    let scorer = CpuScorer::from_vectors(Vectors::F32(&s32), dim, Metric::Ip)?;
    let mut columns = Vec::with_capacity(t.len() / dim);
    for block in t.chunks(BLOCK * dim) {
        let q: Vec<f32> = block.iter().map(|&x| x as f32).collect();
        let nn = scorer.top_k(&q, (k + NEAREST_SLACK).min(s32.len() / dim))?;
        columns.par_extend(block.par_chunks_exact(dim).enumerate().map(|(j, tj)| {
            let mut col: Vec<(u32, f64)> = nn
                .ids_of(j)
                .iter()
                .map(|&i| {
                    let si = &s[i as usize * dim..(i as usize + 1) * dim];
                    (i, (1.0 - uot::dot(si, tj)) / p_m)
                })
                .collect();
            col.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            col.truncate(k);
            col
        }));
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two means whose cosines to the target round to the same f32 (1.0): the f64 costs pick
    /// the nearer one, not the lower index.
    #[test]
    fn nearest_classes_settles_f32_ties_in_f64() {
        let at = |theta: f64| [theta.cos(), theta.sin()];
        let means: Vec<f64> = [at(2e-6), at(1e-6), at(1.5)].concat();
        let cols = nearest_classes(&means, &[1.0, 0.0], 2, 1, 1.0).unwrap();
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].len(), 1);
        assert_eq!(cols[0][0].0, 1, "{cols:?}");
        let all = nearest_classes(&means, &[1.0, 0.0], 2, 3, 1.0).unwrap();
        let order: Vec<u32> = all[0].iter().map(|e| e.0).collect();
        assert_eq!(order, [1, 0, 2]);
    }
}
