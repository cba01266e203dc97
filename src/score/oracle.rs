//! Reference scoring in f64 to check the backends against (tests, `examples/gpu_check.rs`),
//! and owned corpora in either storage type for scoring data that is not in an index.

use super::Neighbors;
use crate::format::{DType, Metric};
use crate::store::Vectors;
use half::f16;
use half::slice::HalfFloatSliceExt;

/// A corpus owned in its storage type.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedVectors {
    /// Half precision.
    F16(Vec<f16>),
    /// Single precision.
    F32(Vec<f32>),
}

impl OwnedVectors {
    /// `data` (`[rows, dim]`) stored as `dtype`, unit-normalised first for cos, as an index
    /// stores it.
    pub fn new(mut data: Vec<f32>, dim: usize, dtype: DType, metric: Metric) -> Self {
        if metric == Metric::Cos {
            for r in data.chunks_exact_mut(dim.max(1)) {
                let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 {
                    r.iter_mut().for_each(|x| *x /= n);
                }
            }
        }
        match dtype {
            DType::F16 => {
                let mut halves = vec![f16::ZERO; data.len()];
                halves.convert_from_f32_slice(&data);
                OwnedVectors::F16(halves)
            }
            DType::F32 => OwnedVectors::F32(data),
        }
    }

    /// Borrowed view, as scorers take it.
    pub fn view(&self) -> Vectors<'_> {
        match self {
            OwnedVectors::F16(v) => Vectors::F16(v),
            OwnedVectors::F32(v) => Vectors::F32(v),
        }
    }

    /// The stored values widened to f32 (what the oracle scores).
    pub fn values(&self) -> Vec<f32> {
        match self {
            OwnedVectors::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            OwnedVectors::F32(v) => v.clone(),
        }
    }
}

/// Exact similarity in f64 (higher is better; the negated squared distance for l2) of a stored
/// row `x` and a raw query `q` (normalised here for cos).
pub fn similarity(metric: Metric, x: &[f32], q: &[f32]) -> f64 {
    let dot = || -> f64 {
        x.iter()
            .zip(q)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    match metric {
        Metric::L2 => -x
            .iter()
            .zip(q)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>(),
        Metric::Ip => dot(),
        Metric::Cos => {
            let n = q.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            if n > 0.0 {
                dot() / n
            } else {
                dot()
            }
        }
    }
}

/// Brute-force top-`k` of `q` over the rows of `x` (`[rows, dim]`): (similarity, row), best
/// first, ties to the lower row.
pub fn top_k(metric: Metric, x: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<(f64, u32)> {
    let mut all: Vec<(f64, u32)> = x
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, r)| (similarity(metric, r, q), i as u32))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all
}

/// How one backend's top-k agrees with a reference backend's, rank by rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Fraction of identical ids.
    pub same: f64,
    /// Fraction of ids identical or tied: a different id whose exact score is within the
    /// tolerance of the reference id's.
    pub ties_aside: f64,
    /// Largest |score - exact score of its row|.
    pub worst: f64,
    /// Every id identical or tied, every score within the tolerance of its row's.
    pub pass: bool,
}

/// Compares `got` with `reference` (both top-k of `queries` over `rows`, `[.., dim]` as
/// stored), scoring rows exactly with [`similarity`]; `tol(query)` is the score tolerance.
pub fn compare(
    metric: Metric,
    rows: &[f32],
    dim: usize,
    queries: &[f32],
    reference: &Neighbors,
    got: &Neighbors,
    tol: impl Fn(usize) -> f64,
) -> Agreement {
    let sign = if metric == Metric::L2 { -1.0 } else { 1.0 };
    let (mut same, mut tied, mut worst, mut pass) = (0usize, 0usize, 0.0f64, true);
    for qi in 0..reference.queries() {
        let q = &queries[qi * dim..(qi + 1) * dim];
        let score = |id: u32| {
            let r = id as usize;
            sign * similarity(metric, &rows[r * dim..(r + 1) * dim], q)
        };
        for ((&gid, &gs), &rid) in got
            .ids_of(qi)
            .iter()
            .zip(got.scores_of(qi))
            .zip(reference.ids_of(qi))
        {
            let e = score(gid);
            if gid == rid {
                same += 1;
            } else if (e - score(rid)).abs() <= tol(qi) {
                tied += 1;
            } else {
                pass = false;
            }
            let dev = (e - f64::from(gs)).abs();
            worst = worst.max(dev);
            pass &= dev <= tol(qi);
        }
    }
    let n = reference.ids.len().max(1) as f64;
    Agreement {
        same: same as f64 / n,
        ties_aside: (same + tied) as f64 / n,
        worst,
        pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cos_normalises_the_query_and_l2_is_negated() {
        let x = [3.0f32, 4.0];
        assert_eq!(similarity(Metric::Ip, &x, &[2.0, 0.0]), 6.0);
        assert_eq!(similarity(Metric::Cos, &x, &[2.0, 0.0]), 3.0);
        assert_eq!(similarity(Metric::L2, &x, &[0.0, 0.0]), -25.0);
    }

    #[test]
    fn compare_counts_identical_tied_and_wrong_ids() {
        // Rows 0 and 1 are duplicates; row 2 is far.
        let rows = [1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
        let q = [1.0f32, 0.0];
        let reference = Neighbors {
            k: 1,
            ids: vec![0],
            scores: vec![1.0],
        };
        let tied = Neighbors {
            k: 1,
            ids: vec![1],
            scores: vec![1.0],
        };
        let a = compare(Metric::Ip, &rows, 2, &q, &reference, &tied, |_| 1e-6);
        assert_eq!((a.same, a.ties_aside, a.pass), (0.0, 1.0, true));
        let wrong = Neighbors {
            k: 1,
            ids: vec![2],
            scores: vec![0.0],
        };
        let a = compare(Metric::Ip, &rows, 2, &q, &reference, &wrong, |_| 1e-6);
        assert_eq!((a.ties_aside, a.pass), (0.0, false));
        let off = Neighbors {
            k: 1,
            ids: vec![0],
            scores: vec![0.5],
        };
        let a = compare(Metric::Ip, &rows, 2, &q, &reference, &off, |_| 1e-6);
        assert!(!a.pass && a.worst == 0.5 && a.same == 1.0);
    }
}
