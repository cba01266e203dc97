//! Exact top-k from approximate scores with a proven error bound: every CPU kernel (f32 sums,
//! bf16 products on AVX512-BF16 or AMX tiles, int8 codes on AVX512-VNNI) proposes rows, and the
//! final ranking is the one of float64 arithmetic on the stored vectors, whichever kernel ran.
//!
//! The bound. Let `q*` be the exact query in f64 (the raw query; for cos, divided by its f64
//! norm) and `qk` the query the kernel multiplies (the prepared f32 query, its bf16 rounding,
//! or its int8 codes times their scale). For a stored row `x` with `|x| <= M` (the largest row
//! norm of the tile scored) the kernel's f32 inner product `a` satisfies
//!
//! `|a - q*.x| <= D = e M + |qk| rho M + g |qk| M (1 + rho) + t`
//!
//! where `e = |q* - qk|` (computed exactly per query), `rho` bounds the relative rounding of the
//! row to the kernel's format (0 for f32 kernels, which read f16/f32 rows exactly; 2^-8 for
//! bf16, whose significand has 8 bits; for int8 the largest exact error norm `|x - s c|` of the
//! tile's rows over `M`, so that `rho M` bounds every row's), `g = (d + 8) 2^-22` covers the f32
//! accumulation of `d` products (`d 2^-24 sum|qk_i x_i|`, Cauchy-Schwarz, with a factor of 4 to
//! spare for fused and pairwise adds and the rounding of `a +- delta` below; int8's exact
//! integer sum and its three roundings by the scales are within it), and
//! `t = d 2^-120 (1 + M + |qk|)` covers the flushing of subnormal bf16 inputs and outputs by the
//! matrix units. For l2 the
//! kernel's similarity is `2a - |x|^2 - |qp|^2` from f32 norms (`qp` the prepared f32 query), so
//! `delta = 2D + 2g (|qp| + M)^2 + ep (2|qp| + ep)` with `ep = |q* - qp|`; for cos and ip
//! `delta = D`. (A kernel that sums `(qp_i - x_i)^2` directly, as the few-query path does, is
//! within the same `delta`.) The bound holds row by row with the row's own norm bound for `M`
//! and its own rounding bound for `rho M` ([`Query::delta_row`]): the matrix path filters a tile
//! with the tile's `delta` and keeps each row it offers by the row's.
//!
//! The proof. Each query keeps `L`, a lower bound on the k-th best exact similarity: the k-th
//! best of the lower bounds `a - delta` seen, raised by the exact scores of rows already
//! re-scored. A row can belong to the exact top-k only if `a + delta >= L`; such rows are kept
//! and re-scored in f64, all others are dropped. `L` only grows, so a dropped row is never
//! needed. When many rows tie within the bound (duplicates), the kept rows are re-scored early
//! and the list stays short; the work is the same, the memory bounded.

use super::space::prefetch;
use crate::format::Metric;
use crate::store::Vectors;
use half::slice::HalfFloatSliceExt;
use std::cmp::Ordering;

/// Rows a query keeps before its list is pruned (and, if still long, re-scored early): this
/// many, or 4 k for a larger k (a pruned list always holds at least k rows).
const KEEP_MAX: usize = 1024;

/// Kept rows ahead of the one re-scored whose loads are under way.
const SETTLE_AHEAD: usize = 4;

/// A row and its exact (f64) similarity, ordered best first (higher similarity, then lower id).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exact {
    pub sim: f64,
    pub id: u32,
}

impl Eq for Exact {}
impl Ord for Exact {
    fn cmp(&self, o: &Self) -> Ordering {
        o.sim.total_cmp(&self.sim).then(self.id.cmp(&o.id))
    }
}
impl PartialOrd for Exact {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The largest value `<= x` an f32 holds.
fn down(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x {
        f.next_down()
    } else {
        f
    }
}

/// The smallest value `>= x` an f32 holds.
fn up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x {
        f.next_up()
    } else {
        f
    }
}

