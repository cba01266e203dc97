//! Entropic unbalanced optimal transport between source and target classes (DESIGN.md §1,
//! step 4): minimise `<T,M> + eps*sum T log T + tau_s KL(T1 | a) + tau_t KL(T^T 1 | b)` by
//! generalised Sinkhorn-Knopp scaling, computed in f64.
//!
//! Two forms of the same iteration: the plain one scales `u`, `v` against `K = exp(-M/eps)`
//! (fast, the reference of POT's `sinkhorn_knopp_unbalanced`); the log-domain one updates the
//! dual potentials `log u`, `log v` with log-sum-exp and never forms `K`, so it survives a small
//! `eps` where `K` underflows. [`Domain::Auto`] picks the plain form unless `max(M)/eps` leaves
//! the range where `exp` is exact (or the plain form hits a non-finite value), then the log form.

use crate::error::{Error, Result};

/// Largest `M/eps` for which the plain kernel is used under [`Domain::Auto`]: `exp(-700)` is
/// still a normal f64 (the smallest normal is about `exp(-708)`).
pub const PLAIN_LIMIT: f64 = 700.0;

/// Which form of the iteration to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
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

impl Default for UotParams {
    fn default() -> Self {
        UotParams {
            eps: 1.0,
            tau_source: 1.0,
            tau_target: 100.0,
            max_iter: 1000,
            tol: 1e-6,
            domain: Domain::Auto,
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
    if let Some(bad) = a.iter().chain(b).find(|x| !(x.is_finite() && **x > 0.0)) {
        return Err(Error::invalid(format!(
            "UOT: marginals must be finite and positive (found {bad})"
        )));
    }
    let max_abs = max_abs(cost);
    if !max_abs.is_finite() {
        let bad = cost.iter().find(|c| !c.is_finite()).unwrap_or(&max_abs);
        return Err(Error::invalid(format!(
            "UOT: cost must be finite (found {bad})"
        )));
    }
    let max_scaled = max_abs / p.eps;
    let plan = match p.domain {
        Domain::Plain => plain(cost, a, b, p, max_scaled)?,
        Domain::Log => log_domain(cost, a, b, p),
        Domain::Auto if max_scaled > PLAIN_LIMIT => log_domain(cost, a, b, p),
        Domain::Auto => match plain(cost, a, b, p, max_scaled) {
            Ok(plan) => plan,
            Err(_) => log_domain(cost, a, b, p),
        },
    };
    Ok(finish(plan, b))
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

/// The loops of the plain solver for one instruction set, picked at run time (the scoring
/// kernels' pattern). The pass is one portable body compiled for each instruction set (the
/// compiler vectorises it; FMA where the CPU has it), so the variants round differently, by
/// far less than the solver's tolerance.
#[derive(Clone, Copy)]
struct Loops {
    /// One pass of the iteration over the kernel, see [`pass_body`].
    pass: PassFn,
    /// `out[i] = exp(-cost[i] / eps)` (the plain kernel `K`).
    kernel: fn(&[f64], f64, &mut [f64]),
}

/// `(kernel, v, a, fi, u, ktu)`, see [`pass_body`].
type PassFn = fn(&[f64], &[f64], &[f64], f64, &mut [f64], &mut [f64]);

/// `x * y + acc`, fused when `FMA` (instantiated only where the CPU has FMA).
#[inline(always)]
fn madd<const FMA: bool>(x: f64, y: f64, acc: f64) -> f64 {
    if FMA {
        x.mul_add(y, acc)
    } else {
        x * y + acc
    }
}

/// `x . y` over `x.len() == y.len()` values, in 8 lanes the compiler keeps in one register.
#[inline(always)]
fn dot<const FMA: bool>(x: &[f64], y: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    // Loops, not closures, here and below: a closure does not inherit the caller's target
    // features, and `mul_add` outside an FMA context is a libm call.
    let mut tail = 0.0;
    for (p, q) in xc.remainder().iter().zip(yc.remainder()) {
        tail = madd::<FMA>(*p, *q, tail);
    }
    for (p, q) in xc.zip(yc) {
        for l in 0..LANES {
            acc[l] = madd::<FMA>(p[l], q[l], acc[l]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// One pass of the plain iteration over `kernel` (`[rows, cols]`, `cols = v.len()`):
/// `u_i = (a_i / K_i . v)^fi` for every row, then `ktu = K^T u`. Rows go four at a time: their
/// four dot products are independent chains the core overlaps (one row at a time waits on each
/// `u_i` before the next row), and `ktu` is read and written once per four rows.
#[inline(always)]
fn pass_body<const FMA: bool>(
    kernel: &[f64],
    v: &[f64],
    a: &[f64],
    fi: f64,
    u: &mut [f64],
    ktu: &mut [f64],
) {
    let cols = v.len();
    assert!(cols > 0 && ktu.len() == cols && kernel.len() == a.len() * cols && u.len() == a.len());
    ktu.fill(0.0);
    for ((k, a), u) in kernel
        .chunks(4 * cols)
        .zip(a.chunks(4))
        .zip(u.chunks_mut(4))
    {
        // A last group of fewer rows repeats its first row (and discards those results).
        let rows: [&[f64]; 4] = std::array::from_fn(|r| {
            let r = if r < a.len() { r } else { 0 };
            &k[r * cols..(r + 1) * cols]
        });
        // Four independent dot products (the out-of-order core overlaps their chains).
        let mut w = [0.0f64; 4];
        for (w, row) in w.iter_mut().zip(&rows) {
            *w = dot::<FMA>(row, v);
        }
        for ((ui, ai), wi) in u.iter_mut().zip(a).zip(w.iter_mut()) {
            *ui = pow(ai / *wi, fi);
            *wi = *ui;
        }
        // Weight 0 for the repeated rows of a short last group.
        w[a.len()..].fill(0.0);
        for j in 0..cols {
            let mut s = ktu[j];
            for (wr, row) in w.iter().zip(&rows) {
                s = madd::<FMA>(*wr, row[j], s);
            }
            ktu[j] = s;
        }
    }
}

/// `out[i] = exp(-cost[i] / eps)`, one libm call per entry.
fn kernel_body(cost: &[f64], eps: f64, out: &mut [f64]) {
    out.iter_mut()
        .zip(cost)
        .for_each(|(k, m)| *k = (-m / eps).exp());
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `$name`: [`super::pass_body`] compiled with the features `$feat` (and FMA).
    macro_rules! pass_for {
        ($name:ident, $feat:literal) => {
            /// [`super::pass_body`] compiled for the features in the attribute.
            ///
            /// # Safety
            /// The CPU must support the features in the attribute.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(
                k: &[f64],
                v: &[f64],
                a: &[f64],
                fi: f64,
                u: &mut [f64],
                ktu: &mut [f64],
            ) {
                super::pass_body::<true>(k, v, a, fi, u, ktu)
            }
        };
    }
    pass_for!(pass_avx512, "avx512f,avx2,fma");
    pass_for!(pass_avx2, "avx2,fma");

    /// `exp(x)` for `|x| <= 708` (so that `2^n` below is a normal number), within 2 ulp:
    /// `x = n ln 2 + r` with `|r| <= ln 2 / 2` (Cody-Waite, `ln 2` split in two), `exp(r)` by
    /// its Taylor series to degree 13 (the first term left out is below 4e-18), times `2^n`
    /// built in the exponent bits.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp4(x: __m256d) -> __m256d {
        // fdlibm's split: the high part has 32 trailing zero bits, so `n * LN2_HI` is exact.
        const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
        const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
        let n = _mm256_round_pd(
            _mm256_mul_pd(x, _mm256_set1_pd(std::f64::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_HI), x);
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_LO), r);
        // Horner from 1/13! down to 1/0!.
        let mut inv_fact = [1.0f64; 14];
        for k in 1..14 {
            inv_fact[k] = inv_fact[k - 1] / k as f64;
        }
        let mut p = _mm256_set1_pd(inv_fact[13]);
        for c in inv_fact[..13].iter().rev() {
            p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(*c));
        }
        let bits = _mm256_slli_epi64(
            _mm256_add_epi64(
                _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)),
                _mm256_set1_epi64x(1023),
            ),
            52,
        );
        _mm256_mul_pd(p, _mm256_castsi256_pd(bits))
    }

    /// `out[i] = exp(-cost[i] / eps)`; every `|cost[i] / eps|` must be at most 708.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel(cost: &[f64], eps: f64, out: &mut [f64]) {
        let n = cost.len().min(out.len());
        let neg_eps = _mm256_set1_pd(-eps);
        let mut i = 0;
        // SAFETY (loads and stores): i + 4 <= n, inside both slices; `out` is borrowed mutably.
        while i + 4 <= n {
            let x = _mm256_div_pd(_mm256_loadu_pd(cost.as_ptr().add(i)), neg_eps);
            _mm256_storeu_pd(out.as_mut_ptr().add(i), exp4(x));
            i += 4;
        }
        super::kernel_body(&cost[i..n], eps, &mut out[i..n]);
    }
}

