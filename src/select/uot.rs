//! Entropic unbalanced optimal transport between source and target classes (DESIGN.md §1,
//! step 4): minimise `<T,M> + eps*sum T log T + tau_s KL(T1 | a) + tau_t KL(T^T 1 | b)` by
//! generalised Sinkhorn-Knopp scaling, computed in f64.

use crate::error::{Error, Result};

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
}

impl Default for UotParams {
    fn default() -> Self {
        UotParams {
            eps: 1.0,
            tau_source: 1.0,
            tau_target: 100.0,
            max_iter: 1000,
            tol: 1e-6,
        }
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

/// Solve the problem with cost `[rows, cols]` and marginals `a` (rows) and `b` (cols).
pub fn solve(cost: &[f64], a: &[f64], b: &[f64], p: &UotParams) -> Result<UotPlan> {
    let (rows, cols) = (a.len(), b.len());
    if rows == 0 || cols == 0 || cost.len() != rows * cols {
        return Err(Error::invalid(format!(
            "UOT: cost has {} entries for {rows} x {cols} marginals",
            cost.len()
        )));
    }
    if !(p.eps > 0.0 && p.tau_source > 0.0 && p.tau_target > 0.0 && p.tol >= 0.0) || p.max_iter == 0
    {
        return Err(Error::invalid(format!(
            "UOT: eps, tau and max_iter must be positive (got {p:?})"
        )));
    }
    let kernel: Vec<f64> = cost.iter().map(|&m| (-m / p.eps).exp()).collect();
    let fi_s = p.tau_source / (p.tau_source + p.eps);
    let fi_t = p.tau_target / (p.tau_target + p.eps);
    let mut u = vec![1.0 / rows as f64; rows];
    let mut v = vec![1.0 / cols as f64; cols];
    let mut ktu = vec![0.0; cols];
    let mut iterations = 0;
    let mut converged = false;
    for _ in 0..p.max_iter {
        iterations += 1;
        let (u_prev, v_prev) = (u.clone(), v.clone());
        for (i, ui) in u.iter_mut().enumerate() {
            let kv: f64 = kernel[i * cols..(i + 1) * cols]
                .iter()
                .zip(&v)
                .map(|(k, v)| k * v)
                .sum();
            *ui = (a[i] / kv).powf(fi_s);
        }
        ktu.iter_mut().for_each(|x| *x = 0.0);
        for (i, &ui) in u.iter().enumerate() {
            ktu.iter_mut()
                .zip(&kernel[i * cols..(i + 1) * cols])
                .for_each(|(s, k)| *s += k * ui);
        }
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = (b[j] / ktu[j]).powf(fi_t);
        }
        if u.iter().chain(&v).any(|x| !x.is_finite()) || ktu.contains(&0.0) {
            return Err(Error::invalid(format!("UOT: scaling under- or overflowed at iteration {iterations} (eps = {} is too small for the plain kernel)", p.eps)));
        }
        let err = 0.5 * (rel_change(&u, &u_prev) + rel_change(&v, &v_prev));
        if err < p.tol {
            converged = true;
            break;
        }
    }
    let plan: Vec<f64> = (0..rows * cols)
        .map(|ij| u[ij / cols] * kernel[ij] * v[ij % cols])
        .collect();
    let marginal_error = (0..cols)
        .map(|j| ((0..rows).map(|i| plan[i * cols + j]).sum::<f64>() - b[j]).abs())
        .fold(0.0, f64::max);
    Ok(UotPlan {
        rows,
        cols,
        plan,
        iterations,
        converged,
        marginal_error,
        log_domain: false,
    })
}

fn rel_change(x: &[f64], prev: &[f64]) -> f64 {
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = x
        .iter()
        .zip(prev)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    diff / max_abs(x).max(max_abs(prev)).max(1.0)
}

/// Cost `M[i,j] = (1 - cos(src_i, tgt_j)) / p_m` between L2-normalised rows of `source`
/// (`[rows, dim]`) and `target` (`[cols, dim]`).
pub fn cost_matrix(source: &[f64], target: &[f64], dim: usize, p_m: f64) -> Vec<f64> {
    let normalise = |m: &[f64]| -> Vec<f64> {
        m.chunks_exact(dim)
            .flat_map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.iter().map(move |x| if n > 0.0 { x / n } else { 0.0 })
            })
            .collect()
    };
    let (s, t) = (normalise(source), normalise(target));
    s.chunks_exact(dim)
        .flat_map(|si| {
            t.chunks_exact(dim)
                .map(move |tj| (1.0 - si.iter().zip(tj).map(|(x, y)| x * y).sum::<f64>()) / p_m)
        })
        .collect()
}
