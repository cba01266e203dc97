//! Unbalanced OT restricted to a bipartite graph (docs/ARCHITECTURE.md, "The method", UOT over
//! the kNN graph): the objective of [`super::solve`] with the plan held at zero off the graph's
//! edges, so cost and memory are O(edges).
//!
//! The edges are stored twice, deterministically: by column (target) with rows ascending, and
//! transposed by row with columns ascending. Each update of a row (or a column) sums over its own
//! edges in that fixed order, and rayon splits rows (then columns) between threads, so the
//! output is byte-identical whatever the thread count. Plain scaling keeps `K = exp(-c/eps)`
//! per edge; the log-domain form updates the potentials with a log-sum-exp stabilised by each
//! row's (column's) own maximum.

use super::{pow, rel_change, Domain, UotParams, PLAIN_LIMIT};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Rows handed to one rayon task (large enough that the split costs nothing).
const CHUNK: usize = 1024;

/// A cost on the edges of a bipartite graph between `rows` sources and `cols` targets.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCost {
    rows: usize,
    cols: usize,
    /// Column `j`'s edges are `col_ptr[j]..col_ptr[j + 1]` in `col_rows` and `col_cost`.
    col_ptr: Vec<usize>,
    col_rows: Vec<u32>,
    col_cost: Vec<f64>,
    /// Row `i`'s edges are `row_ptr[i]..row_ptr[i + 1]`: their columns and their position in
    /// the column order.
    row_ptr: Vec<usize>,
    row_cols: Vec<u32>,
    row_edge: Vec<usize>,
}

impl SparseCost {
    /// The graph from each column's `(row, cost)` edges (any order; sorted here by row). Every
    /// row and every column needs at least one edge; a repeated edge and a non-finite cost are
    /// errors.
    pub fn from_columns(rows: usize, columns: Vec<Vec<(u32, f64)>>) -> Result<Self> {
        let cols = columns.len();
        if rows == 0 || cols == 0 || u32::try_from(rows).is_err() {
            return Err(Error::invalid(format!(
                "sparse UOT: {rows} rows x {cols} columns (both must be positive, rows < 2^32)"
            )));
        }
        let mut col_ptr = Vec::with_capacity(cols + 1);
        col_ptr.push(0);
        let nnz: usize = columns.iter().map(Vec::len).sum();
        let (mut col_rows, mut col_cost) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        let mut degree = vec![0usize; rows];
        for (j, mut col) in columns.into_iter().enumerate() {
            if col.is_empty() {
                return Err(Error::invalid(format!(
                    "sparse UOT: column {j} has no edge"
                )));
            }
            col.sort_by_key(|e| e.0);
            for (n, &(i, c)) in col.iter().enumerate() {
                if i as usize >= rows || !c.is_finite() || (n > 0 && col[n - 1].0 == i) {
                    return Err(Error::invalid(format!(
                        "sparse UOT: bad edge ({i}, {j}) with cost {c} ({rows} rows; edges once, costs finite)"
                    )));
                }
                degree[i as usize] += 1;
                col_rows.push(i);
                col_cost.push(c);
            }
            col_ptr.push(col_rows.len());
        }
        if let Some(i) = degree.iter().position(|&d| d == 0) {
            return Err(Error::invalid(format!("sparse UOT: row {i} has no edge")));
        }
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0);
        for d in &degree {
            row_ptr.push(row_ptr[row_ptr.len() - 1] + d);
        }
        let mut fill = row_ptr[..rows].to_vec();
        let (mut row_cols, mut row_edge) = (vec![0u32; nnz], vec![0usize; nnz]);
        for j in 0..cols {
            for e in col_ptr[j]..col_ptr[j + 1] {
                let slot = &mut fill[col_rows[e] as usize];
                row_cols[*slot] = j as u32;
                row_edge[*slot] = e;
                *slot += 1;
            }
        }
        Ok(SparseCost {
            rows,
            cols,
            col_ptr,
            col_rows,
            col_cost,
            row_ptr,
            row_cols,
            row_edge,
        })
    }

    /// The complete graph of a dense `[rows, cols]` cost.
    pub fn dense(cost: &[f64], rows: usize, cols: usize) -> Result<Self> {
        if cost.len() != rows * cols {
            return Err(Error::invalid("sparse UOT: cost is not rows x cols"));
        }
        let columns = (0..cols)
            .map(|j| (0..rows).map(|i| (i as u32, cost[i * cols + j])).collect())
            .collect();
        Self::from_columns(rows, columns)
    }

    /// Source rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Target columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Edges.
    pub fn edges(&self) -> usize {
        self.col_rows.len()
    }
    /// Column `j`'s edges: rows ascending and their costs.
    pub fn column(&self, j: usize) -> (&[u32], &[f64]) {
        let r = self.col_ptr[j]..self.col_ptr[j + 1];
        (&self.col_rows[r.clone()], &self.col_cost[r])
    }
}

