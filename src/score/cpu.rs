//! Exact CPU scoring: queries spread over threads with rayon, SIMD distances over the mapped
//! vectors, and a bounded heap per query for the top-k.

use super::{check_queries, simd, Neighbors, Scorer};
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::store::{Index, Vectors};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// CPU scorer over an index's mapped vectors.
pub struct CpuScorer<'a> {
    vectors: Vectors<'a>,
    dim: usize,
    rows: usize,
    metric: Metric,
    kernels: &'static simd::Kernels,
}

impl<'a> CpuScorer<'a> {
    /// Scorer over `index`'s vectors.
    pub fn new(index: &'a Index) -> Self {
        CpuScorer {
            vectors: index.vectors(),
            dim: index.dim(),
            rows: index.rows(),
            metric: index.metric(),
            kernels: simd::kernels(),
        }
    }

    /// Prepared query: normalised for cos.
    fn prepare(&self, q: &[f32]) -> Vec<f32> {
        let mut q = q.to_vec();
        if self.metric == Metric::Cos {
            let n = (self.kernels.dot_f32)(&q, &q).sqrt();
            if n > 0.0 {
                q.iter_mut().for_each(|x| *x /= n);
            }
        }
        q
    }

    /// Similarity of row `i` to prepared query `q`, higher is better (negated distance for l2).
    #[inline]
    fn similarity(&self, i: usize, q: &[f32]) -> f32 {
        let r = i * self.dim..(i + 1) * self.dim;
        let k = self.kernels;
        match (self.vectors, self.metric) {
            (Vectors::F16(v), Metric::L2) => -(k.l2_f16)(&v[r], q),
            (Vectors::F32(v), Metric::L2) => -(k.l2_f32)(&v[r], q),
            (Vectors::F16(v), _) => (k.dot_f16)(&v[r], q),
            (Vectors::F32(v), _) => (k.dot_f32)(&v[r], q),
        }
    }

    fn to_metric(&self, s: f32) -> f32 {
        if self.metric == Metric::L2 {
            -s
        } else {
            s
        }
    }
}

/// Heap entry ordered so that the *worst* kept candidate is on top.
#[derive(Clone, Copy, PartialEq)]
struct Cand {
    sim: f32,
    id: u32,
}
impl Eq for Cand {}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        // Worse = lower similarity, or equal similarity and higher id.
        o.sim.total_cmp(&self.sim).then(self.id.cmp(&o.id))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Scorer for CpuScorer<'_> {
    fn describe(&self) -> String {
        format!("cpu {} x{}", self.kernels.isa, rayon::current_num_threads())
    }

    fn top_k(&self, queries: &[f32], k: usize) -> Result<Neighbors> {
        let nq = check_queries(queries, self.dim)?;
        if k == 0 || k > self.rows {
            return Err(Error::invalid(format!(
                "k = {k} must be between 1 and the number of rows ({})",
                self.rows
            )));
        }
        let per_query: Vec<Vec<Cand>> = (0..nq)
            .into_par_iter()
            .map(|qi| {
                let q = self.prepare(&queries[qi * self.dim..(qi + 1) * self.dim]);
                let mut heap = BinaryHeap::with_capacity(k + 1);
                for i in 0..self.rows {
                    let c = Cand {
                        sim: self.similarity(i, &q),
                        id: i as u32,
                    };
                    if heap.len() < k {
                        heap.push(c);
                    } else if heap.peek().is_some_and(|w| c < *w) {
                        heap.pop();
                        heap.push(c);
                    }
                }
                heap.into_sorted_vec()
            })
            .collect();
        let mut ids = Vec::with_capacity(nq * k);
        let mut scores = Vec::with_capacity(nq * k);
        for c in per_query.into_iter().flatten() {
            ids.push(c.id);
            scores.push(self.to_metric(c.sim));
        }
        Ok(Neighbors { k, ids, scores })
    }

    fn max_similarity(&self, queries: &[f32]) -> Result<Vec<f32>> {
        let nq = check_queries(queries, self.dim)?;
        let prepared: Vec<Vec<f32>> = (0..nq)
            .map(|qi| self.prepare(&queries[qi * self.dim..(qi + 1) * self.dim]))
            .collect();
        Ok((0..self.rows)
            .into_par_iter()
            .map(|i| {
                prepared
                    .iter()
                    .map(|q| self.similarity(i, q))
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .collect())
    }
}
