//! Exact CPU scoring as a blocked matrix product fused with the per-query top-k.
//!
//! A batch is scored tile by tile: a tile of corpus rows is widened to f32 once and packed into
//! panels of `nr` rows stored dimension-major, then every query block sweeps it through the
//! register-blocked micro-kernel of [`simd::tile_kernel`] (f32 accumulation). Each tile's scores
//! go straight into the per-query top-k (or the per-row maximum) while they are in cache. Tiles
//! are spread over threads with rayon; each thread keeps its own top-k lists, merged at the end.
//! Batches of a few queries skip the packing (it would cost more than the products) and use the
//! SIMD dot kernels row by row.
//!
//! The rows may lie in several segments (the shards of a corpus, numbered globally one after
//! the other): tiles never cross a segment, and every thread's top-k lists span all segments, so
//! a corpus is scored in one pass with the pruning of one file.

use super::{prepare_queries, simd, Neighbors, Prepared, Scorer, TopK};
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::store::{Index, Vectors};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::ops::Range;

/// Batches smaller than this are scored row by row without packing (packing a tile costs about
/// as much as scoring about 12 queries against it row by row).
const DIRECT_MAX_QUERIES: usize = 12;
/// Queries swept over a packed tile at a time (their `KC` slice stays in L2).
const QUERY_BLOCK: usize = 128;
/// Slice of the dimension per micro-kernel call: a `KC x nr` panel chunk stays in L1.
const KC: usize = 128;
/// Target bytes of one packed corpus tile (fits L2 next to the query block).
const TILE_BYTES: usize = 384 << 10;
/// Queries scored per pass over the corpus: bounds the per-thread top-k lists.
const OUTER_BATCH: usize = 4096;

/// CPU scorer over borrowed vectors (an index's mapped ones, several shards' in turn, or any
/// slice).
pub struct CpuScorer<'a> {
    /// The segments of rows, each `[rows_i, dim]` and numbered from `first_i`.
    segments: Vec<Segment<'a>>,
    dim: usize,
    rows: usize,
    metric: Metric,
    kernels: &'static simd::Kernels,
    tile: &'static simd::TileKernel,
    /// Corpus rows per tile (a multiple of `tile.nr`).
    tile_rows: usize,
}

/// Rows `first..first + vectors.len() / dim` of the scorer.
#[derive(Clone, Copy)]
struct Segment<'a> {
    vectors: Vectors<'a>,
    first: usize,
}

/// A tile: rows `rows` (local) of segment `segment`.
#[derive(Clone)]
struct Tile {
    segment: usize,
    rows: Range<usize>,
}

/// Per-thread buffers, reused across tiles.
#[derive(Default)]
struct Workspace {
    panels: Vec<f32>,
    row_norms2: Vec<f32>,
    scores: Vec<f32>,
    row: Vec<f32>,
}

impl<'a> CpuScorer<'a> {
    /// Scorer over `index`'s vectors.
    pub fn new(index: &'a Index) -> Self {
        Self::with_kernels(
            index.vectors(),
            index.dim(),
            index.metric(),
            simd::kernels(),
            simd::tile_kernel(),
        )
    }

    /// Scorer over `vectors` (`[rows, dim]` row-major, already normalised for cos).
    pub fn from_vectors(vectors: Vectors<'a>, dim: usize, metric: Metric) -> Result<Self> {
        super::check_shape(&vectors, dim)?;
        Ok(Self::with_kernels(
            vectors,
            dim,
            metric,
            simd::kernels(),
            simd::tile_kernel(),
        ))
    }