/// A row norm bound `M` from the f32 sums of squares of a tile's rows (f32 sums of `dim`
/// squares are within `dim 2^-24` relative of the exact ones).
pub(crate) fn max_norm(norms2: &[f32], dim: usize) -> f64 {
    let max2 = norms2.iter().fold(0.0f32, |a, &b| a.max(b));
    (f64::from(max2) * (1.0 + (dim + 2) as f64 * 2f64.powi(-23))).sqrt()
}

/// A bound on the norm of a unit vector stored in f16 or f32 (normalised in f32, at most 2^16
/// values, then rounded: within `(1 + 2^-11)(1 + dim 2^-24)` of 1), as a cos index stores rows.
pub(crate) const UNIT_MAX_NORM: f64 = 1.0 + 1.0 / 128.0;

/// One query as the error bound sees it: its exact form and the kernel's.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// `q*`: the exact query in f64.
    pub exact: Vec<f64>,
    /// `|q* - qk|`.
    e: f64,
    /// `|qk|`.
    nk: f64,
    /// `|qp|`, the prepared f32 query's norm.
    np: f64,
    /// `|q* - qp|`.
    ep: f64,
}

/// `|a - b|` and `|b|` in f64.
fn gap_and_norm(a: &[f64], b: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut gap2, mut norm2) = (0.0, 0.0);
    for (&x, y) in a.iter().zip(b) {
        gap2 += (x - y) * (x - y);
        norm2 += y * y;
    }
    (gap2.sqrt(), norm2.sqrt())
}

impl Query {
    /// The bound's view of raw query `raw`, prepared as `prepared` (f32, normalised for cos)
    /// and multiplied by the kernel as `kernel` (the prepared values, or their bf16 rounding).
    pub fn new(metric: Metric, raw: &[f32], prepared: &[f32], kernel: &[f32]) -> Self {
        let mut exact: Vec<f64> = raw.iter().map(|&v| f64::from(v)).collect();
        if metric == Metric::Cos {
            let n = exact.iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > 0.0 {
                exact.iter_mut().for_each(|v| *v /= n);
            }
        }
        let (ep, np) = gap_and_norm(&exact, prepared.iter().map(|&v| f64::from(v)));
        let (e, nk) = gap_and_norm(&exact, kernel.iter().map(|&v| f64::from(v)));
        Query {
            exact,
            e,
            nk,
            np,
            ep,
        }
    }

    /// `delta` of the module docs for rows of norm at most `m`, rounded up to an f32.
    pub fn delta(&self, metric: Metric, rho: f64, m: f64) -> f32 {
        self.delta_row(metric, rho * m, m)
    }

    /// `delta` for one row of norm at most `m` whose rounding to the kernel's format is at
    /// most `err` in norm (`rho M` of the module docs, for this row alone), rounded up to an
    /// f32.
    pub fn delta_row(&self, metric: Metric, err: f64, m: f64) -> f32 {
        let d = self.exact.len() as f64;
        let g = (d + 8.0) * 2f64.powi(-22);
        let t = d * 2f64.powi(-120) * (1.0 + m + self.nk);
        let dot = self.e * m + self.nk * err + g * self.nk * (m + err) + t;
        let delta = match metric {
            Metric::L2 => {
                2.0 * dot + 2.0 * g * (self.np + m).powi(2) + self.ep * (2.0 * self.np + self.ep)
            }
            Metric::Cos | Metric::Ip => dot,
        };
        if delta.is_finite() {
            up(delta)
        } else {
            f32::INFINITY
        }
    }

