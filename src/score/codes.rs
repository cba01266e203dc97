//! The traversal codes shared by construction and the blocks layout: every vector as one i8 per
//! dimension (per-dimension scale and offset over the range of the data, a few outlying rows
//! clipped), queries quantised to i16, and the integer inner product between them (`vpmaddwd`).
//! A code takes a quarter of an f32 vector and half of the stored f16 one; beams walked on codes
//! are re-ranked exactly.

use super::simd::Kernels;
use super::space::{prefetch, Distance, Space};
use crate::error::Result;
use crate::format::Metric;
use crate::pages::Pages;
use rayon::prelude::*;

/// Per-dimension scale and offset: code `c` of dimension `j` stands for `offset[j] + scale[j] c`.
pub(crate) struct Quantiser {
    pub scale: Vec<f32>,
    pub offset: Vec<f32>,
}

impl Quantiser {
    /// The range of each dimension over all rows of `space` (narrowed where a few rows lie far
    /// outside it: [`Quantiser::without_outliers`]), mapped onto -128..=127.
    pub fn train(space: &Space<'_>) -> Self {
        let dim = space.dim;
        let bounds = || (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]);
        let widen = |(mut lo, mut hi): (Vec<f32>, Vec<f32>), row: &[f32]| {
            for ((l, h), &x) in lo.iter_mut().zip(&mut hi).zip(row) {
                *l = l.min(x);
                *h = h.max(x);
            }
            (lo, hi)
        };
        let (lo, hi) = (0..space.rows)
            .into_par_iter()
            .fold(
                || (bounds(), vec![0f32; dim]),
                |(b, mut row), i| {
                    space.row(i, &mut row);
                    (widen(b, &row), row)
                },
            )
            .map(|(b, _)| b)
            .reduce(bounds, |a, (lo, hi)| widen(widen(a, &lo), &hi));
        let (lo, hi) = Self::without_outliers(space, lo, hi);
        let (scale, offset) = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| {
                if h > l {
                    let scale = (h - l) / 255.0;
                    (scale, l + 128.0 * scale)
                } else {
                    (0.0, if l.is_finite() { l } else { 0.0 })
                }
            })
            .unzip();
        Quantiser { scale, offset }
    }

    /// The range `lo..=hi` of each dimension narrowed where a few outlying rows stretch it:
    /// to the 0.1%..99.9% quantiles of a sample of rows widened by their own span on each side.
    /// Typical data stays within that (its range is unchanged); a single row of 1e5 among unit
    /// values would otherwise leave every other row one or two codes, and the graph walk blind.
    /// Rows beyond the range get the end codes (`encode` clamps); the re-rank stays exact.
    fn without_outliers(
        space: &Space<'_>,
        mut lo: Vec<f32>,
        mut hi: Vec<f32>,
    ) -> (Vec<f32>, Vec<f32>) {
        /// Values sampled in all (rows x dimensions), bounding the memory of the sample.
        const SAMPLE_VALUES: usize = 1 << 22;
        let (rows, dim) = (space.rows, space.dim);
        let take = (SAMPLE_VALUES / dim.max(1)).clamp(1, rows.max(1));
        let step = rows.div_ceil(take).max(1);
        let picked: Vec<usize> = (0..rows).step_by(step).collect();
        let m = picked.len();
        if m == 0 {
            return (lo, hi);
        }
        // Column-major: each dimension's sampled values in one run.
        let mut columns = vec![0f32; m * dim];
        let mut row = vec![0f32; dim];
        for (s, &i) in picked.iter().enumerate() {
            space.row(i, &mut row);
            for (j, &x) in row.iter().enumerate() {
                columns[j * m + s] = x;
            }
        }
        // At least one row each side from a hundred sampled rows on.
        let cut = (m / 1000).max(usize::from(m >= 100));
        columns
            .par_chunks_mut(m)
            .zip(lo.par_iter_mut().zip(hi.par_iter_mut()))
            .for_each(|(col, (l, h))| {
                let q_lo = *col.select_nth_unstable_by(cut, f32::total_cmp).1;
                let q_hi = *col.select_nth_unstable_by(m - 1 - cut, f32::total_cmp).1;
                let span = q_hi - q_lo;
                if span > 0.0 && span.is_finite() {
                    *l = l.max(q_lo - span);
                    *h = h.min(q_hi + span);
                }
            });
        (lo, hi)
    }

    /// The code of `x` into `out`; returns the squared norm of what the code stands for.
    pub fn encode(&self, x: &[f32], out: &mut [i8]) -> f32 {
        let mut sq = 0.0f32;
        for (((c, &x), &s), &o) in out.iter_mut().zip(x).zip(&self.scale).zip(&self.offset) {
            *c = if s > 0.0 {
                ((x - o) / s).round().clamp(-128.0, 127.0) as i8
            } else {
                0
            };
            let decoded = o + s * f32::from(*c);
            sq += decoded * decoded;
        }
        sq
    }
}