    /// Scorer over `segments` of vectors in turn (each `[rows_i, dim]`, already normalised for
    /// cos): the rows of segment `i` are numbered after those of the segments before it.
    pub fn from_segments(segments: &[Vectors<'a>], dim: usize, metric: Metric) -> Result<Self> {
        segments
            .iter()
            .try_for_each(|v| super::check_shape(v, dim))?;
        Ok(Self::segmented(
            segments,
            dim,
            metric,
            simd::kernels(),
            simd::tile_kernel(),
        ))
    }

    /// Scorer with explicit kernels (tests pin the portable ones to check the SIMD ones).
    pub fn with_kernels(
        vectors: Vectors<'a>,
        dim: usize,
        metric: Metric,
        kernels: &'static simd::Kernels,
        tile: &'static simd::TileKernel,
    ) -> Self {
        Self::segmented(&[vectors], dim, metric, kernels, tile)
    }

    fn segmented(
        vectors: &[Vectors<'a>],
        dim: usize,
        metric: Metric,
        kernels: &'static simd::Kernels,
        tile: &'static simd::TileKernel,
    ) -> Self {
        let mut rows = 0;
        let segments = vectors
            .iter()
            .map(|&v| {
                let first = rows;
                rows += v.len().checked_div(dim).unwrap_or(0);
                Segment { vectors: v, first }
            })
            .collect();
        let tile_rows = (TILE_BYTES / (4 * dim.max(1)) / tile.nr).max(1) * tile.nr;
        CpuScorer {
            segments,
            dim,
            rows,
            metric,
            kernels,
            tile,
            tile_rows,
        }
    }

    fn prepare(&self, queries: &[f32]) -> Result<Prepared> {
        prepare_queries(queries, self.dim, self.metric, self.dim, self.tile.mr)
    }

    /// Rows `rows` of `vectors` widened to f32: borrowed when stored as f32, else converted
    /// into `out`.
    fn rows_f32<'b>(
        &self,
        vectors: Vectors<'b>,
        rows: Range<usize>,
        out: &'b mut Vec<f32>,
    ) -> &'b [f32] {
        let r = rows.start * self.dim..rows.end * self.dim;
        match vectors {
            Vectors::F32(v) => &v[r],
            Vectors::F16(v) => {
                out.resize(r.len(), 0.0);
                v[r].convert_to_f32_slice(out);
                out
            }
        }
    }

    /// Calls `f(query, sims)` for every query of `q` and the similarities (higher is better;
    /// negated squared distance for l2) of the corpus rows of `tile` to it.
    fn score_tile(
        &self,
        q: &Prepared,
        queries: Range<usize>,
        tile: &Tile,
        ws: &mut Workspace,
        mut f: impl FnMut(usize, &[f32]),
    ) {
        let vectors = self.segments[tile.segment].vectors;
        let rows = tile.rows.clone();
        let (d, n) = (self.dim, rows.len());
        if queries.len() < DIRECT_MAX_QUERIES {
            ws.scores.resize(n, 0.0);
            for qi in queries {
                let query = &q.data[qi * d..(qi + 1) * d];
                let k = self.kernels;
                for (s, i) in ws.scores.iter_mut().zip(rows.clone()) {
                    let r = i * d..(i + 1) * d;
                    *s = match (vectors, self.metric) {
                        (Vectors::F16(v), Metric::L2) => -(k.l2_f16)(&v[r], query),
                        (Vectors::F32(v), Metric::L2) => -(k.l2_f32)(&v[r], query),
                        (Vectors::F16(v), _) => (k.dot_f16)(&v[r], query),
                        (Vectors::F32(v), _) => (k.dot_f32)(&v[r], query),
                    };
                }
                f(qi, &ws.scores);
            }
            return;
        }
        let (mr, nr) = (self.tile.mr, self.tile.nr);
        let panels = n.div_ceil(nr);
        let ldc = panels * nr;
        self.pack(vectors, rows, ws);
        let qb = QUERY_BLOCK.div_ceil(mr) * mr;
        let mut q0 = queries.start;
        while q0 < queries.end {
            let q1 = (q0 + qb).min(queries.end);
            let block = (q1 - q0).div_ceil(mr) * mr;
            ws.scores.resize(block * ldc, 0.0);
            for pc in (0..d).step_by(KC) {
                let kc = KC.min(d - pc);
                for p in 0..panels {
                    let panel = &ws.panels[p * d * nr + pc * nr..(p + 1) * d * nr];
                    for ir in (0..block).step_by(mr) {
                        let qs = &q.data[(q0 + ir) * d + pc..];
                        (self.tile.tile)(
                            kc,
                            qs,
                            d,
                            panel,
                            &mut ws.scores[ir * ldc + p * nr..],
                            ldc,
                            pc > 0,
                        );
                    }
                }
            }
            for qi in q0..q1 {
                let sims = &mut ws.scores[(qi - q0) * ldc..(qi - q0) * ldc + n];
                if self.metric == Metric::L2 {
                    // |q - x|^2 = |q|^2 + |x|^2 - 2 q.x, negated so that higher is better.
                    let qn = q.norms2[qi];
                    sims.iter_mut()
                        .zip(&ws.row_norms2)
                        .for_each(|(s, xn)| *s = (2.0 * *s - xn - qn).min(0.0));
                }
                f(qi, sims);
            }
            q0 = q1;
        }
    }

