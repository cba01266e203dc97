//! The log-domain iteration: dual potentials updated with log-sum-exp, never forming `K`.

use super::{Raw, UotParams};

/// `log sum exp(x_j + y_j)` without overflow (`y` may be absent).
fn log_sum_exp(terms: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + terms.map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// The same iteration on the dual potentials `alpha = log u`, `beta = log v`:
/// `alpha_i = fi_s (log a_i - LSE_j(beta_j - M_ij/eps))` and the symmetric update of `beta`;
/// `T_ij = exp(alpha_i + beta_j - M_ij/eps)`. Mathematically the plain iterates; the stopping
/// rule is the relative change of `u` and `v` in the multiplicative sense,
/// `0.5 * (|d alpha|_inf + |d beta|_inf) < tol` (the plain rule's values may not be representable).
pub(super) fn log_domain(cost: &[f64], a: &[f64], b: &[f64], p: &UotParams) -> Raw {
    let (rows, cols) = (a.len(), b.len());
    let scaled: Vec<f64> = cost.iter().map(|m| m / p.eps).collect();
    let scaled_t: Vec<f64> = (0..cols * rows)
        .map(|ji| scaled[(ji % rows) * cols + ji / rows])
        .collect();
    let fi_s = p.tau_source / (p.tau_source + p.eps);
    let fi_t = p.tau_target / (p.tau_target + p.eps);
    let (log_a, log_b): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|x| x.ln()).collect(),
        b.iter().map(|x| x.ln()).collect(),
    );
    let mut alpha = vec![-(rows as f64).ln(); rows];
    let mut beta = vec![-(cols as f64).ln(); cols];
    let mut iterations = 0;
    let mut converged = false;
    for _ in 0..p.max_iter {
        iterations += 1;
        let mut change = [0.0f64; 2];
        for ((al, c), la) in alpha.iter_mut().zip(scaled.chunks_exact(cols)).zip(&log_a) {
            let new = fi_s * (la - log_sum_exp(beta.iter().zip(c).map(|(b, c)| b - c)));
            change[0] = change[0].max((new - *al).abs());
            *al = new;
        }
        for ((be, c), lb) in beta.iter_mut().zip(scaled_t.chunks_exact(rows)).zip(&log_b) {
            let new = fi_t * (lb - log_sum_exp(alpha.iter().zip(c).map(|(a, c)| a - c)));
            change[1] = change[1].max((new - *be).abs());
            *be = new;
        }
        if 0.5 * (change[0] + change[1]) < p.tol {
            converged = true;
            break;
        }
    }
    let plan = scaled
        .chunks_exact(cols)
        .zip(&alpha)
        .flat_map(|(c, &al)| c.iter().zip(&beta).map(move |(c, be)| (al + be - c).exp()))
        .collect();
    Raw {
        plan,
        cols,
        iterations,
        converged,
        log_domain: true,
    }
}