/// A query quantised for the codes: `values * unit` approximates the query times the scale.
pub(crate) struct CodeQuery {
    values: Vec<i16>,
    unit: f32,
}

impl CodeQuery {
    /// `q` (prepared for the metric) in the form codes under `scale` are compared with. The
    /// offset adds the same amount to every node's distance and is left out.
    pub fn new(q: &[f32], scale: &[f32]) -> Self {
        let scaled: Vec<f32> = q.iter().zip(scale).map(|(x, s)| x * s).collect();
        let top = scaled.iter().fold(0f32, |m, x| m.max(x.abs()));
        // |sum| <= dim * 128 * limit must fit an i32.
        let limit = (i32::MAX as f32 / (128.0 * scaled.len().max(1) as f32)).min(32767.0);
        let factor = if top > 0.0 { limit / top } else { 0.0 };
        CodeQuery {
            values: scaled.iter().map(|x| (x * factor).round() as i16).collect(),
            unit: if factor > 0.0 { 1.0 / factor } else { 0.0 },
        }
    }

    /// The distance of a node with `code` (and, for l2, the squared norm its code stands for):
    /// the metric's distance up to a constant shared by all nodes of this query.
    #[inline]
    pub fn dist(&self, kernels: &Kernels, code: &[i8], sq_norm: Option<f32>) -> f32 {
        let dot = (kernels.dot_i8_i16)(code, &self.values) as f32 * self.unit;
        match sq_norm {
            Some(n) => n - 2.0 * dot,
            None => -dot,
        }
    }
}

impl CodeQuery {
    /// [`CodeQuery::dist`] of each of the consecutive codes in `codes` into `out` (one per
    /// code; `sq_norms` as long as `out` for l2, else empty).
    pub fn dists(&self, kernels: &Kernels, codes: &[i8], sq_norms: &[f32], out: &mut [f32]) {
        let mut dots = [0i32; SCAN_BLOCK];
        for (i, chunk) in out.chunks_mut(SCAN_BLOCK).enumerate() {
            let at = i * SCAN_BLOCK;
            let dots = &mut dots[..chunk.len()];
            let n = self.values.len();
            (kernels.dot_i8_i16_rows)(&codes[at * n..(at + chunk.len()) * n], &self.values, dots);
            for (j, (o, &dot)) in chunk.iter_mut().zip(dots.iter()).enumerate() {
                let dot = dot as f32 * self.unit;
                *o = match sq_norms.get(at + j) {
                    Some(n) => n - 2.0 * dot,
                    None => -dot,
                };
            }
        }
    }
}

/// Codes measured per call of the rows kernel in [`CodeQuery::dists`].
const SCAN_BLOCK: usize = 64;

/// The codes of all rows in row order, for construction.
pub(crate) struct RowCodes {
    pub quantiser: Quantiser,
    codes: Pages<i8>,
    /// Squared norms of the decoded codes (l2 only, else empty).
    pub sq_norms: Vec<f32>,
    rows: usize,
    dim: usize,
    kernels: &'static Kernels,
}

impl RowCodes {
    /// Train the quantiser on `space` and encode every row; an error when there is no memory
    /// for the codes.
    pub fn of(space: &Space<'_>) -> Result<Self> {
        let quantiser = Quantiser::train(space);
        let dim = space.dim;
        let mut codes = Pages::filled(space.rows * dim, 0i8)?;
        let sq_norms: Vec<f32> = codes
            .par_chunks_mut(dim.max(1))
            .enumerate()
            .map_init(
                || vec![0f32; dim],
                |row, (i, out)| {
                    space.row(i, row);
                    quantiser.encode(row, out)
                },
            )
            .collect();
        Ok(RowCodes {
            quantiser,
            codes,
            sq_norms: if space.metric == Metric::L2 {
                sq_norms
            } else {
                Vec::new()
            },
            rows: space.rows,
            dim,
            kernels: space.kernels,
        })
    }

    /// The code of row `i`.
    pub fn code(&self, i: usize) -> &[i8] {
        &self.codes[i * self.dim..(i + 1) * self.dim]
    }

    /// `q` (prepared for the metric) quantised for these codes.
    pub fn query(&self, q: &[f32]) -> CodeQuery {
        CodeQuery::new(q, &self.quantiser.scale)
    }
}

impl Distance for RowCodes {
    type Query = CodeQuery;

    #[inline]
    fn rows(&self) -> usize {
        self.rows
    }

    #[inline]
    fn dist(&self, i: usize, q: &CodeQuery) -> f32 {
        q.dist(self.kernels, self.code(i), self.sq_norms.get(i).copied())
    }

    #[inline]
    fn prefetch(&self, i: usize) {
        prefetch(self.codes.as_ptr().wrapping_add(i * self.dim), self.dim);
    }
}