    /// The exact similarity (higher is better; the negated squared distance for l2) of stored
    /// row `x`, in f64.
    fn similarity(&self, metric: Metric, x: Vectors<'_>) -> f64 {
        /// Values widened at a time (f16 rows through the SIMD conversion).
        const CHUNK: usize = 64;
        const W: usize = 8;
        let mut acc = [0.0f64; W];
        let mut wide = [0.0f32; CHUNK];
        for (c, q) in self.exact.chunks(CHUNK).enumerate() {
            let x: &[f32] = match x {
                Vectors::F16(x) => {
                    let src = &x[c * CHUNK..c * CHUNK + q.len()];
                    src.convert_to_f32_slice(&mut wide[..q.len()]);
                    &wide[..q.len()]
                }
                Vectors::F32(x) => &x[c * CHUNK..c * CHUNK + q.len()],
            };
            let (qs, xs) = (q.chunks_exact(W), x.chunks_exact(W));
            let (q_tail, x_tail) = (qs.remainder(), xs.remainder());
            // One loop per metric over whole lanes: the compiler keeps `acc` in vector registers.
            match metric {
                Metric::L2 => {
                    for (q, x) in qs.zip(xs) {
                        for l in 0..W {
                            let t = q[l] - f64::from(x[l]);
                            acc[l] += t * t;
                        }
                    }
                    for (l, (&q, &x)) in q_tail.iter().zip(x_tail).enumerate() {
                        let t = q - f64::from(x);
                        acc[l] += t * t;
                    }
                }
                Metric::Cos | Metric::Ip => {
                    for (q, x) in qs.zip(xs) {
                        for l in 0..W {
                            acc[l] += q[l] * f64::from(x[l]);
                        }
                    }
                    for (l, (&q, &x)) in q_tail.iter().zip(x_tail).enumerate() {
                        acc[l] += q * f64::from(x);
                    }
                }
            }
        }
        let s: f64 = acc.iter().sum();
        match metric {
            Metric::L2 => -s,
            Metric::Cos | Metric::Ip => s,
        }
    }
}

/// Where the rows of the scorer are: a row number to its stored values.
pub(crate) trait Rows: Sync {
    fn row(&self, id: u32) -> Vectors<'_>;
}

/// A kept row: its bounds `a - delta <= exact <= a + delta`.
#[derive(Debug, Clone, Copy)]
struct Kept {
    hi: f32,
    lo: f32,
    id: u32,
}

/// The proof state of one query (module docs): the lower bound `L` and the rows that may still
/// beat it. `L` is raised when the kept rows are pruned (each time their number has doubled),
/// from the k-th best of their lower bounds and of the exact scores re-scored so far: no heap
/// per offer, O(1) amortised work per kept row.
#[derive(Debug, Clone)]
pub(crate) struct Collector {
    k: usize,
    /// `L`.
    threshold: f32,
    /// Rows re-scored so far (the `k` best after each settle).
    exact: Vec<Exact>,
    /// Rows that may still beat `L`, not yet re-scored.
    kept: Vec<Kept>,
    /// Length of `kept` that triggers the next prune.
    next_prune: usize,
    /// The lower bounds a prune selects from (kept between prunes to spare the allocation).
    lows: Vec<f32>,
}

impl Collector {
    pub fn new(k: usize) -> Self {
        Collector {
            k,
            threshold: f32::NEG_INFINITY,
            exact: Vec::new(),
            kept: Vec::new(),
            next_prune: Self::first_prune(k),
            lows: Vec::new(),
        }
    }

    /// The first prune: once `4 k` rows (at least 64) are kept.
    fn first_prune(k: usize) -> usize {
        (4 * k).max(64)
    }

    /// Kept rows that, still there after a prune, are re-scored at once.
    fn settle_at(&self) -> usize {
        KEEP_MAX.max(4 * self.k) / 2
    }