/// The objective's terms at the returned plan `T`.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Objective {
    /// `<T, C>`.
    pub transport: f64,
    /// `eps * sum T (log T - 1)`.
    pub entropy: f64,
    /// `tau_s KL(T 1 | a)`, generalised KL (`sum x log(x/y) - x + y`).
    pub source_kl: f64,
    /// `tau_t KL(T^T 1 | b)`.
    pub target_kl: f64,
    /// Their sum.
    pub total: f64,
}

/// A plan on the graph's edges and how the solver got there.
#[derive(Debug, Clone, PartialEq)]
pub struct SparsePlan {
    /// The plan per edge, in the graph's column order.
    pub plan: Vec<f64>,
    /// Row sums `T 1` (the importance of each source row).
    pub row_sums: Vec<f64>,
    /// Column sums `T^T 1`.
    pub col_sums: Vec<f64>,
    /// The potentials `alpha = log u` (rows) and `beta = log v` (columns): a warm start.
    pub alpha: Vec<f64>,
    /// See `alpha`.
    pub beta: Vec<f64>,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached before `max_iter`.
    pub converged: bool,
    /// Largest `|T^T 1 - b|`.
    pub marginal_error: f64,
    /// Whether the log-domain updates were used.
    pub log_domain: bool,
    /// The objective's terms.
    pub objective: Objective,
}

/// Solve the problem on `g` with marginals `a` (rows) and `b` (columns), from `u = 1/rows`,
/// `v = 1/cols` as the dense solver, or from the potentials `warm = (alpha, beta)` of an earlier
/// plan; the stop rule and the choice of [`Domain`] are the dense solver's.
pub fn solve_sparse(
    g: &SparseCost,
    a: &[f64],
    b: &[f64],
    p: &UotParams,
    warm: Option<(&[f64], &[f64])>,
) -> Result<SparsePlan> {
    if a.len() != g.rows || b.len() != g.cols {
        return Err(Error::invalid(format!(
            "sparse UOT: {} x {} marginals for a {} x {} graph",
            a.len(),
            b.len(),
            g.rows,
            g.cols
        )));
    }
    super::check_params(a, b, p)?;
    if let Some((al, be)) = warm {
        if al.len() != g.rows || be.len() != g.cols || al.iter().chain(be).any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "sparse UOT: warm start of the wrong shape or not finite",
            ));
        }
    }
    let max_scaled = g.col_cost.iter().fold(0.0f64, |m, c| m.max(c.abs())) / p.eps;
    let s = Setup::new(g, a, b, p, warm);
    let (alpha, beta, iterations, converged, log_domain) = match p.domain {
        Domain::Log => s.log(),
        Domain::Plain => s.plain().ok_or_else(|| {
            Error::invalid(format!(
                "UOT: the plain kernel under- or overflowed (eps = {} is too small for it; use the log domain)",
                p.eps
            ))
        })?,
        Domain::Auto if max_scaled > PLAIN_LIMIT => s.log(),
        Domain::Auto => s.plain().unwrap_or_else(|| s.log()),
    };
    let plan = s.finish(alpha, beta, iterations, converged, log_domain);
    super::check_finite(&plan.plan, p)?;
    Ok(plan)
}

/// `(alpha, beta, iterations, converged, log_domain)`.
type Solved = (Vec<f64>, Vec<f64>, usize, bool, bool);

struct Setup<'a> {
    g: &'a SparseCost,
    a: &'a [f64],
    b: &'a [f64],
    p: &'a UotParams,
    fi: (f64, f64),
    warm: Option<(&'a [f64], &'a [f64])>,
    /// `c / eps` per edge, in row order.
    row_scaled: Vec<f64>,
}

