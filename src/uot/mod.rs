//! Entropic unbalanced optimal transport between source and target classes
//! (docs/ARCHITECTURE.md, "The method", step 4): minimise
//! `<T,M> + eps*sum T log T + tau_s KL(T1 | a) + tau_t KL(T^T 1 | b)` by generalised
//! Sinkhorn-Knopp scaling, computed in f64.
//!
//! Two forms of the same iteration: the plain one scales `u`, `v` against `K = exp(-M/eps)`
//! (fast, the reference of POT's `sinkhorn_knopp_unbalanced`); the log-domain one updates the
//! dual potentials `log u`, `log v` with log-sum-exp and never forms `K`, so it survives a small
//! `eps` where `K` underflows. [`Domain::Auto`] picks the plain form unless `max(M)/eps` leaves
//! the range where `exp` is exact (or the plain form hits a non-finite value), then the log form.
//!
//! The module stands on its own (scoring and selection both use it): [`plain`] holds the
//! plain iteration's passes compiled per instruction set, [`log`] the log-domain one.

mod log;
mod plain;
pub mod sparse;

pub use sparse::{solve_sparse, Objective, SparseCost, SparsePlan};

use crate::error::{Error, Result};

/// Largest `M/eps` for which the plain kernel is used under [`Domain::Auto`]: `exp(-700)` is
/// still a normal f64 (the smallest normal is about `exp(-708)`).
pub const PLAIN_LIMIT: f64 = 700.0;

/// Which form of the iteration to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Plain scaling unless `max(M)/eps > PLAIN_LIMIT` or it under/overflows; log domain then.
    #[default]
    Auto,
    /// Plain scaling only (an error when it under/overflows).
    Plain,
    /// Log-domain updates of the dual potentials.
    Log,
}

parse_by_name!(Domain, "UOT domain", { "auto" => Domain::Auto, "plain" => Domain::Plain, "log" => Domain::Log });

/// Solver parameters; defaults are the paper's (`eps = 1`, `tau_s = 1`, `tau_t = 100`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct UotParams {
    /// Entropic regularisation `eps`.
    pub eps: f64,
    /// Source marginal relaxation `tau_s` (loose: source mass may vanish).
    pub tau_source: f64,
    /// Target marginal relaxation `tau_t` (near-hard).
    pub tau_target: f64,
    /// Iteration cap.
    pub max_iter: usize,
    /// Stop when the relative change of `u` and `v` falls below this.
    pub tol: f64,
    /// Plain or log-domain iteration.
    pub domain: Domain,
}

impl UotParams {
    /// The paper's parameters: `eps` 1, `tau_s` 1, `tau_t` 100, at most 1000 iterations to a
    /// relative change of 1e-6, the log domain only where the plain kernel would fail.
    pub const DEFAULT: UotParams = UotParams {
        eps: 1.0,
        tau_source: 1.0,
        tau_target: 100.0,
        max_iter: 1000,
        tol: 1e-6,
        domain: Domain::Auto,
    };
}

impl Default for UotParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A transport plan and how the solver got there.
#[derive(Debug, Clone, PartialEq)]
pub struct UotPlan {
    /// Source classes (rows).
    pub rows: usize,
    /// Target classes (columns).
    pub cols: usize,
    /// `[rows, cols]` plan `T = diag(u) K diag(v)`.
    pub plan: Vec<f64>,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached before `max_iter`.
    pub converged: bool,
    /// Largest absolute deviation of the plan's column sums from `b` (the near-hard marginal).
    pub marginal_error: f64,
    /// Whether the log-domain (stabilised) updates were used.
    pub log_domain: bool,
}

impl UotPlan {
    /// Row sums `T 1`: the importance of each source class.
    pub fn row_sums(&self) -> Vec<f64> {
        self.plan
            .chunks_exact(self.cols)
            .map(|r| r.iter().sum())
            .collect()
    }
}

/// An error unless `p_m`, the divisor of the cost `(1 - cos) / p_m`, is positive and finite.
pub fn check_p_m(p_m: f64) -> Result<()> {
    if p_m > 0.0 && p_m.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "p_m must be positive and finite (got {p_m})"
        )))
    }
}