    /// `L`: a lower bound on the k-th best exact similarity (`-inf` until `k` rows are seen).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Before the first row is kept, raises `L` at once to the k-th best lower bound `a - delta`
    /// of a tile's approximations (at least `k` of them), so that from the first tile on only
    /// rows that may reach the top k are kept. Returns whether `L` was set.
    pub fn seed(&mut self, approx: impl Iterator<Item = f32>, delta: f32) -> bool {
        if self.threshold > f32::NEG_INFINITY || !self.kept.is_empty() || !self.exact.is_empty() {
            return false;
        }
        // A local buffer: a tile's worth of bounds must not stay allocated in every collector of
        // a many-query batch. An overflow (+-inf or NaN) bounds nothing from below.
        let mut lows: Vec<f32> = approx
            .map(|a| {
                if a.is_finite() {
                    a - delta
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let n = lows.len();
        if n < self.k {
            return false;
        }
        let (_, kth, _) = lows.select_nth_unstable_by(n - self.k, f32::total_cmp);
        self.threshold = *kth;
        true
    }

    /// Offers row `id` with approximate similarity `a` within `delta` of the exact one (an
    /// overflow, +-inf or NaN, is kept: only its exact score can tell). Returns whether so many rows
    /// tie that the caller should [`Collector::settle`] them now.
    pub fn offer(&mut self, a: f32, delta: f32, id: u32) -> bool {
        let (hi, lo) = if !a.is_finite() {
            (f32::INFINITY, f32::NEG_INFINITY)
        } else {
            (a + delta, a - delta)
        };
        if hi < self.threshold {
            return false;
        }
        self.kept.push(Kept { hi, lo, id });
        if self.kept.len() < self.next_prune {
            return false;
        }
        self.prune();
        let len = self.kept.len();
        self.next_prune = (2 * len).clamp(Self::first_prune(self.k), 2 * self.settle_at());
        len >= self.settle_at()
    }

    /// Re-scores the kept rows exactly now (they tie within the bound, so the work is due
    /// anyway), which keeps the list short.
    pub fn settle(&mut self, query: &Query, metric: Metric, rows: &dyn Rows) {
        // The kept rows lie anywhere in the corpus: each starts loading a few rows before it
        // is scored, so that the misses overlap.
        let load = |c: &Kept| match rows.row(c.id) {
            Vectors::F16(v) => prefetch(v.as_ptr(), 2 * v.len()),
            Vectors::F32(v) => prefetch(v.as_ptr(), 4 * v.len()),
        };
        self.kept.iter().take(SETTLE_AHEAD).for_each(load);
        for (i, c) in self.kept.iter().enumerate() {
            self.kept.get(i + SETTLE_AHEAD).map(load);
            let sim = query.similarity(metric, rows.row(c.id));
            self.exact.push(Exact { sim, id: c.id });
        }
        self.kept.clear();
        if self.exact.len() > self.k {
            self.exact.select_nth_unstable(self.k - 1);
            self.exact.truncate(self.k);
        }
        self.next_prune = Self::first_prune(self.k);
        self.prune();
    }

    /// Raises `L` to the k-th best lower bound of the rows seen (kept or re-scored), then drops
    /// the kept rows whose upper bound is below it.
    fn prune(&mut self) {
        let n = self.kept.len() + self.exact.len();
        if n >= self.k {
            let lows = &mut self.lows;
            lows.clear();
            lows.extend(self.kept.iter().map(|c| c.lo));
            lows.extend(self.exact.iter().map(|e| down(e.sim)));
            let (_, kth, _) = lows.select_nth_unstable_by(n - self.k, f32::total_cmp);
            self.threshold = self.threshold.max(*kth);
        }
        let l = self.threshold;
        self.kept.retain(|c| c.hi >= l);
    }

    /// Folds another thread's state of the same query into this one.
    pub fn merge(&mut self, other: Collector) {
        self.threshold = self.threshold.max(other.threshold);
        self.exact.extend(other.exact);
        self.kept.extend(other.kept);
        self.prune();
    }

    /// The exact top-k, best first.
    pub fn finish(mut self, query: &Query, metric: Metric, rows: &dyn Rows) -> Vec<Exact> {
        self.prune();
        self.settle(query, metric, rows);
        self.exact.sort_unstable();
        self.exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::simd::{self, Operand};
    use crate::synth;

    /// The kernels' approximations stay within `delta` of the exact f64 similarity: f32 sums of
    /// the prepared query (the few-query and f32 paths) and the products of every matrix format
    /// (bf16, int8), for queries and rows of very different scales, every metric.
    #[test]
    fn approximations_stay_within_the_bound() {
        let (rows, dim, nq) = (64, 200, 32);
        for (seed, scale) in [(1u64, 1e-3f32), (2, 1.0), (3, 250.0)] {
            let x: Vec<f32> = synth::gaussian_matrix(rows, dim, seed)
                .iter()
                .map(|v| half::f16::from_f32(v * scale.min(100.0)).to_f32())
                .collect();
            let raw: Vec<f32> = synth::gaussian_matrix(nq, dim, seed + 9)
                .iter()
                .map(|v| v * scale)
                .collect();
            for metric in [Metric::Ip, Metric::L2, Metric::Cos] {
                // Cos: the kernels see the normalised query.
                let prepared: Vec<f32> = raw
                    .chunks_exact(dim)
                    .flat_map(|q| {
                        let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
                        q.iter()
                            .map(move |v| if metric == Metric::Cos { v / n } else { *v })
                    })
                    .collect();
                for m in simd::scalar_matrix_kernels() {
                    let (mut a, mut b, mut norms2) =
                        (Operand::default(), Operand::default(), Vec::new());
                    let rho = (m.pack)(Vectors::F32(&x), dim, rows, &mut a, &mut norms2);
                    let seen = (m.pack_queries)(&prepared, dim, nq, &mut b);
                    let mut c = vec![0.0; rows * nq];
                    (m.run)(m.kblocks(dim), a.all(), b.all(), &mut c);
                    let bound_m = max_norm(&norms2, dim);
                    for (j, q) in raw.chunks_exact(dim).enumerate() {
                        let p = &prepared[j * dim..(j + 1) * dim];
                        let f32_bound = Query::new(metric, q, p, p);
                        let m_bound = Query::new(metric, q, p, &seen[j * dim..(j + 1) * dim]);
                        let qn: f32 = p.iter().map(|v| v * v).sum();
                        for (r, row) in x.chunks_exact(dim).enumerate() {
                            let exact = f32_bound.similarity(metric, Vectors::F32(row));
                            let dot: f32 = row.iter().zip(p).map(|(a, b)| a * b).sum();
                            let mdot = c[r * nq + j];
                            let l2 = |d: f32| 2.0 * d - norms2[r] - qn;
                            let (fa, ma) = match metric {
                                Metric::L2 => (l2(dot), l2(mdot)),
                                _ => (dot, mdot),
                            };
                            // Each row's own bound, as offers take it, and the tile's.
                            let norm = max_norm(&norms2[r..=r], dim);
                            let own = a.errors.get(r).map_or(rho * norm, |&e| f64::from(e));
                            let own = m_bound.delta_row(metric, own, norm);
                            for (what, a, delta) in [
                                ("f32", fa, f32_bound.delta(metric, 0.0, bound_m)),
                                (m.isa, ma, m_bound.delta(metric, rho, bound_m)),
                                ("row", ma, own),
                            ] {
                                let delta = f64::from(delta);
                                let err = (f64::from(a) - exact).abs();
                                assert!(
                                    err <= delta,
                                    "{what} {metric:?} scale {scale}: |{a} - {exact}| = {err} > {delta}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn collector_keeps_what_may_win_and_settles_ties() {
        let x: Vec<f32> = (0..10_000).map(|i| (i % 7) as f32).collect();
        let k = 3;
        let q = Query::new(Metric::Ip, &[1.0], &[1.0], &[1.0]);
        struct One<'a>(&'a [f32]);
        impl Rows for One<'_> {
            fn row(&self, id: u32) -> Vectors<'_> {
                Vectors::F32(&self.0[id as usize..id as usize + 1])
            }
        }
        let rows = One(&x);
        let mut c = Collector::new(k);
        let mut settled = 0;
        for (i, &v) in x.iter().enumerate() {
            // A loose bound: every row of value 6 ties with every other.
            if c.offer(v, 0.5, i as u32) {
                settled += 1;
                c.settle(&q, Metric::Ip, &rows);
            }
        }
        assert!(
            settled > 0,
            "3000 rows within the bound never settled early"
        );
        let best: Vec<u32> = c
            .finish(&q, Metric::Ip, &rows)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(best, vec![6, 13, 20]);
    }
}
