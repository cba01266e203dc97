//! The beam search shared by construction and queries: distances over the stored vectors
//! ([`Space`]), the greedy descent through the upper levels and SEARCH-LAYER on one level, with
//! a per-thread, generation-stamped visited set and prefetching of the next candidates.

use super::graph::NO_NODE;
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::score::simd::{self, Kernels};
use crate::store::{Index, Vectors};
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Neighbour lists by node and level; implemented by the mapped graph and the one being built,
/// so construction and queries share one search.
pub(crate) trait Adjacency {
    /// Ids of `node` at `level` (padded with [`NO_NODE`]); an error when the stored layout is
    /// inconsistent.
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]>;
}

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
        let mut q = q.to_vec();
        if self.metric == Metric::Cos {
            let n = (self.kernels.dot_f32)(&q, &q).sqrt();
            if n > 0.0 {
                q.iter_mut().for_each(|x| *x /= n);
            }
        }
        q
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

/// Hint the CPU to load the first `bytes` (at most 256; the hardware prefetcher follows the
/// rest) at `ptr`.
#[inline]
fn prefetch<T>(ptr: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let ptr = ptr.cast::<i8>();
        for line in (0..bytes.min(256)).step_by(64) {
            // SAFETY: prefetch is a hint that never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, bytes);
}

/// A node and its distance to the query; ordered by distance, then id (deterministic ties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}
impl Eq for Cand {}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Generation-stamped visited set: clearing is one increment, a full wipe every 65535 searches.
#[derive(Default)]
struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() != n {
            self.marks = vec![0; n];
            self.generation = 0;
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Mark `i` (`i < n`); true when it was not visited yet.
    #[inline]
    fn insert(&mut self, i: usize) -> bool {
        let m = &mut self.marks[i];
        let fresh = *m != self.generation;
        *m = self.generation;
        fresh
    }

    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.marks[i] == self.generation
    }
}

/// Per-thread buffers reused across searches.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A neighbour id read from a list: `None` at the end of the list, an error when out of range.
#[inline]
pub(super) fn checked_id(
    n: u32,
    rows: usize,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Option<usize>> {
    if n == NO_NODE {
        return Ok(None);
    }
    if n as usize >= rows {
        return Err(corrupt(format!(
            "neighbour id {n} out of range ({rows} rows)"
        )));
    }
    Ok(Some(n as usize))
}

/// Greedy search (ef = 1) from `entry` on levels `top` down to `stop + 1`: the closest node
/// found, which enters level `stop`.
pub(crate) fn descend<A: Adjacency>(
    adj: &A,
    space: &Space<'_>,
    q: &[f32],
    entry: u32,
    top: u32,
    stop: u32,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Cand> {
    let rows = space.rows;
    let e = checked_id(entry, rows, corrupt)?.ok_or_else(|| corrupt("no entry point".into()))?;
    let mut cur = Cand {
        d: space.dist(e, q),
        id: entry,
    };
    let mut level = top;
    while level > stop {
        loop {
            let mut moved = false;
            for &n in adj.neighbours(cur.id, level)? {
                let Some(i) = checked_id(n, rows, corrupt)? else {
                    break;
                };
                let d = space.dist(i, q);
                if d < cur.d {
                    cur = Cand { d, id: n };
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        level -= 1;
    }
    Ok(cur)
}

/// Beam search on one level (the paper's SEARCH-LAYER, algorithm 2): the `ef` closest nodes to
/// `q` reachable from `entries`, closest first.
pub(crate) fn search_layer<A: Adjacency>(
    adj: &A,
    space: &Space<'_>,
    q: &[f32],
    entries: &[Cand],
    ef: usize,
    level: u32,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Vec<Cand>> {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let s = &mut *guard;
        s.visited.reset(space.rows);
        s.candidates.clear();
        s.results.clear();
        for &c in entries {
            checked_id(c.id, space.rows, corrupt)?;
            if s.visited.insert(c.id as usize) {
                s.candidates.push(Reverse(c));
                s.results.push(c);
            }
        }
        while s.results.len() > ef {
            s.results.pop();
        }
        while let Some(Reverse(c)) = s.candidates.pop() {
            if s.results.len() >= ef && s.results.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            let list = adj.neighbours(c.id, level)?;
            // The next candidate is usually the next one expanded: start loading its list.
            if let Some(Reverse(next)) = s.candidates.peek() {
                if let Ok(l) = adj.neighbours(next.id, level) {
                    prefetch(l.as_ptr(), std::mem::size_of_val(l));
                }
            }
            for &n in list {
                let Some(i) = checked_id(n, space.rows, corrupt)? else {
                    break;
                };
                if !s.visited.contains(i) {
                    space.prefetch(i);
                }
            }
            for &n in list {
                let Some(i) = checked_id(n, space.rows, corrupt)? else {
                    break;
                };
                if !s.visited.insert(i) {
                    continue;
                }
                let d = space.dist(i, q);
                if s.results.len() < ef || s.results.peek().is_some_and(|w| d < w.d) {
                    let cand = Cand { d, id: n };
                    s.candidates.push(Reverse(cand));
                    s.results.push(cand);
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
        }
        let mut out: Vec<Cand> = s.results.drain().collect();
        out.sort_unstable();
        Ok(out)
    })
}
