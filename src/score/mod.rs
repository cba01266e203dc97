//! Exact scoring of query batches against an index's vectors, behind one trait: [`Backend`]
//! scores on the CPU (SIMD, multi-threaded) and, when it holds the corpus's GPU copy, sends the
//! top-k batches the CUDA kernels take to the device. The device is chosen once by
//! [`scorer_for`] (or an [`crate::Engine`], which keeps the GPU copy across calls); nothing
//! above that point asks which backend it has.

pub(crate) mod cand;
pub(crate) mod codes;
pub(crate) mod exact;
pub mod cpu;
pub mod cuda;
pub mod oracle;
pub(crate) mod rescore;
pub mod simd;
pub(crate) mod space;

use crate::error::{Error, Result};
use crate::format::Metric;
use crate::store::{Index, Vectors};
use cand::Cand;
use rayon::prelude::*;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Which backend to score on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Device {
    /// CUDA when a device, its driver and NVRTC are present; the CPU otherwise.
    #[default]
    Auto,
    /// SIMD CPU code.
    Cpu,
    /// A CUDA GPU (an error when none is usable).
    Cuda,
}

parse_by_name!(Device, "device", { "auto" => Device::Auto, "cpu" => Device::Cpu, "cuda" => Device::Cuda });

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
    /// The neighbours of a batch from each query's `k` rows and scores, in query order.
    pub(crate) fn from_queries(k: usize, per: Vec<(Vec<u32>, Vec<f32>)>) -> Self {
        let mut ids = Vec::with_capacity(per.len() * k);
        let mut scores = Vec::with_capacity(per.len() * k);
        for (i, s) in per {
            ids.extend(i);
            scores.extend(s);
        }
        Neighbors { k, ids, scores }
    }

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
/// the metric (normalises queries for cos). Rows rank by an f32 score of the f32 query against
/// the stored vector, ties broken by the lower row number. Backends (and the CPU's kernels for
/// few and many queries) sum the products in different orders, so their top-k can differ only
/// between rows whose exact scores are within that f32 rounding.
pub trait Scorer: Send + Sync {
    /// Backend description for logs and benchmark reports (e.g. `cpu avx2+fma+f16c x2`).
    fn describe(&self) -> String;

    /// The `k` best rows for each query (`1 <= k <= rows`).
    fn top_k(&self, queries: &[f32], k: usize) -> Result<Neighbors>;

    /// For every corpus row, the highest similarity (cos or ip; negated squared distance for
    /// l2) to any of the queries. Used to exclude near-duplicates of an evaluation set.
    fn max_similarity(&self, queries: &[f32]) -> Result<Vec<f32>>;
}

/// The `k` best candidates seen so far for one query: a max-heap of [`Cand::of_sim`]
/// candidates, whose greatest is the worst kept (the lowest similarity, the higher id on ties).
#[derive(Debug, Clone, Default)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Cand>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn push(&mut self, c: Cand) {
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    /// Candidates best first.
    pub fn into_sorted(self) -> Vec<Cand> {
        self.heap.into_sorted_vec()
    }
}

/// The scorer of one device: the CPU scorer, plus the corpus's GPU copy when scoring on a GPU.
/// Top-k batches go to the GPU where its kernels take them; everything else (large k,
/// [`Scorer::max_similarity`]) runs on the CPU.
pub struct Backend<'a> {
    cpu: cpu::CpuScorer<'a>,
    gpu: Option<Arc<cuda::CudaScorer>>,
}

impl<'a> Backend<'a> {
    /// A backend over `vectors` (`[rows, dim]`, unit-normalised for cos) that uses `gpu` (a
    /// copy of the same vectors) where it can.
    pub fn new(
        vectors: Vectors<'a>,
        dim: usize,
        metric: Metric,
        gpu: Option<Arc<cuda::CudaScorer>>,
    ) -> Result<Self> {
        Ok(Backend {
            cpu: cpu::CpuScorer::from_vectors(vectors, dim, metric)?,
            gpu,
        })
    }
}

impl Scorer for Backend<'_> {
    fn describe(&self) -> String {
        match &self.gpu {
            Some(g) => g.describe(),
            None => self.cpu.describe(),
        }
    }

    fn top_k(&self, queries: &[f32], k: usize) -> Result<Neighbors> {
        if let Some(g) = &self.gpu {
            if let Some(nn) = g.top_k(queries, k)? {
                return Ok(nn);
            }
        }
        self.cpu.top_k(queries, k)
    }

    fn max_similarity(&self, queries: &[f32]) -> Result<Vec<f32>> {
        self.cpu.max_similarity(queries)
    }
}

