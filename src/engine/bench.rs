//! Recall@k, throughput and latency of an approximate search against a ground truth (what
//! `ptsel bench` reports per setting).

use super::Approx;
use crate::error::Result;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Instant;

/// Beam widths (or rows re-ranked) `ptsel bench` measures unless asked otherwise.
pub const DEFAULT_EF_SWEEP: [usize; 5] = [16, 32, 64, 128, 256];

/// Search threads of a measurement unless asked otherwise: one measures latency without
/// contention.
pub const DEFAULT_THREADS: usize = 1;

/// One setting's measurements.
#[derive(Debug, Serialize, Clone, Copy)]
pub struct Measured {
    /// Beam width, or rows re-ranked by a partitioned search.
    pub ef: usize,
    /// Partitions scanned (a partitioned search), else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<usize>,
    /// Recall@k against `truth`.
    pub recall: f64,
    /// Queries per second of wall time, one query at a time on the current rayon pool.
    pub qps: f64,
    /// Mean latency of a query.
    pub mean_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
}

impl Approx<'_> {
    /// Search each of the row-major `queries` (`dim` values each) alone with beam width (or
    /// rows re-ranked) `ef` and measure it against `truth` (`k` rows per query); `probes` is
    /// the partitions scanned, recorded as given.
    pub fn measure(
        &self,
        queries: &[f32],
        dim: usize,
        truth: &[u32],
        k: usize,
        (ef, probes): (usize, Option<usize>),
    ) -> Result<Measured> {
        let start = Instant::now();
        let per: Vec<(f64, usize)> = queries
            .par_chunks_exact(dim.max(1))
            .zip(truth.par_chunks_exact(k.max(1)))
            .map(|(q, t)| {
                let t0 = Instant::now();
                let (ids, _) = self.search(q, k, ef)?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                let want: HashSet<u32> = t.iter().copied().collect();
                Ok((ms, ids.iter().filter(|i| want.contains(i)).count()))
            })
            .collect::<Result<_>>()?;
        let wall = start.elapsed().as_secs_f64();
        let nq = per.len().max(1);
        let mut lat: Vec<f64> = per.iter().map(|p| p.0).collect();
        lat.sort_by(f64::total_cmp);
        let p99 = lat
            .get(((nq as f64 * 0.99).ceil() as usize).clamp(1, nq) - 1)
            .copied()
            .unwrap_or(0.0);
        Ok(Measured {
            ef,
            probes,
            recall: per.iter().map(|p| p.1).sum::<usize>() as f64 / (nq * k).max(1) as f64,
            qps: per.len() as f64 / wall,
            mean_ms: lat.iter().sum::<f64>() / nq as f64,
            p99_ms: p99,
        })
    }
}
