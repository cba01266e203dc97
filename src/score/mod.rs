//! Exact scoring of query batches against an index's vectors, behind one trait with a CPU
//! (SIMD, multi-threaded) and a CUDA implementation. The device is chosen once by
//! [`scorer_for`]; nothing above that point asks which backend it has.

pub mod cpu;
pub mod simd;

use crate::error::{Error, Result};
use crate::format::Metric;
use crate::store::Index;

/// Which backend to score on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Device {
    /// CUDA when a device, its driver and NVRTC are present; the CPU otherwise.
    #[default]
    Auto,
    /// SIMD CPU code.
    Cpu,
    /// A CUDA GPU (an error when none is usable).
    Cuda,
}

/// The k best corpus rows of each query in a batch, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbors {
    /// Neighbours per query.
    pub k: usize,
    /// `[nq, k]` row numbers.
    pub ids: Vec<u32>,
    /// `[nq, k]` scores in the metric's unit: cosine similarity (cos), inner product (ip) or
    /// squared distance (l2, ascending).
    pub scores: Vec<f32>,
}

impl Neighbors {
    /// Number of queries.
    pub fn queries(&self) -> usize {
        self.ids.len().checked_div(self.k).unwrap_or(0)
    }

    /// Ids of query `q`.
    pub fn ids_of(&self, q: usize) -> &[u32] {
        &self.ids[q * self.k..(q + 1) * self.k]
    }

    /// Scores of query `q`.
    pub fn scores_of(&self, q: usize) -> &[f32] {
        &self.scores[q * self.k..(q + 1) * self.k]
    }
}

/// Exact scoring of queries against one index's vectors.
///
/// Contract: `queries` is row-major `[nq, dim]` f32 in the caller's raw form; the scorer applies
/// the metric (normalises queries for cos). Results are exact up to the storage precision and
/// ties are broken by the lower row number, so every backend returns the same top-k.
pub trait Scorer: Send + Sync {
    /// Backend description for logs and benchmark reports (e.g. `cpu avx2+fma+f16c x2`).
    fn describe(&self) -> String;

    /// The `k` best rows for each query (`1 <= k <= rows`).
    fn top_k(&self, queries: &[f32], k: usize) -> Result<Neighbors>;

    /// For every corpus row, the highest similarity (cos or ip; negated squared distance for
    /// l2) to any of the queries. Used to exclude near-duplicates of an evaluation set.
    fn max_similarity(&self, queries: &[f32]) -> Result<Vec<f32>>;
}

/// Build the scorer for `index` on `device`.
pub fn scorer_for(index: &Index, device: Device) -> Result<Box<dyn Scorer + '_>> {
    match device {
        Device::Cpu | Device::Auto => Ok(Box::new(cpu::CpuScorer::new(index))),
        Device::Cuda => Err(Error::Unavailable(
            "--device cuda: this build has no CUDA backend yet".into(),
        )),
    }
}

/// Check a query batch against the index shape and return the number of queries.
pub fn check_queries(queries: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 || !queries.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "query batch of {} values is not a whole number of {dim}-d rows",
            queries.len()
        )));
    }
    if let Some(i) = queries.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "query {} has a non-finite value {}",
            i / dim,
            queries[i]
        )));
    }
    Ok(queries.len() / dim)
}

/// Whether score `a` ranks before `b` under `metric` (ties broken by the caller on row id).
pub fn better(metric: Metric, a: f32, b: f32) -> bool {
    match metric {
        Metric::L2 => a < b,
        Metric::Cos | Metric::Ip => a > b,
    }
}