/// The loops of the best instruction set this CPU has.
fn loops() -> Loops {
    available_loops()[0]
}

/// Every implementation of the loops this CPU can run, best first, the portable one last.
fn available_loops() -> Vec<Loops> {
    let mut all = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        // SAFETY (every closure below): it is built only when the CPU has the features its
        // function needs (checked here); `plain` only builds kernels with |M/eps| <= PLAIN_LIMIT.
        let kernel = |c: &[f64], eps, out: &mut [f64]| unsafe { x86::kernel(c, eps, out) };
        if avx2 && is_x86_feature_detected!("avx512f") {
            all.push(Loops {
                pass: |k, v, a, fi, u, ktu| unsafe { x86::pass_avx512(k, v, a, fi, u, ktu) },
                kernel,
            });
        }
        if avx2 {
            all.push(Loops {
                pass: |k, v, a, fi, u, ktu| unsafe { x86::pass_avx2(k, v, a, fi, u, ktu) },
                kernel,
            });
        }
    }
    all.push(Loops {
        pass: |k, v, a, fi, u, ktu| pass_body::<false>(k, v, a, fi, u, ktu),
        kernel: kernel_body,
    });
    all
}

/// `K = exp(-M/eps)` for a cost whose largest `|M|/eps` is `max_scaled`: vectorised within
/// [`PLAIN_LIMIT`], where every value is a normal number; beyond it, libm gives the subnormals
/// and zeros that the plain iteration turns into an error.
pub(crate) fn plain_kernel(cost: &[f64], eps: f64, max_scaled: f64) -> Vec<f64> {
    let fill = if max_scaled <= PLAIN_LIMIT {
        loops().kernel
    } else {
        kernel_body
    };
    let mut k = vec![0.0; cost.len()];
    fill(cost, eps, &mut k);
    k
}