impl<'a> Setup<'a> {
    fn new(
        g: &'a SparseCost,
        a: &'a [f64],
        b: &'a [f64],
        p: &'a UotParams,
        warm: Option<(&'a [f64], &'a [f64])>,
    ) -> Self {
        let row_scaled = g.row_edge.iter().map(|&e| g.col_cost[e] / p.eps).collect();
        Setup {
            g,
            a,
            b,
            p,
            fi: (
                p.tau_source / (p.tau_source + p.eps),
                p.tau_target / (p.tau_target + p.eps),
            ),
            warm,
            row_scaled,
        }
    }

    fn start(&self) -> (Vec<f64>, Vec<f64>) {
        match self.warm {
            Some((al, be)) => (al.to_vec(), be.to_vec()),
            None => (
                vec![-(self.g.rows as f64).ln(); self.g.rows],
                vec![-(self.g.cols as f64).ln(); self.g.cols],
            ),
        }
    }

    /// Plain scaling; `None` on a non-finite value or a zero sum.
    fn plain(&self) -> Option<Solved> {
        let g = self.g;
        let (fi_s, fi_t) = self.fi;
        let row_k: Vec<f64> = self.row_scaled.iter().map(|c| (-c).exp()).collect();
        let col_k: Vec<f64> = g.col_cost.iter().map(|c| (-c / self.p.eps).exp()).collect();
        let (al, be) = self.start();
        let warm = self.warm.is_some();
        let mut u: Vec<f64> = al.iter().map(|x| x.exp()).collect();
        let mut v: Vec<f64> = be.iter().map(|x| x.exp()).collect();
        if !warm {
            u.fill(1.0 / g.rows as f64);
            v.fill(1.0 / g.cols as f64);
        }
        let (mut u_prev, mut v_prev) = (u.clone(), v.clone());
        let mut iterations = 0;
        let mut converged = false;
        for _ in 0..self.p.max_iter {
            iterations += 1;
            u_prev.copy_from_slice(&u);
            v_prev.copy_from_slice(&v);
            update(&mut u, &g.row_ptr, &g.row_cols, &row_k, &v, self.a, fi_s);
            update(&mut v, &g.col_ptr, &g.col_rows, &col_k, &u, self.b, fi_t);
            if u.iter().chain(&v).any(|x| !(x.is_finite() && *x > 0.0)) {
                return None;
            }
            if 0.5 * (rel_change(&u, &u_prev) + rel_change(&v, &v_prev)) < self.p.tol {
                converged = true;
                break;
            }
        }
        let log = |x: Vec<f64>| x.into_iter().map(f64::ln).collect();
        Some((log(u), log(v), iterations, converged, false))
    }

    /// Log-domain updates of the potentials.
    fn log(&self) -> Solved {
        let g = self.g;
        let (fi_s, fi_t) = self.fi;
        let col_scaled: Vec<f64> = g.col_cost.iter().map(|c| c / self.p.eps).collect();
        let (log_a, log_b): (Vec<f64>, Vec<f64>) = (
            self.a.iter().map(|x| x.ln()).collect(),
            self.b.iter().map(|x| x.ln()).collect(),
        );
        let (mut alpha, mut beta) = self.start();
        let mut iterations = 0;
        let mut converged = false;
        for _ in 0..self.p.max_iter {
            iterations += 1;
            let da = update_log(
                &mut alpha,
                &g.row_ptr,
                &g.row_cols,
                &self.row_scaled,
                &beta,
                &log_a,
                fi_s,
            );
            let db = update_log(
                &mut beta,
                &g.col_ptr,
                &g.col_rows,
                &col_scaled,
                &alpha,
                &log_b,
                fi_t,
            );
            if 0.5 * (da + db) < self.p.tol {
                converged = true;
                break;
            }
        }
        (alpha, beta, iterations, converged, true)
    }