/// The GPU copy of `vectors` for `device`: `None` for the CPU, and for `Auto` when no GPU is
/// usable; an error when `Cuda` was asked for and none is.
pub fn upload(
    vectors: Vectors<'_>,
    dim: usize,
    metric: Metric,
    device: Device,
) -> Result<Option<Arc<cuda::CudaScorer>>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Cuda => Ok(Some(Arc::new(cuda::CudaScorer::new(vectors, dim, metric)?))),
        Device::Auto => match cuda::CudaScorer::new(vectors, dim, metric) {
            Ok(s) => Ok(Some(Arc::new(s))),
            Err(Error::Unavailable(_)) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// Build the scorer for `index` on `device` (uploading the corpus for a GPU; an
/// [`crate::Engine`] keeps that copy across calls instead).
pub fn scorer_for(index: &Index, device: Device) -> Result<Backend<'_>> {
    scorer_for_vectors(index.vectors(), index.dim(), index.metric(), device)
}

/// Build the scorer for `vectors` (`[rows, dim]`, unit-normalised for cos) on `device`.
pub fn scorer_for_vectors(
    vectors: Vectors<'_>,
    dim: usize,
    metric: Metric,
    device: Device,
) -> Result<Backend<'_>> {
    let gpu = upload(vectors, dim, metric, device)?;
    Backend::new(vectors, dim, metric, gpu)
}

/// Check that `vectors` hold whole `dim`-d rows.
fn check_shape(vectors: &Vectors<'_>, dim: usize) -> Result<()> {
    if dim == 0 || !vectors.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "{} values are not a whole number of {dim}-d rows",
            vectors.len()
        )));
    }
    Ok(())
}

/// A query batch ready for a backend: normalised for cos, rows `stride` apart (zero padded) and
/// the row count zero-padded to a multiple of `pad`.
pub(crate) struct Prepared {
    /// `[padded count, stride]` values.
    pub data: Vec<f32>,
    /// Real queries.
    pub count: usize,
    /// Squared norms of the prepared queries (l2).
    pub norms2: Vec<f32>,
}

/// `q` scaled to unit length (a zero vector stays zero). The norm is taken in f64: the squared
/// norm of a long finite f32 vector (components above ~1.8e19) overflows f32.
pub(crate) fn unit(q: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let n = q.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    q.iter().map(move |&x| {
        if n > 0.0 {
            (f64::from(x) / n) as f32
        } else {
            0.0
        }
    })
}

/// Checks and prepares `queries` (`[nq, dim]`) for `metric`.
pub(crate) fn prepare_queries(
    queries: &[f32],
    dim: usize,
    metric: Metric,
    stride: usize,
    pad: usize,
) -> Result<Prepared> {
    let count = check_queries(queries, dim)?;
    let padded = count.div_ceil(pad.max(1)) * pad.max(1);
    let mut data = vec![0.0; padded * stride];
    let norms2 = data
        .par_chunks_mut(stride)
        .zip(queries.par_chunks_exact(dim))
        .map(|(row, q)| {
            let row = &mut row[..dim];
            if metric == Metric::Cos {
                row.iter_mut().zip(unit(q)).for_each(|(r, x)| *r = x);
            } else {
                row.copy_from_slice(q);
            }
            row.iter().map(|x| x * x).sum::<f32>()
        })
        .collect();
    Ok(Prepared {
        data,
        count,
        norms2,
    })
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

/// Check one query of an approximate search against the index shape, and `k` against its rows.
pub(crate) fn check_one_query(query: &[f32], dim: usize, k: usize, rows: usize) -> Result<()> {
    if query.len() != dim {
        return Err(Error::invalid(format!(
            "query has {} values, the index has dimension {dim}",
            query.len()
        )));
    }
    check_k(k, rows)
}

/// An error unless `1 <= k <= rows`.
pub(crate) fn check_k(k: usize, rows: usize) -> Result<()> {
    if k == 0 || k > rows {
        return Err(Error::invalid(format!(
            "k = {k} must be between 1 and the number of rows ({rows})"
        )));
    }
    Ok(())
}

/// Whether score `a` ranks before `b` under `metric` (ties broken by the caller on row id).
pub fn better(metric: Metric, a: f32, b: f32) -> bool {
    match metric {
        Metric::L2 => a < b,
        Metric::Cos | Metric::Ip => a > b,
    }
}