/// Solve the problem with cost `[rows, cols]` and marginals `a` (rows) and `b` (cols).
pub fn solve(cost: &[f64], a: &[f64], b: &[f64], p: &UotParams) -> Result<UotPlan> {
    let (rows, cols) = (a.len(), b.len());
    if rows == 0 || cols == 0 || cost.len() != rows * cols {
        return Err(Error::invalid(format!(
            "UOT: cost has {} entries for {rows} x {cols} marginals",
            cost.len()
        )));
    }
    check_params(a, b, p)?;
    let max_abs = max_abs(cost);
    if !max_abs.is_finite() {
        let bad = cost.iter().find(|c| !c.is_finite()).unwrap_or(&max_abs);
        return Err(Error::invalid(format!(
            "UOT: cost must be finite (found {bad})"
        )));
    }
    let max_scaled = max_abs / p.eps;
    let plan = match p.domain {
        Domain::Plain => plain::plain(cost, a, b, p, max_scaled)?,
        Domain::Log => log::log_domain(cost, a, b, p),
        Domain::Auto if max_scaled > PLAIN_LIMIT => log::log_domain(cost, a, b, p),
        Domain::Auto => match plain::plain(cost, a, b, p, max_scaled) {
            Ok(plan) => plan,
            Err(_) => log::log_domain(cost, a, b, p),
        },
    };
    let plan = finish(plan, b);
    check_finite(&plan.plan, p)?;
    Ok(plan)
}

/// An error when a solve ended with a non-finite plan entry (potentials beyond f64 for a tiny
/// `eps`): a NaN would otherwise rank as a number and read as converged.
fn check_finite(plan: &[f64], p: &UotParams) -> Result<()> {
    match plan.iter().find(|x| !x.is_finite()) {
        Some(bad) => Err(Error::invalid(format!(
            "UOT: the solve produced a non-finite plan entry ({bad}) at eps = {}, tau = ({}, {}): raise eps",
            p.eps, p.tau_source, p.tau_target
        ))),
        None => Ok(()),
    }
}

/// An error unless the parameters and marginals are usable (both solvers).
fn check_params(a: &[f64], b: &[f64], p: &UotParams) -> Result<()> {
    // eps normal (not subnormal): 1 / eps must be finite. tau finite: tau / (tau + eps) is NaN
    // at infinity (a near-hard marginal is a large finite tau).
    let positive = |x: f64| x > 0.0 && x.is_finite();
    let usable = p.eps.is_normal()
        && positive(p.eps)
        && positive(p.tau_source)
        && positive(p.tau_target)
        && p.tol >= 0.0
        && p.tol.is_finite();
    if !usable || p.max_iter == 0 {
        return Err(Error::invalid(format!(
            "UOT: eps (at least {:e}), tau_source, tau_target and max_iter must be positive and finite, tol finite and not negative (got {p:?})",
            f64::MIN_POSITIVE
        )));
    }
    if let Some(bad) = a.iter().chain(b).find(|x| !(x.is_finite() && **x > 0.0)) {
        return Err(Error::invalid(format!(
            "UOT: marginals must be finite and positive (found {bad})"
        )));
    }
    Ok(())
}

/// `max |x|`, or NaN when `x` holds a NaN (infinities come out as the maximum). Eight
/// independent lanes, so that the compiler vectorises the scan of a large cost matrix.
fn max_abs(x: &[f64]) -> f64 {
    let (mut max, mut nan) = ([0.0f64; 8], [false; 8]);
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            let a = c[l].abs();
            max[l] = if a > max[l] { a } else { max[l] };
            nan[l] |= a.is_nan();
        }
    }
    let max = tail.iter().chain(&max).fold(0.0f64, |m, x| m.max(x.abs()));
    if nan.contains(&true) || tail.iter().any(|x| x.is_nan()) {
        f64::NAN
    } else {
        max
    }
}

