//! The plain iteration: `u`, `v` scaled against the kernel `K = exp(-M/eps)`, one pass per
//! instruction set picked at run time.

use super::{pow, rel_change, Raw, UotParams, PLAIN_LIMIT};
use crate::error::{Error, Result};

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
fn plain_kernel(cost: &[f64], eps: f64, max_scaled: f64) -> Vec<f64> {
    let fill = if max_scaled <= PLAIN_LIMIT {
        loops().kernel
    } else {
        kernel_body
    };
    let mut k = vec![0.0; cost.len()];
    fill(cost, eps, &mut k);
    k
}

/// The plain iteration of the method (docs/ARCHITECTURE.md, step 4): `u = (a / K
/// v)^(tau_s/(tau_s+eps))`, `v = (b / K^T u)^(tau_t/(tau_t+eps))`, from `u = 1/K_s`, `v = 1/K_t`,
/// stopping when `0.5 * (|du|_inf / max(|u|_inf, |u_prev|_inf, 1) + same for v) < tol` (POT's
/// rule).
pub(super) fn plain(
    cost: &[f64],
    a: &[f64],
    b: &[f64],
    p: &UotParams,
    max_scaled: f64,
) -> Result<Raw> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
