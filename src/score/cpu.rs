//! Exact CPU scoring as a blocked matrix product fused with the per-query top-k.
//!
//! The products run on the fastest unit the CPU has ([`simd::Kernel`]): AMX tiles or
//! AVX512-BF16 multiply bf16-rounded rows and queries (`score::simd::bf16`), AVX512-VNNI their
//! int8 codes (`score::simd::int8`), else the f32 micro-kernel below. Either way the scores
//! only propose rows: each query's [`exact::Collector`] keeps every row that a proven error
//! bound cannot rule out and re-scores those in f64, so the top-k is that of float64 arithmetic
//! on the stored vectors whichever kernel ran (`score::exact` states the bound).
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

use super::exact::{self, Collector, Rows};
use super::simd::operand::BLOCK;
use super::simd::{MatrixKernel, Operand};
use super::{prepare_queries, simd, Neighbors, Prepared, Scorer};
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
/// Target bytes of one packed corpus tile of the matrix kernels (fits L2 beside a query chunk).
const MATRIX_TILE_BYTES: usize = 256 << 10;
/// Queries per matrix kernel call (its scores, tile rows x this, stay in L2).
const MATRIX_QUERIES: usize = 128;

/// An approximate score as the filters read it: one that overflowed f32 (+-inf or NaN, whatever
/// the exact score is) becomes NaN, which every filter keeps and no threshold is taken from.
fn bounded(s: f32) -> f32 {
    if s.is_finite() {
        s
    } else {
        f32::NAN
    }
}

/// The similarity of l2 from an inner product and the squared norms: `-|q - x|^2 = 2 q.x -
/// |x|^2 - |q|^2`, at most 0 ([`bounded`]).
fn l2_similarity(dot: f32, xn: f32, qn: f32) -> f32 {
    let s = 2.0 * dot - xn - qn;
    if s.is_finite() {
        s.min(0.0)
    } else {
        f32::NAN
    }
}

/// Turns one query's inner products with a tile's rows into [`bounded`] similarities (cos
/// products of unit vectors cannot overflow).
fn similarities(metric: Metric, dots: &mut [f32], row_norms2: &[f32], qn: f32) {
    match metric {
        Metric::L2 => dots
            .iter_mut()
            .zip(row_norms2)
            .for_each(|(s, &xn)| *s = l2_similarity(*s, xn, qn)),
        Metric::Ip => dots.iter_mut().for_each(|s| *s = bounded(*s)),
        Metric::Cos => {}
    }
}

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
    /// The matrix kernel, if exact scoring multiplies with one.
    matrix: Option<&'static MatrixKernel>,
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
    /// The tile's rows as the matrix kernel's operand.
    packed: Operand,
    /// Per row of the tile: a bound on its rounding to the kernel's format, and on its norm.
    row_bounds: Vec<(f64, f64)>,
    /// Per query of a chunk: the error bound and the score a row must reach.
    deltas: Vec<f32>,
    thresholds: Vec<f32>,
}