/// `x^e`; `e = 1/2` (the source exponent `tau_s / (tau_s + eps)` of the paper's `tau_s = eps`)
/// is a square root, several times faster than `powf` and within its rounding.
#[inline]
fn pow(x: f64, e: f64) -> f64 {
    if e == 0.5 {
        x.sqrt()
    } else {
        x.powf(e)
    }
}

/// Plan without its marginal error yet.
struct Raw {
    plan: Vec<f64>,
    cols: usize,
    iterations: usize,
    converged: bool,
    log_domain: bool,
}

fn finish(raw: Raw, b: &[f64]) -> UotPlan {
    let cols = raw.cols;
    let mut col_sums = vec![0.0; cols];
    for r in raw.plan.chunks_exact(cols) {
        col_sums.iter_mut().zip(r).for_each(|(s, t)| *s += t);
    }
    let marginal_error = col_sums
        .iter()
        .zip(b)
        .map(|(s, b)| (s - b).abs())
        .fold(0.0, f64::max);
    UotPlan {
        rows: raw.plan.len() / cols,
        cols,
        plan: raw.plan,
        iterations: raw.iterations,
        converged: raw.converged,
        marginal_error,
        log_domain: raw.log_domain,
    }
}

fn rel_change(x: &[f64], prev: &[f64]) -> f64 {
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = x
        .iter()
        .zip(prev)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    diff / max_abs(x).max(max_abs(prev)).max(1.0)
}

/// Importance of each source class (docs/ARCHITECTURE.md, "The method", steps 3-5): the row sums `T
/// 1` of the plan between the L2-normalised `source` means (`[rows, dim]`, marginal `a = 1` each)
/// and `target` means (`[cols, dim]`, marginal `target_mass`, or `b = 1` each) under the cost
/// `(1 - cos) / p_m`.
pub fn class_importance(
    source: &[f64],
    target: &[f64],
    target_mass: Option<&[f64]>,
    dim: usize,
    p_m: f64,
    p: &UotParams,
) -> Result<(Vec<f64>, UotPlan)> {
    check_p_m(p_m)?;
    if dim == 0 || !source.len().is_multiple_of(dim) || !target.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "UOT: means of {} and {} values are not whole {dim}-d rows",
            source.len(),
            target.len()
        )));
    }
    let (rows, cols) = (source.len() / dim, target.len() / dim);
    check_size(rows, cols)?;
    let b = target_mass.map_or_else(|| vec![1.0; cols], <[f64]>::to_vec);
    if b.len() != cols {
        return Err(Error::invalid(format!(
            "UOT: {} target masses for {cols} target units",
            b.len()
        )));
    }
    let plan = solve(
        &cost_matrix(source, target, dim, p_m),
        &vec![1.0; rows],
        &b,
        p,
    )?;
    Ok((plan.row_sums(), plan))
}

/// Most cells of a UOT problem (cost, kernel and plan are each `rows x cols` f64: 3 GiB here).
pub const MAX_CELLS: usize = 1 << 27;

/// Refuse a problem whose matrices would not fit in memory, saying what to do instead.
fn check_size(rows: usize, cols: usize) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(cells) if cells <= MAX_CELLS => Ok(()),
        cells => Err(Error::invalid(format!(
            "UOT over {rows} source classes x {cols} target units needs {} GiB for its three \
             {rows} x {cols} matrices (at most {} GiB): give target labels or target class means so \
             that each target class is one unit, cluster the corpus into fewer pseudo-classes, or \
             restrict the plan to each target unit's K nearest classes (--graph-k K)",
            cells.map_or("more than 2^64 bytes / 2^30".into(), |c| format!(
                "{:.0}",
                (c as f64) * 24.0 / f64::from(1u32 << 30)
            )),
            (MAX_CELLS * 24) >> 30
        ))),
    }
}

/// The rows of `m` (`dim` wide) scaled to unit length; a zero row stays zero.
pub fn unit_rows(m: &[f64], dim: usize) -> Vec<f64> {
    m.chunks_exact(dim)
        .flat_map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(move |x| if n > 0.0 { x / n } else { 0.0 })
        })
        .collect()
}