    /// Widens the corpus rows `rows` to f32 and packs them into `nr`-row panels, each
    /// dimension-major (`panel[k * nr + j]`), zero-padding the last panel; records squared norms.
    fn pack(&self, vectors: Vectors<'_>, rows: Range<usize>, ws: &mut Workspace) {
        let (d, nr) = (self.dim, self.tile.nr);
        let panels = rows.len().div_ceil(nr);
        ws.panels.clear();
        ws.panels.resize(panels * nr * d, 0.0);
        ws.row_norms2.clear();
        let mut buf = std::mem::take(&mut ws.row);
        for (p, panel) in ws.panels.chunks_exact_mut(nr * d).enumerate() {
            let r0 = rows.start + p * nr;
            let m = nr.min(rows.end - r0);
            // Widen the panel's rows contiguously (SIMD), then transpose with sequential
            // writes: the strided reads stay within m rows, a few KiB of L1.
            let x = self.rows_f32(vectors, r0..r0 + m, &mut buf);
            ws.row_norms2
                .extend(x.chunks_exact(d).map(|r| (self.kernels.dot_f32)(r, r)));
            for (k, out) in panel.chunks_exact_mut(nr).enumerate() {
                out.iter_mut()
                    .zip(x[k..].iter().step_by(d))
                    .for_each(|(o, &v)| *o = v);
            }
        }
        ws.row = buf;
    }

    /// Tiles of corpus rows, segment by segment.
    fn tiles(&self) -> Vec<Tile> {
        let step = self.tile_rows;
        let mut tiles = Vec::new();
        for (segment, s) in self.segments.iter().enumerate() {
            let rows = s.vectors.len().checked_div(self.dim).unwrap_or(0);
            tiles.extend((0..rows.div_ceil(step)).map(|t| Tile {
                segment,
                rows: t * step..((t + 1) * step).min(rows),
            }));
        }
        tiles
    }

    fn to_metric(&self, sim: f32) -> f32 {
        if self.metric == Metric::L2 {
            -sim
        } else {
            sim
        }
    }
}

impl Scorer for CpuScorer<'_> {
    fn describe(&self) -> String {
        format!(
            "cpu {} tiles, {} dots x{}",
            self.tile.isa,
            self.kernels.isa,
            rayon::current_num_threads()
        )
    }

    fn top_k(&self, queries: &[f32], k: usize) -> Result<Neighbors> {
        if k == 0 || k > self.rows {
            return Err(Error::invalid(format!(
                "k = {k} must be between 1 and the number of rows ({})",
                self.rows
            )));
        }
        let q = self.prepare(queries)?;
        let tiles = self.tiles();
        let mut ids = Vec::with_capacity(q.count * k);
        let mut scores = Vec::with_capacity(q.count * k);
        for start in (0..q.count).step_by(OUTER_BATCH) {
            let batch = start..(start + OUTER_BATCH).min(q.count);
            let lists = tiles
                .par_iter()
                .fold(
                    || (Workspace::default(), vec![TopK::new(k); batch.len()]),
                    |(mut ws, mut lists), tile| {
                        let first = (self.segments[tile.segment].first + tile.rows.start) as u32;
                        self.score_tile(&q, batch.clone(), tile, &mut ws, |qi, sims| {
                            lists[qi - batch.start].extend(first, sims)
                        });
                        (ws, lists)
                    },
                )
                .map(|(_, lists)| lists)
                .reduce_with(|mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| a.merge(b));
                    a
                })
                .unwrap_or_default();
            for list in lists {
                for c in list.into_sorted() {
                    ids.push(c.id);
                    scores.push(self.to_metric(c.sim()));
                }
            }
        }
        Ok(Neighbors { k, ids, scores })
    }

    fn max_similarity(&self, queries: &[f32]) -> Result<Vec<f32>> {
        let q = self.prepare(queries)?;
        let mut out = vec![f32::NEG_INFINITY; self.rows];
        // Each tile's slice of `out`: tiles follow one another through the rows.
        let mut rest = out.as_mut_slice();
        let mut jobs = Vec::new();
        for tile in self.tiles() {
            let (best, tail) = rest.split_at_mut(tile.rows.len());
            jobs.push((tile, best));
            rest = tail;
        }
        jobs.into_par_iter()
            .for_each_init(Workspace::default, |ws, (tile, best)| {
                self.score_tile(&q, 0..q.count, &tile, ws, |_, sims| {
                    best.iter_mut().zip(sims).for_each(|(b, &s)| *b = b.max(s))
                });
            });
        Ok(out)
    }
}