/// The queries of one pass as the kernels read them.
struct Batch<'q> {
    q: &'q Prepared,
    /// The queries of the pass.
    range: Range<usize>,
    /// The query operand of the matrix kernel (empty for the f32 kernels).
    packed: Operand,
    /// Queries in the operand (a multiple of [`BLOCK`]).
    padded: usize,
    /// The error bound's view of each query.
    bounds: Vec<exact::Query>,
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

    /// Scorer over `vectors` (`[rows, dim]` row-major, already normalised for cos: the error
    /// bound of a few-query batch takes cos rows to be unit vectors rounded to f16 or f32, of
    /// norm at most [`exact::UNIT_MAX_NORM`]).
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
            matrix: simd::matrix_kernel(),
        }
    }

    /// This scorer multiplying with `matrix` (`None`: the f32 kernels) instead of the chosen
    /// [`simd::Kernel`] (tests and benchmarks pin each).
    pub fn with_matrix(mut self, matrix: Option<&'static MatrixKernel>) -> Self {
        self.matrix = matrix;
        self
    }

    /// Name of the kernel the products of a large batch run on.
    pub fn kernel(&self) -> &'static str {
        self.matrix.map_or(self.tile.isa, |m| m.isa)
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

    /// Calls `f(query, sims, m)` for every query of `q` and the f32 similarities (higher is
    /// better; negated squared distance for l2) of the corpus rows of `tile` to it; `m` bounds
    /// the norms of the tile's rows.
    fn score_tile(
        &self,
        q: &Prepared,
        queries: Range<usize>,
        tile: &Tile,
        ws: &mut Workspace,
        mut f: impl FnMut(usize, &[f32], f64),
    ) {
        let vectors = self.segments[tile.segment].vectors;
        let rows = tile.rows.clone();
        let (d, n) = (self.dim, rows.len());
        if queries.len() < DIRECT_MAX_QUERIES {
            ws.scores.resize(n, 0.0);
            ws.row_norms2.clear();
            let k = self.kernels;
            for qi in queries {
                let query = &q.data[qi * d..(qi + 1) * d];
                // The first query's pass reads each row once for its product and its norm;
                // cos rows are unit vectors, whose norm needs no pass.
                let first = ws.row_norms2.is_empty() && self.metric != Metric::Cos;
                for (j, i) in rows.clone().enumerate() {
                    let r = i * d..(i + 1) * d;
                    ws.scores[j] = match (vectors, first) {
                        (Vectors::F16(v), true) => {
                            let (dot, n2) = (k.dot_norm_f16)(&v[r], query);
                            ws.row_norms2.push(n2);
                            dot
                        }
                        (Vectors::F32(v), true) => {
                            let (dot, n2) = (k.dot_norm_f32)(&v[r], query);
                            ws.row_norms2.push(n2);
                            dot
                        }
                        (Vectors::F16(v), false) => (k.dot_f16)(&v[r], query),
                        (Vectors::F32(v), false) => (k.dot_f32)(&v[r], query),
                    };
                }
                similarities(self.metric, &mut ws.scores, &ws.row_norms2, q.norms2[qi]);
                let m = match self.metric {
                    Metric::Cos => exact::UNIT_MAX_NORM,
                    _ => exact::max_norm(&ws.row_norms2, d),
                };
                f(qi, &ws.scores, m);
            }
            return;
        }
        let (mr, nr) = (self.tile.mr, self.tile.nr);
        let panels = n.div_ceil(nr);
        let ldc = panels * nr;
        self.pack(vectors, rows, ws);
        let m = exact::max_norm(&ws.row_norms2, d);
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
                similarities(self.metric, sims, &ws.row_norms2, q.norms2[qi]);
                f(qi, sims, m);
            }
            q0 = q1;
        }
    }

    /// Offers the rows of `tile` to the collectors of `batch` through the matrix kernel
    /// `matrix`: the tile's rows are packed once, then every chunk of queries is scored
    /// in one kernel call and its scores filtered row by row against each query's threshold.
    fn collect_matrix(
        &self,
        matrix: &MatrixKernel,
        batch: &Batch<'_>,
        tile: &Tile,
        ws: &mut Workspace,
        lists: &mut [Collector],
    ) {
        let seg = self.segments[tile.segment];
        let (d, n) = (self.dim, tile.rows.len());
        let padded = n.div_ceil(BLOCK) * BLOCK;
        let x = seg.vectors.rows(tile.rows.clone(), d);
        let rho = (matrix.pack)(x, d, padded, &mut ws.packed, &mut ws.row_norms2);
        let m = exact::max_norm(&ws.row_norms2, d);
        // The filter compares with the tile's bound; a row offered gets its own.
        let errors = &ws.packed.errors;
        ws.row_bounds.clear();
        ws.row_bounds
            .extend(ws.row_norms2.iter().enumerate().map(|(r, &n2)| {
                let norm = exact::max_norm(&[n2], d);
                (errors.get(r).map_or(rho * norm, |&e| f64::from(e)), norm)
            }));
        let kb = matrix.kblocks(d);
        let first = (seg.first + tile.rows.start) as u32;
        let count = batch.range.len();
        for c0 in (0..batch.padded).step_by(MATRIX_QUERIES) {
            let qc = MATRIX_QUERIES.min(batch.padded - c0);
            let live = qc.min(count.saturating_sub(c0));
            if live == 0 {
                break;
            }
            let b = batch.packed.view(c0..c0 + qc, kb);
            ws.scores.resize(padded * qc, 0.0);
            (matrix.run)(kb, ws.packed.all(), b, &mut ws.scores);
            ws.deltas.clear();
            ws.thresholds.clear();
            for (j, list) in lists[c0..c0 + live].iter().enumerate() {
                let delta = batch.bounds[c0 + j].delta(self.metric, rho, m);
                ws.deltas.push(delta);
                ws.thresholds.push(list.threshold() - delta);
            }
            // The scores are [row, query]: similarities() goes along a query's column.
            match self.metric {
                Metric::L2 => {
                    let norms2 = &batch.q.norms2[batch.range.start + c0..];
                    for (row, &xn) in ws.scores.chunks_exact_mut(qc).zip(&ws.row_norms2) {
                        row[..live]
                            .iter_mut()
                            .zip(norms2)
                            .for_each(|(s, &qn)| *s = l2_similarity(*s, xn, qn));
                    }
                }
                Metric::Ip => ws.scores.iter_mut().for_each(|s| *s = bounded(*s)),
                Metric::Cos => {}
            }
            for (j, list) in lists[c0..c0 + live].iter_mut().enumerate() {
                if list.seed((0..n).map(|r| ws.scores[r * qc + j]), ws.deltas[j]) {
                    ws.thresholds[j] = list.threshold() - ws.deltas[j];
                }
            }
            for (r, row) in ws.scores.chunks_exact_mut(qc).take(n).enumerate() {
                let row = &mut row[..live];
                // Most rows reach no query's threshold: SIMD masks of 64 queries skip them.
                for g in (0..live).step_by(64) {
                    let end = (g + 64).min(live);
                    let mut hits = (self.kernels.reaches)(&row[g..end], &ws.thresholds[g..end]);
                    while hits != 0 {
                        let j = g + hits.trailing_zeros() as usize;
                        hits &= hits - 1;
                        let (list, bound) = (&mut lists[c0 + j], &batch.bounds[c0 + j]);
                        let (err, norm) = ws.row_bounds[r];
                        let own = bound.delta_row(self.metric, err, norm);
                        self.offer(list, bound, row[j], own, first + r as u32);
                        ws.thresholds[j] = list.threshold() - ws.deltas[j];
                    }
                }
            }
        }
    }

    /// Offers one row to one query's collector, re-scoring its kept rows when they pile up.
    fn offer(&self, list: &mut Collector, bound: &exact::Query, a: f32, delta: f32, id: u32) {
        if list.offer(a, delta, id) {
            list.settle(bound, self.metric, self);
        }
    }

    /// Offers the rows of `tile` to the collectors of `batch` through the f32 kernels.
    fn collect_f32(
        &self,
        batch: &Batch<'_>,
        tile: &Tile,
        ws: &mut Workspace,
        lists: &mut [Collector],
    ) {
        let first = (self.segments[tile.segment].first + tile.rows.start) as u32;
        let start = batch.range.start;
        self.score_tile(batch.q, batch.range.clone(), tile, ws, |qi, sims, m| {
            let (list, bound) = (&mut lists[qi - start], &batch.bounds[qi - start]);
            let delta = bound.delta(self.metric, 0.0, m);
            list.seed(sims.iter().copied(), delta);
            // The query's threshold in every lane: SIMD masks of 64 rows skip most of them.
            let mut threshold = [list.threshold() - delta; 64];
            for (c, chunk) in sims.chunks(64).enumerate() {
                let mut hits = (self.kernels.reaches)(chunk, &threshold[..chunk.len()]);
                while hits != 0 {
                    let j = hits.trailing_zeros() as usize;
                    hits &= hits - 1;
                    let id = first + (c * 64 + j) as u32;
                    self.offer(list, bound, chunk[j], delta, id);
                    threshold = [list.threshold() - delta; 64];
                }
            }
        });
    }

    /// The queries `range` of `q` (raw `raw`) as the kernels and the error bound read them.
    fn batch<'q>(
        &self,
        raw: &[f32],
        q: &'q Prepared,
        range: Range<usize>,
        matrix: Option<&MatrixKernel>,
    ) -> Batch<'q> {
        let d = self.dim;
        let prepared = &q.data[range.start * d..range.end * d];
        let (mut packed, mut padded, mut seen) = (Operand::default(), 0, Vec::new());
        if let Some(m) = matrix {
            padded = range.len().div_ceil(BLOCK) * BLOCK;
            seen = (m.pack_queries)(prepared, d, padded, &mut packed);
        }
        let kernel = if matrix.is_some() {
            &seen[..]
        } else {
            prepared
        };
        let bounds = range
            .clone()
            .into_par_iter()
            .map(|qi| {
                let at = (qi - range.start) * d..(qi - range.start + 1) * d;
                exact::Query::new(
                    self.metric,
                    &raw[qi * d..(qi + 1) * d],
                    &prepared[at.clone()],
                    &kernel[at],
                )
            })
            .collect();
        Batch {
            q,
            range,
            packed,
            padded,
            bounds,
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

    /// Tiles of `step` corpus rows, segment by segment.
    fn tiles(&self, step: usize) -> Vec<Tile> {
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

/// Rows by their global number, for re-scoring.
impl Rows for CpuScorer<'_> {
    fn row(&self, id: u32) -> Vectors<'_> {
        let id = id as usize;
        let s = self.segments[self.segments.partition_point(|s| s.first <= id) - 1];
        s.vectors.rows(id - s.first..id - s.first + 1, self.dim)
    }
}

