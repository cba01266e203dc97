//! Exact top-k from approximate scores: the host half of the CUDA tensor-core path.
//!
//! The tensor-core kernel scores fp16-rounded queries, so near ties its order differs from the
//! exact one (0.3-1.25% of ids, measured on an H100, before this module existed). It therefore
//! proposes [`candidates`]`(k)` rows per query, `k` plus a margin; the device re-scores them
//! exactly (the f32 query against the stored row), and [`finish`] keeps the `k` best re-scored
//! rows when a bound on the fp16 error proves that no other row can beat them. A query without
//! that proof is scored again by the f32 kernel, so every answer is exact.
//!
//! The bound. For a prepared query `q` (`d` values) and any row `x`, the fp16 score `s16` and the
//! exact f32 score `s` differ by at most
//! `delta = (|q - fp16(q)| + d 2^-21 |q|) max|x|` (cos, ip): the first term is the query rounding
//! (`|(q - fp16(q)) . x| <= |q - fp16(q)| |x|`, Cauchy-Schwarz; per component the rounding is at
//! most 2^-11 relative for normal values, and an overflow to infinity makes `delta` infinite);
//! the second covers the f32 accumulation of both sums (each within `d 2^-23 |q| |x|`, even
//! with the truncating adds of tensor cores), with a factor 2 to spare. For l2 the similarity is
//! `2 q.x - |q|^2 - |x|^2`: `2 delta + 2^-22 (|q| + max|x|)^2`. Every row outside the list has
//! `s16 <= s16_last`, the list's lowest fp16 score, hence `s <= s16_last + delta`; so when the
//! k-th re-scored candidate has `s_k > s16_last + delta` (strictly: an equal score with a lower
//! row id would rank first), the list holds the exact top-k.

use super::cand::Cand;
use super::TopK;
use crate::format::Metric;

/// Candidates the tensor-core kernel proposes beyond `k`. Chosen from the distribution of the
/// list length each query needs for its proof, measured on emulated fp16 queries for k = 10
/// (`margin_covers_the_measured_need` below): 2 extra rows at most on Gaussian and clustered
/// corpora of 40,000 x 128, and at 1,000,000 x 512 (`PTSEL_MARGIN_ROWS=1000000
/// PTSEL_MARGIN_DIM=512`) a median of 1, p99 3 (Gaussian) and 4 (clustered), at most 4. The
/// rows within the bound grow with the corpus, so 16 leaves room to about 4x that size; a query
/// beyond it falls back to the f32 kernel, which costs time, never exactness.
pub const MARGIN: usize = 16;

/// Length of the candidate list for a top-`k`: `k + MARGIN`, or `None` when that exceeds `max`
/// (the longest list the kernel keeps), and then the f32 kernel scores the batch.
pub fn candidates(k: usize, max: usize) -> Option<usize> {
    Some(k + MARGIN).filter(|&c| c <= max)
}

/// The bound `delta` of the module docs for the prepared query `q` (zero padding allowed) and
/// the largest row norm `max_norm` of the corpus.
pub fn slack(metric: Metric, q: &[f32], max_norm: f64) -> f64 {
    let (mut err2, mut norm2) = (0.0f64, 0.0f64);
    for &v in q {
        let r = f64::from(v) - f64::from(half::f16::from_f32(v).to_f32());
        err2 += r * r;
        norm2 += f64::from(v) * f64::from(v);
    }
    let norm = norm2.sqrt();
    let dot = (err2.sqrt() + q.len() as f64 * 2f64.powi(-21) * norm) * max_norm;
    match metric {
        Metric::L2 => 2.0 * dot + 2f64.powi(-22) * (norm + max_norm).powi(2),
        Metric::Cos | Metric::Ip => dot,
    }
}