/// `a . b` in f64, summed in 8 lanes (vectorised; the order is fixed, so the result is
/// reproducible).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    const W: usize = 8;
    let mut acc = [0.0f64; W];
    let (ac, bc) = (a.chunks_exact(W), b.chunks_exact(W));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..W {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Cost `M[i,j] = (1 - cos(src_i, tgt_j)) / p_m` between L2-normalised rows of `source`
/// (`[rows, dim]`) and `target` (`[cols, dim]`). A zero row has cosine 0 to everything. The
/// cosines are one f64 matrix product (matrixmultiply's blocked, SIMD dgemm).
pub fn cost_matrix(source: &[f64], target: &[f64], dim: usize, p_m: f64) -> Vec<f64> {
    let (s, t) = (unit_rows(source, dim), unit_rows(target, dim));
    let (rows, cols) = (s.len() / dim, t.len() / dim);
    let mut cos = vec![0.0; rows * cols];
    if rows > 0 && cols > 0 {
        // SAFETY: `s` is rows x dim (row stride dim), `t` read as its transpose is dim x cols
        // (row stride 1, column stride dim), `cos` is rows x cols (row stride cols): every
        // index the product reads or writes lies inside the three buffers.
        unsafe {
            matrixmultiply::dgemm(
                rows,
                dim,
                cols,
                1.0,
                s.as_ptr(),
                dim as isize,
                1,
                t.as_ptr(),
                1,
                dim as isize,
                0.0,
                cos.as_mut_ptr(),
                cols as isize,
                1,
            );
        }
    }
    cos.iter_mut().for_each(|c| *c = (1.0 - *c) / p_m);
    cos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_problems_are_refused_with_advice() {
        let err = check_size(1_000_000, 1_000_000).unwrap_err().to_string();
        assert!(
            err.contains("22352 GiB") && err.contains("target labels"),
            "{err}"
        );
        assert!(check_size(1 << 14, 1 << 13).is_ok());
        assert!(check_size(usize::MAX, 2).is_err());
    }

    #[test]
    fn cost_matrix_is_one_minus_cosine_over_p_m() {
        let (dim, rows, cols) = (5, 3, 7);
        let src: Vec<f64> = (0..rows * dim)
            .map(|i| (i as f64 * 0.7).sin() + 0.2)
            .collect();
        let tgt: Vec<f64> = (0..cols * dim).map(|i| (i as f64 * 0.3).cos()).collect();
        let cost = cost_matrix(&src, &tgt, dim, 0.1);
        for i in 0..rows {
            for j in 0..cols {
                let (s, t) = (&src[i * dim..(i + 1) * dim], &tgt[j * dim..(j + 1) * dim]);
                let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                let cos = s.iter().zip(t).map(|(a, b)| a * b).sum::<f64>() / (norm(s) * norm(t));
                assert!((cost[i * cols + j] - (1.0 - cos) / 0.1).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn max_abs_sees_every_lane_and_every_nan() {
        for n in [0usize, 1, 7, 8, 9, 17, 100] {
            for at in 0..n {
                let mut x: Vec<f64> = (0..n).map(|i| (i as f64).sin() * 0.5).collect();
                x[at] = -3.0;
                assert_eq!(max_abs(&x), 3.0, "n {n}, at {at}");
                x[at] = f64::NEG_INFINITY;
                assert_eq!(max_abs(&x), f64::INFINITY, "n {n}, at {at}");
                x[at] = f64::NAN;
                assert!(max_abs(&x).is_nan(), "n {n}, at {at}");
            }
        }
        assert_eq!(max_abs(&[]), 0.0);
    }

    #[test]
    fn pow_of_one_half_is_the_square_root() {
        for x in [0.0, 1e-300, 0.25, 2.0, 1e300, f64::INFINITY] {
            assert_eq!(pow(x, 0.5), x.powf(0.5), "{x}");
        }
        assert_eq!(pow(8.0, 1.0 / 3.0), 8f64.powf(1.0 / 3.0));
    }
}