/// The plain iteration of DESIGN.md §1: `u = (a / K v)^(tau_s/(tau_s+eps))`,
/// `v = (b / K^T u)^(tau_t/(tau_t+eps))`, from `u = 1/K_s`, `v = 1/K_t`, stopping when
/// `0.5 * (|du|_inf / max(|u|_inf, |u_prev|_inf, 1) + same for v) < tol` (POT's rule).
fn plain(cost: &[f64], a: &[f64], b: &[f64], p: &UotParams, max_scaled: f64) -> Result<Raw> {
    let (rows, cols) = (a.len(), b.len());
    let pass = loops().pass;
    let kernel = plain_kernel(cost, p.eps, max_scaled);
    let fi_s = p.tau_source / (p.tau_source + p.eps);
    let fi_t = p.tau_target / (p.tau_target + p.eps);
    let mut u = vec![1.0 / rows as f64; rows];
    let mut v = vec![1.0 / cols as f64; cols];
    let (mut u_prev, mut v_prev) = (u.clone(), v.clone());
    let mut ktu = vec![0.0; cols];
    let mut iterations = 0;
    let mut converged = false;
    for _ in 0..p.max_iter {
        iterations += 1;
        u_prev.copy_from_slice(&u);
        v_prev.copy_from_slice(&v);
        pass(&kernel, &v, a, fi_s, &mut u, &mut ktu);
        for ((vj, kt), bj) in v.iter_mut().zip(&ktu).zip(b) {
            *vj = pow(bj / kt, fi_t);
        }
        if u.iter().chain(&v).any(|x| !x.is_finite()) || ktu.contains(&0.0) {
            return Err(Error::invalid(format!(
                "UOT: the plain kernel under- or overflowed at iteration {iterations} (eps = {} is too small for it; use the log domain)",
                p.eps
            )));
        }
        if 0.5 * (rel_change(&u, &u_prev) + rel_change(&v, &v_prev)) < p.tol {
            converged = true;
            break;
        }
    }
    // The plan overwrites the kernel: one large allocation per solve, not two.
    let mut plan = kernel;
    for (row, &ui) in plan.chunks_exact_mut(cols).zip(&u) {
        row.iter_mut().zip(&v).for_each(|(k, vj)| *k *= ui * vj);
    }
    Ok(Raw {
        plan,
        cols,
        iterations,
        converged,
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
fn log_domain(cost: &[f64], a: &[f64], b: &[f64], p: &UotParams) -> Raw {
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

/// Importance of each source class (DESIGN.md §1, steps 3-5): the row sums `T 1` of the plan
/// between the L2-normalised `source` means (`[rows, dim]`, marginal `a = 1` each) and
/// `target` means (`[cols, dim]`, `b = 1` each) under the cost `(1 - cos) / p_m`.
pub fn class_importance(
    source: &[f64],
    target: &[f64],
    dim: usize,
    p_m: f64,
    p: &UotParams,
) -> Result<(Vec<f64>, UotPlan)> {
    if !(p_m > 0.0 && p_m.is_finite()) {
        return Err(Error::invalid(format!("p_m must be positive (got {p_m})")));
    }
    if dim == 0 || !source.len().is_multiple_of(dim) || !target.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "UOT: means of {} and {} values are not whole {dim}-d rows",
            source.len(),
            target.len()
        )));
    }
    let (rows, cols) = (source.len() / dim, target.len() / dim);
    check_size(rows, cols)?;
    let plan = solve(
        &cost_matrix(source, target, dim, p_m),
        &vec![1.0; rows],
        &vec![1.0; cols],
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
             {rows} x {cols} matrices (at most {} GiB): give --target-labels or --target-means so \
             that each target class is one unit, or cluster the corpus into fewer pseudo-classes",
            cells.map_or("more than 2^64 bytes / 2^30".into(), |c| format!(
                "{:.0}",
                (c as f64) * 24.0 / f64::from(1u32 << 30)
            )),
            (MAX_CELLS * 24) >> 30
        ))),
    }
}