impl Scorer for CpuScorer<'_> {
    fn describe(&self) -> String {
        format!(
            "cpu {} products, {} dots x{}",
            self.kernel(),
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
        // Few queries are memory-bound: the f32 kernels read the rows once, unpacked.
        let matrix = self.matrix.filter(|_| q.count >= DIRECT_MAX_QUERIES);
        let step = match matrix {
            // A k-block of a row is 64 bytes whatever the format.
            Some(m) => {
                let row_bytes = m.kblocks(self.dim) * 64;
                (MATRIX_TILE_BYTES / row_bytes / BLOCK).clamp(1, 16) * BLOCK
            }
            None => self.tile_rows,
        };
        let tiles = self.tiles(step);
        let collect =
            |batch: &Batch<'_>, tile: &Tile, ws: &mut Workspace, lists: &mut [Collector]| {
                match matrix {
                    Some(m) => self.collect_matrix(m, batch, tile, ws, lists),
                    None => self.collect_f32(batch, tile, ws, lists),
                }
            };
        let finish = |lists: Vec<Collector>, batch: &Batch<'_>| -> Vec<Vec<exact::Exact>> {
            lists
                .into_par_iter()
                .zip(&batch.bounds)
                .map(|(list, bound)| list.finish(bound, self.metric, self))
                .collect()
        };
        // Few tiles (few rows: class means, centroids) leave threads idle and make every thread's
        // lists per query a merge: split the queries instead, each chunk over every tile in turn.
        let threads = rayon::current_num_threads();
        let found: Vec<Vec<exact::Exact>> = if tiles.len() < 4 * threads && q.count > QUERY_BLOCK {
            // Whole query blocks, as the batches of the other branch (the kernels expect them).
            let chunk = q
                .count
                .div_ceil(4 * threads)
                .next_multiple_of(QUERY_BLOCK)
                .min(OUTER_BATCH);
            let ranges: Vec<Range<usize>> = (0..q.count)
                .step_by(chunk)
                .map(|s| s..(s + chunk).min(q.count))
                .collect();
            let parts: Vec<Vec<Vec<exact::Exact>>> = ranges
                .into_par_iter()
                .map(|range| {
                    let batch = self.batch(queries, &q, range, matrix);
                    let (mut ws, mut lists) = (
                        Workspace::default(),
                        vec![Collector::new(k); batch.range.len()],
                    );
                    for tile in &tiles {
                        collect(&batch, tile, &mut ws, &mut lists);
                    }
                    finish(lists, &batch)
                })
                .collect();
            parts.into_iter().flatten().collect()
        } else {
            let mut found = Vec::with_capacity(q.count);
            for start in (0..q.count).step_by(OUTER_BATCH) {
                let batch = self.batch(
                    queries,
                    &q,
                    start..(start + OUTER_BATCH).min(q.count),
                    matrix,
                );
                let n = batch.range.len();
                let lists = tiles
                    .par_iter()
                    .fold(
                        || (Workspace::default(), vec![Collector::new(k); n]),
                        |(mut ws, mut lists), tile| {
                            collect(&batch, tile, &mut ws, &mut lists);
                            (ws, lists)
                        },
                    )
                    .map(|(_, lists)| lists)
                    .reduce_with(|mut a, b| {
                        a.iter_mut().zip(b).for_each(|(a, b)| a.merge(b));
                        a
                    })
                    .unwrap_or_default();
                found.extend(finish(lists, &batch));
            }
            found
        };
        let mut ids = Vec::with_capacity(q.count * k);
        let mut scores = Vec::with_capacity(q.count * k);
        for e in found.into_iter().flatten() {
            ids.push(e.id);
            scores.push(self.to_metric(e.sim as f32));
        }
        Ok(Neighbors { k, ids, scores })
    }

    fn max_similarity(&self, queries: &[f32]) -> Result<Vec<f32>> {
        let q = self.prepare(queries)?;
        let mut out = vec![f32::NEG_INFINITY; self.rows];
        // Each tile's slice of `out`: tiles follow one another through the rows.
        let mut rest = out.as_mut_slice();
        let mut jobs = Vec::new();
        for tile in self.tiles(self.tile_rows) {
            let (best, tail) = rest.split_at_mut(tile.rows.len());
            jobs.push((tile, best));
            rest = tail;
        }
        jobs.into_par_iter()
            .for_each_init(Workspace::default, |ws, (tile, best)| {
                self.score_tile(&q, 0..q.count, &tile, ws, |_, sims, _| {
                    best.iter_mut().zip(sims).for_each(|(b, &s)| *b = b.max(s))
                });
            });
        Ok(out)
    }
}