/// One query's answer from its candidate list: `ids` (best first by fp16 score, `u32::MAX` for
/// an empty slot), `exact` their re-scored similarities (higher is better) and `last_approx`
/// the fp16 similarity of the list's last entry. Returns the `k` best by exact similarity, ties
/// to the lower row id, or `None` when the bound `slack` cannot prove that no row outside the
/// list beats them. `complete` says the list holds every row of the corpus (nothing to prove);
/// otherwise an empty slot (a row whose fp16 score was not a number) fails the proof.
pub fn finish(
    k: usize,
    ids: &[u32],
    exact: &[f32],
    last_approx: f32,
    slack: f64,
    complete: bool,
) -> Option<Vec<Cand>> {
    if !complete && ids.contains(&u32::MAX) {
        return None;
    }
    let mut top = TopK::new(k);
    ids.iter()
        .zip(exact)
        .filter(|(&id, _)| id != u32::MAX)
        .for_each(|(&id, &sim)| top.push(Cand::of_sim(sim, id)));
    let best = top.into_sorted();
    let kth = best.get(k.checked_sub(1)?)?.sim();
    (complete || f64::from(kth) > f64::from(last_approx) + slack).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;
    use half::f16;

    /// The exact similarity (f32 sums) of row `x` and prepared query `q`.
    fn exact(x: &[f32], q: &[f32]) -> f32 {
        x.iter().zip(q).fold(0.0, |s, (a, b)| s + a * b)
    }

    /// `q` rounded to fp16, as the tensor-core kernel reads it.
    fn fp16(q: &[f32]) -> Vec<f32> {
        q.iter().map(|v| f16::from_f32(*v).to_f32()).collect()
    }

    /// The `n` best rows of `rows` (`[.., dim]`) under `score`, best first, ties to the lower id.
    fn best(rows: &[f32], dim: usize, n: usize, score: impl Fn(&[f32]) -> f32) -> Vec<Cand> {
        let mut top = TopK::new(n);
        for (i, x) in rows.chunks_exact(dim).enumerate() {
            top.push(Cand::of_sim(score(x), i as u32));
        }
        top.into_sorted()
    }

    fn max_norm(rows: &[f32], dim: usize) -> f64 {
        rows.chunks_exact(dim)
            .map(|x| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
            .fold(0.0, f64::max)
    }

    /// The CUDA path on the CPU: fp16 candidates, exact re-scores, [`finish`]; `None` where the
    /// device would fall back to the f32 kernel.
    fn rescored(rows: &[f32], dim: usize, q: &[f32], k: usize, kc: usize) -> Option<Vec<Cand>> {
        let q16 = fp16(q);
        let list = best(rows, dim, kc, |x| exact(x, &q16));
        let ids: Vec<u32> = list.iter().map(|c| c.id).collect();
        let sims: Vec<f32> = ids
            .iter()
            .map(|&i| exact(&rows[i as usize * dim..][..dim], q))
            .collect();
        let delta = slack(Metric::Ip, q, max_norm(rows, dim));
        let last = list.last()?.sim();
        finish(k, &ids, &sims, last, delta, kc >= rows.len() / dim)
    }

    /// A unit query and rows on which its fp16 rounding reverses the order: `ties` rows
    /// `q / 2 + t_j w` with `q . w = |r| / 2` but `fp16(q) . w ~ -|r| / 2` (`r = q - fp16(q)`),
    /// so the rows the exact order ranks first come last in the fp16 order, all within the
    /// bound of each other; then `rest` rows far below them.
    fn adversarial(dim: usize, ties: usize, rest: usize) -> (Vec<f32>, Vec<f32>) {
        let mut q = synth::gaussian_matrix(1, dim, 4);
        let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
        q.iter_mut().for_each(|v| *v /= n);
        let r: Vec<f32> = q.iter().zip(fp16(&q)).map(|(a, b)| a - b).collect();
        let rn = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        // w = r / |r| - alpha q, alpha such that q . w = |r| / 2.
        let alpha = q.iter().zip(&r).map(|(a, b)| a * b).sum::<f32>() / rn - 0.5 * rn;
        let w: Vec<f32> = r.iter().zip(&q).map(|(a, b)| a / rn - alpha * b).collect();
        let mut rows = Vec::new();
        for j in 0..ties {
            let t = 0.01 * (j as f32 + 1.0);
            rows.extend(q.iter().zip(&w).map(|(b, w)| 0.5 * b + t * w));
        }
        let far = synth::gaussian_matrix(rest, dim, 5);
        rows.extend(far.iter().map(|v| 0.01 * v));
        (rows, q)
    }

    #[test]
    fn rescored_top_k_is_the_exact_one_on_adversarial_near_ties() {
        let (dim, k) = (64, 5);
        for ties in [MARGIN, 4 * MARGIN] {
            let (rows, q) = adversarial(dim, ties, 300);
            let want = best(&rows, dim, k, |x| exact(x, &q));
            // The problem: the fp16 order alone picks other rows.
            let q16 = fp16(&q);
            let naive: Vec<u32> = best(&rows, dim, k, |x| exact(x, &q16))
                .iter()
                .map(|c| c.id)
                .collect();
            let want_ids: Vec<u32> = want.iter().map(|c| c.id).collect();
            assert_ne!(naive, want_ids, "{ties} ties: the data is not adversarial");
            match rescored(&rows, dim, &q, k, k + MARGIN) {
                Some(got) => {
                    assert_eq!(got, want, "{ties} ties");
                    assert!(ties < k + MARGIN, "{ties} ties cannot all fit the list");
                }
                // More near-ties than the list holds: the proof fails and the f32 kernel runs.
                None => assert!(
                    ties > MARGIN,
                    "{ties} ties: a list that fits was not proven"
                ),
            }
        }
    }

    /// Whenever [`finish`] gives an answer, it is the exact top-k: random corpora with exact
    /// duplicates, near-duplicates below the fp16 resolution and queries of any scale.
    #[test]
    fn every_proven_answer_is_exact() {
        let dim = 24;
        let (mut proven, mut total) = (0, 0);
        for seed in 0..60u64 {
            let mut rows = synth::gaussian_matrix(200, dim, seed);
            for j in 0..40 {
                let (src, dst) = ((j * 7) % 200, 200 - 1 - j);
                let jitter = if j % 2 == 0 { 0.0 } else { 1e-5 * j as f32 };
                for c in 0..dim {
                    rows[dst * dim + c] = rows[src * dim + c] + jitter;
                }
            }
            let scale = [1e-3f32, 1.0, 300.0][seed as usize % 3];
            let q: Vec<f32> = synth::gaussian_matrix(1, dim, seed + 1000)
                .iter()
                .map(|v| v * scale)
                .collect();
            for k in [1, 3, 10] {
                total += 1;
                if let Some(got) = rescored(&rows, dim, &q, k, k + MARGIN) {
                    proven += 1;
                    assert_eq!(
                        got,
                        best(&rows, dim, k, |x| exact(x, &q)),
                        "seed {seed} k {k}"
                    );
                }
            }
        }
        assert!(proven * 2 > total, "only {proven} of {total} proven");
    }

    /// Candidates each query needs for its proof (the shortest list whose last fp16 score is
    /// below the k-th exact one by more than the bound), beyond k, on unit queries against
    /// f16-stored unit rows; MARGIN must cover 99% of them. Prints the distribution. The corpus
    /// is 40,000 x 128 unless `PTSEL_MARGIN_ROWS` and `PTSEL_MARGIN_DIM` say otherwise.
    #[test]
    fn margin_covers_the_measured_need() {
        let env = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let (rows, dim, nq, k) = (
            env("PTSEL_MARGIN_ROWS", 40_000),
            env("PTSEL_MARGIN_DIM", 128),
            100,
            10,
        );
        let gaussian = synth::gaussian_matrix(rows, dim, 21);
        let clustered = synth::clustered(synth::Spec {
            rows,
            dim,
            classes: 100,
            spread: 1.0,
            seed: 22,
        })
        .data;
        for (name, mut x) in [("gaussian", gaussian), ("clustered", clustered)] {
            for r in x.chunks_exact_mut(dim) {
                let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
                r.iter_mut()
                    .for_each(|v| *v = f16::from_f32(*v / n).to_f32());
            }
            let norm = max_norm(&x, dim);
            let mut need: Vec<usize> = synth::gaussian_matrix(nq, dim, 23)
                .chunks_exact(dim)
                .map(|q| {
                    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
                    let q: Vec<f32> = q.iter().map(|v| v / n).collect();
                    let kth = best(&x, dim, k, |r| exact(r, &q))[k - 1].sim();
                    let delta = slack(Metric::Ip, &q, norm);
                    let q16 = fp16(&q);
                    let list = best(&x, dim, k + 64, |r| exact(r, &q16));
                    list.iter()
                        .position(|c| f64::from(kth) > f64::from(c.sim()) + delta)
                        .map_or(usize::MAX, |len| (len + 1).saturating_sub(k))
                })
                .collect();
            need.sort_unstable();
            let at = |p: f64| need[((nq - 1) as f64 * p) as usize];
            eprintln!(
                "{name} {rows} x {dim}: extra candidates needed: median {}, p90 {}, p99 {}, max {}",
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0)
            );
            assert!(at(0.99) <= MARGIN, "{name}: {need:?}");
        }
    }
}