/// Cost `M[i,j] = (1 - cos(src_i, tgt_j)) / p_m` between L2-normalised rows of `source`
/// (`[rows, dim]`) and `target` (`[cols, dim]`). A zero row has cosine 0 to everything. The
/// cosines are one f64 matrix product (matrixmultiply's blocked, SIMD dgemm).
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
            err.contains("22352 GiB") && err.contains("--target-labels"),
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
    fn every_pass_matches_the_textbook_iteration() {
        // Row counts around the groups of four, widths around the 8-lane chunks.
        for (rows, cols) in [(1, 1), (3, 7), (4, 8), (5, 9), (8, 31), (9, 397), (13, 64)] {
            let kernel: Vec<f64> = (0..rows * cols)
                .map(|i| 0.1 + (i as f64 * 0.37).sin().abs())
                .collect();
            let v: Vec<f64> = (0..cols)
                .map(|j| 0.5 + (j as f64 * 0.11).cos().abs())
                .collect();
            let a: Vec<f64> = (0..rows).map(|i| 1.0 + i as f64 / 7.0).collect();
            for fi in [0.5, 100.0 / 101.0] {
                let want_u: Vec<f64> = kernel
                    .chunks_exact(cols)
                    .zip(&a)
                    .map(|(k, ai)| {
                        (ai / k.iter().zip(&v).map(|(x, y)| x * y).sum::<f64>()).powf(fi)
                    })
                    .collect();
                let want_ktu: Vec<f64> = (0..cols)
                    .map(|j| (0..rows).map(|i| kernel[i * cols + j] * want_u[i]).sum())
                    .collect();
                for l in available_loops() {
                    let (mut u, mut ktu) = (vec![f64::NAN; rows], vec![f64::NAN; cols]);
                    (l.pass)(&kernel, &v, &a, fi, &mut u, &mut ktu);
                    let close = |x: &[f64], y: &[f64]| {
                        x.iter()
                            .zip(y)
                            .all(|(p, q)| (p - q).abs() <= 1e-13 * q.abs())
                    };
                    assert!(close(&u, &want_u), "u, {rows} x {cols}, fi {fi}");
                    assert!(close(&ktu, &want_ktu), "K^T u, {rows} x {cols}, fi {fi}");
                }
            }
        }
    }

    #[test]
    fn dispatched_kernel_is_within_two_ulp_of_libm() {
        let l = loops();
        // Scaled costs over the whole plain range, both signs, and the awkward points: halfway
        // cases of the reduction, zero, and the limit.
        let mut cost: Vec<f64> = (0..20_000)
            .map(|i| (i as f64 * 0.618_033_988_75).fract() * 2.0 * PLAIN_LIMIT - PLAIN_LIMIT)
            .collect();
        let half = std::f64::consts::LN_2 / 2.0;
        cost.extend([
            0.0,
            -0.0,
            half,
            -half,
            3.0 * half,
            PLAIN_LIMIT,
            -PLAIN_LIMIT,
            1e-300,
        ]);
        for eps in [1.0, 0.37, 7.0] {
            let scaled: Vec<f64> = cost.iter().map(|c| c * eps).collect();
            let (mut want, mut got) = (vec![0.0; cost.len()], vec![0.0; cost.len()]);
            kernel_body(&scaled, eps, &mut want);
            (l.kernel)(&scaled, eps, &mut got);
            for ((w, g), c) in want.iter().zip(&got).zip(&scaled) {
                let ulp = (w.to_bits() as i64 - g.to_bits() as i64).abs();
                assert!(ulp <= 2, "exp(-{c}/{eps}): {g:e} vs libm {w:e} ({ulp} ulp)");
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