    fn finish(
        &self,
        alpha: Vec<f64>,
        beta: Vec<f64>,
        iterations: usize,
        converged: bool,
        log_domain: bool,
    ) -> SparsePlan {
        let (g, p) = (self.g, self.p);
        let mut plan = vec![0.0; g.edges()];
        plan.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(n, chunk)| {
                for (t, e) in chunk.iter_mut().zip(n * CHUNK..) {
                    *t = (alpha[g.col_rows[e] as usize] + beta[col_of(g, e)]
                        - g.col_cost[e] / p.eps)
                        .exp();
                }
            });
        let col_sums: Vec<f64> = (0..g.cols)
            .map(|j| plan[g.col_ptr[j]..g.col_ptr[j + 1]].iter().sum())
            .collect();
        let row_sums: Vec<f64> = (0..g.rows)
            .into_par_iter()
            .map(|i| {
                g.row_edge[g.row_ptr[i]..g.row_ptr[i + 1]]
                    .iter()
                    .map(|&e| plan[e])
                    .sum()
            })
            .collect();
        let marginal_error = col_sums
            .iter()
            .zip(self.b)
            .map(|(s, b)| (s - b).abs())
            .fold(0.0, f64::max);
        let kl = |x: &[f64], y: &[f64]| -> f64 {
            x.iter()
                .zip(y)
                .map(|(x, y)| {
                    if *x > 0.0 {
                        x * (x / y).ln() - x + y
                    } else {
                        *y
                    }
                })
                .sum()
        };
        let (mut transport, mut entropy) = (0.0, 0.0);
        for (j, w) in g.col_ptr.windows(2).enumerate() {
            for e in w[0]..w[1] {
                let t = plan[e];
                transport += t * g.col_cost[e];
                if t > 0.0 {
                    let log_t = alpha[g.col_rows[e] as usize] + beta[j] - g.col_cost[e] / p.eps;
                    entropy += t * (log_t - 1.0);
                }
            }
        }
        let entropy = p.eps * entropy;
        let source_kl = p.tau_source * kl(&row_sums, self.a);
        let target_kl = p.tau_target * kl(&col_sums, self.b);
        SparsePlan {
            plan,
            row_sums,
            col_sums,
            alpha,
            beta,
            iterations,
            converged,
            marginal_error,
            log_domain,
            objective: Objective {
                transport,
                entropy,
                source_kl,
                target_kl,
                total: transport + entropy + source_kl + target_kl,
            },
        }
    }
}

/// The column of edge `e` (in column order).
fn col_of(g: &SparseCost, e: usize) -> usize {
    g.col_ptr.partition_point(|&p| p <= e) - 1
}

/// `x_i = (m_i / sum_{e in i} k_e y_{idx_e})^fi` for every `i`, each sum in edge order.
fn update(x: &mut [f64], ptr: &[usize], idx: &[u32], k: &[f64], y: &[f64], m: &[f64], fi: f64) {
    x.par_chunks_mut(CHUNK).enumerate().for_each(|(n, chunk)| {
        for (xi, i) in chunk.iter_mut().zip(n * CHUNK..) {
            let r = ptr[i]..ptr[i + 1];
            let s: f64 = idx[r.clone()]
                .iter()
                .zip(&k[r])
                .map(|(&j, k)| k * y[j as usize])
                .sum();
            *xi = pow(m[i] / s, fi);
        }
    });
}

/// `x_i = fi (log m_i - LSE_{e in i}(y_{idx_e} - c_e))` for every `i`, stabilised by each `i`'s
/// own maximum; returns `max |dx|`.
fn update_log(
    x: &mut [f64],
    ptr: &[usize],
    idx: &[u32],
    c: &[f64],
    y: &[f64],
    log_m: &[f64],
    fi: f64,
) -> f64 {
    x.par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(n, chunk)| {
            let mut change = 0.0f64;
            for (xi, i) in chunk.iter_mut().zip(n * CHUNK..) {
                let r = ptr[i]..ptr[i + 1];
                let terms = || {
                    idx[r.clone()]
                        .iter()
                        .zip(&c[r.clone()])
                        .map(|(&j, c)| y[j as usize] - c)
                };
                let max = terms().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + terms().map(|t| (t - max).exp()).sum::<f64>().ln();
                let new = fi * (log_m[i] - lse);
                change = change.max((new - *xi).abs());
                *xi = new;
            }
            change
        })
        .reduce(|| 0.0, f64::max)
}
