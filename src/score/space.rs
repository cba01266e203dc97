//! Distances over an index's stored vectors, shared by the graph's construction and search and
//! by the partitioned search: one row against a prepared query, candidates measured with their
//! rows loaded ahead, and the exact re-rank.

use super::cand::Cand;
use super::simd::{self, Kernels};
use crate::format::Metric;
use crate::store::{Index, Vectors};

/// Distances over an index's stored vectors. Lower is closer: `-dot` for cos and ip, the squared
/// distance for l2.
#[derive(Clone, Copy)]
pub(crate) struct Space<'a> {
    pub vectors: Vectors<'a>,
    pub dim: usize,
    pub rows: usize,
    pub metric: Metric,
    pub kernels: &'static Kernels,
}

impl<'a> Space<'a> {
    pub fn of(index: &'a Index) -> Self {
        Space {
            vectors: index.vectors(),
            dim: index.dim(),
            rows: index.rows(),
            metric: index.metric(),
            kernels: simd::kernels(),
        }
    }

    /// Distance from stored row `i` (`i < rows`, checked by the caller) to the prepared `q`.
    #[inline]
    pub fn dist(&self, i: usize, q: &[f32]) -> f32 {
        let r = i * self.dim..(i + 1) * self.dim;
        let k = self.kernels;
        match (self.vectors, self.metric) {
            (Vectors::F16(v), Metric::L2) => (k.l2_f16)(&v[r], q),
            (Vectors::F32(v), Metric::L2) => (k.l2_f32)(&v[r], q),
            (Vectors::F16(v), _) => -(k.dot_f16)(&v[r], q),
            (Vectors::F32(v), _) => -(k.dot_f32)(&v[r], q),
        }
    }

    /// Hint the CPU to load row `i` (`i < rows`).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        match self.vectors {
            Vectors::F16(v) => prefetch(v.as_ptr().wrapping_add(i * self.dim), self.dim * 2),
            Vectors::F32(v) => prefetch(v.as_ptr().wrapping_add(i * self.dim), self.dim * 4),
        }
    }

    /// The distance from `q` (prepared) to each candidate's row (`id < rows`, checked by the
    /// caller), in place. Rows start loading [`Space::AHEAD`] candidates before they are measured,
    /// so the misses of a scattered set overlap instead of following one another.
    pub fn measure(&self, cands: &mut [Cand], q: &[f32]) {
        for c in cands.iter().take(Self::AHEAD) {
            self.prefetch(c.id as usize);
        }
        for i in 0..cands.len() {
            if let Some(ahead) = cands.get(i + Self::AHEAD) {
                self.prefetch(ahead.id as usize);
            }
            cands[i].d = self.dist(cands[i].id as usize, q);
        }
    }

    /// The candidates' rows (`id < rows`, checked by the caller) measured exactly against `q`
    /// (prepared), and the `k` nearest kept, sorted nearest first; `Err(row)` when a kept row
    /// appears twice, which only a damaged section can cause (the same row has the same
    /// distance, so a repeat is adjacent after sorting; a repeat cut off by the `k` shows as
    /// nothing worse than a row missing from the answer). The exact re-rank of every search
    /// that walks codes.
    pub fn rank_exact(
        &self,
        rows: &mut Vec<Cand>,
        q: &[f32],
        k: usize,
    ) -> std::result::Result<(), u32> {
        self.measure(rows, q);
        if rows.len() > k {
            if let Some(last) = k.checked_sub(1) {
                rows.select_nth_unstable(last);
            }
            rows.truncate(k);
        }
        rows.sort_unstable();
        match rows.windows(2).find(|w| w[0].id == w[1].id) {
            Some(w) => Err(w[0].id),
            None => Ok(()),
        }
    }

    /// How many candidates ahead of the one measured [`Space::measure`] loads rows.
    const AHEAD: usize = 8;

    /// Row `i` (`i < rows`) as f32 (f16 widened with the vectorised slice conversion).
    pub fn row(&self, i: usize, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        let r = i * self.dim..(i + 1) * self.dim;
        match self.vectors {
            Vectors::F16(v) => v[r].convert_to_f32_slice(out),
            Vectors::F32(v) => out.copy_from_slice(&v[r]),
        }
    }

    /// A query in the form the stored vectors are compared with (unit norm for cos).
    pub fn prepare(&self, q: &[f32]) -> Vec<f32> {
        if self.metric == Metric::Cos {
            super::unit(q).collect()
        } else {
            q.to_vec()
        }
    }

    /// Distance back to the metric's unit (similarity for cos and ip).
    pub fn score(&self, d: f32) -> f32 {
        if self.metric == Metric::L2 {
            d
        } else {
            -d
        }
    }
}

/// Distances from a prepared query to the nodes of a graph (lower is closer), as the beam search
/// sees them: the stored vectors ([`Space`]) or the node blocks' codes
/// ([`crate::hnsw`]'s node blocks).
pub(crate) trait Distance {
    /// A query prepared for these distances.
    type Query: ?Sized;
    /// Nodes addressed (`i < rows` for [`Distance::dist`]).
    fn rows(&self) -> usize;
    /// Distance from node `i` (`i < rows`, checked by the caller) to the prepared `q`.
    fn dist(&self, i: usize, q: &Self::Query) -> f32;
    /// Hint the CPU to load what [`Distance::dist`] reads for node `i` (`i < rows`).
    fn prefetch(&self, i: usize);
}

impl Distance for Space<'_> {
    type Query = [f32];
    #[inline]
    fn rows(&self) -> usize {
        self.rows
    }
    #[inline]
    fn dist(&self, i: usize, q: &[f32]) -> f32 {
        Space::dist(self, i, q)
    }
    #[inline]
    fn prefetch(&self, i: usize) {
        Space::prefetch(self, i)
    }
}

/// Hint the CPU to load the `bytes` at `ptr`, a line (64 bytes) at a time from `ptr`, all of
/// them: the hardware prefetchers of some CPUs do not follow a line with the next (on a Zen 5
/// EPYC, prefetching 64 of a 128-d code's 128 bytes halved the QPS, and prefetching 256 of a
/// 512-d code's 512 bytes left the search waiting on the rest: 1.9x QPS with all of them). The
/// first four lines (all of a 128-d code or a list) take a loop of their own, bounded where it
/// is compiled, which measured faster than one loop for all.
#[inline]
pub(crate) fn prefetch<T>(ptr: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let ptr = ptr.cast::<i8>();
        let line = |at: usize| {
            // SAFETY: prefetch is a hint that never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(at)) }
        };
        (0..bytes.min(256)).step_by(64).for_each(line);
        if bytes > 256 {
            (256..bytes).step_by(64).for_each(line);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, bytes);
}
