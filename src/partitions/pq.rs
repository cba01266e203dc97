//! 4-bit product-quantised codes of the rows' residuals (each row minus its partition's
//! centroid), scanned with 16-entry tables ("fast scan", as in ScaNN and faiss): every pair of
//! dimensions is one of 16 points of its own codebook, so a row's code takes a quarter byte per
//! dimension (32 bytes at 128-d, a quarter of the 8-bit codes), and a query measures 32 rows
//! with a few byte shuffles per pair of dimensions ([`Kernels::sum_lut16`]).
//!
//! A partition's codes are stored in blocks of 32 rows: for each table `t` (a pair of
//! dimensions; padded with empty tables to a multiple of [`LUT_GROUP`]), 16 bytes whose byte `i`
//! holds the codes of the block's rows `i` (low nibble) and `16 + i` (high nibble).

use crate::score::simd::{Kernels, LUT_GROUP};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Dimensions per codebook.
pub const SUB: usize = 2;
/// Points per codebook (4 bits).
pub const POINTS: usize = 16;
/// Rows per block of codes.
pub const BLOCK: usize = 32;
/// Lloyd iterations of each codebook.
const ITERS: usize = 12;

/// Codebooks of a `dim`-dimensional space.
pub fn codebooks(dim: usize) -> usize {
    dim.div_ceil(SUB)
}

/// Tables of a `dim`-dimensional query: one per codebook, padded to a multiple of [`LUT_GROUP`].
pub fn tables(dim: usize) -> usize {
    codebooks(dim).next_multiple_of(LUT_GROUP)
}

/// Bytes of one block of codes.
pub fn block_bytes(dim: usize) -> usize {
    tables(dim) * 16
}

/// Codebooks `[codebooks(dim), POINTS, SUB]` trained by Lloyd's k-means on the row-major
/// residuals `sample` (each codebook on its own dimensions; the second coordinate of the last
/// one is zero when `dim` is odd). Deterministic for a seed, whatever the thread count.
pub fn train(sample: &[f32], dim: usize, seed: u64) -> Vec<f32> {
    let n = sample.len() / dim.max(1);
    (0..codebooks(dim))
        .into_par_iter()
        .flat_map_iter(|b| {
            let points: Vec<[f32; SUB]> = (0..n)
                .map(|i| sub(&sample[i * dim..(i + 1) * dim], b))
                .collect();
            lloyd(&points, seed ^ b as u64).into_iter().flatten()
        })
        .collect()
}

/// Coordinates of codebook `b` in `x` (zero past its end).
fn sub(x: &[f32], b: usize) -> [f32; SUB] {
    std::array::from_fn(|j| x.get(b * SUB + j).copied().unwrap_or(0.0))
}

/// The nearest of `book`'s points to `p` (the first of equals).
fn nearest(book: &[[f32; SUB]], p: [f32; SUB]) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (i, c) in book.iter().enumerate() {
        let d = (0..SUB).map(|j| (c[j] - p[j]) * (c[j] - p[j])).sum::<f32>();
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

/// [`POINTS`] centres of `points`: seeded from distinct random values among them (so that
/// points of 16 values or fewer are each a centre, and stay one), an empty centre moved to a
/// random point.
fn lloyd(points: &[[f32; SUB]], seed: u64) -> [[f32; SUB]; POINTS] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut book = [[0f32; SUB]; POINTS];
    if points.is_empty() {
        return book;
    }
    let mut values = points.to_vec();
    let order = |a: &[f32; SUB], b: &[f32; SUB]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    values.sort_unstable_by(order);
    values.dedup_by(|a, b| order(a, b).is_eq());
    let picks = rand::seq::index::sample(&mut rng, values.len(), POINTS.min(values.len()));
    for (c, i) in book.iter_mut().zip(picks) {
        *c = values[i];
    }
    for _ in 0..ITERS {
        let mut sum = [[0f64; SUB]; POINTS];
        let mut count = [0usize; POINTS];
        for &p in points {
            let c = nearest(&book, p);
            count[c] += 1;
            (0..SUB).for_each(|j| sum[c][j] += f64::from(p[j]));
        }
        for c in 0..POINTS {
            book[c] = match count[c] {
                0 => points[rng.random_range(0..points.len())],
                m => std::array::from_fn(|j| (sum[c][j] / m as f64) as f32),
            };
        }
    }
    book
}

/// The code of `residual` in each codebook of `books`, into `out` (one per codebook).
pub fn encode(books: &[f32], residual: &[f32], out: &mut [u8]) {
    let books: &[[f32; SUB]] = bytemuck::cast_slice(books);
    for (b, (o, book)) in out.iter_mut().zip(books.chunks_exact(POINTS)).enumerate() {
        *o = nearest(book, sub(residual, b)) as u8;
    }
}

/// Write the codes of a partition's rows (`codes`: one byte per codebook per row, row after
/// row) into its blocks (`out`: whole blocks, zero-initialised).
pub fn pack(codes: &[u8], books: usize, out: &mut [u8]) {
    for (i, code) in codes.chunks_exact(books.max(1)).enumerate() {
        let (block, lane) = (i / BLOCK, i % BLOCK);
        let shift = if lane < 16 { 0 } else { 4 };
        for (t, &c) in code.iter().enumerate() {
            let at = block_at(block, t, lane % 16, books);
            out[at] |= c << shift;
        }
    }
}

/// Byte of `lane` (0..16) of table `t` in block `block`, for `books` codebooks.
fn block_at(block: usize, t: usize, lane: usize, books: usize) -> usize {
    (block * books.next_multiple_of(LUT_GROUP) + t) * 16 + lane
}

/// A query's tables: `dist ~ bias + delta * sum` where `sum` is [`Kernels::sum_lut16`]'s result
/// for a row's code, up to what its partition (and, for l2, its norm) adds.
pub struct Lut {
    /// The 8-bit tables, [`tables`] of 16.
    pub tables: Vec<u8>,
    /// Value of one table unit.
    pub delta: f32,
    /// What the tables' minima add to every row.
    pub bias: f32,
}

impl Lut {
    /// The tables of `-factor * q . residual` for the prepared query `q` (`factor` 1 for cos
    /// and ip, 2 for l2), each table shifted to its minimum and all scaled to one unit that
    /// keeps every entry within a byte and every row's sum within 16 bits (past about 1000
    /// dimensions the 16 bits, not the byte, set the unit, and the tables grow coarser).
    pub fn new(q: &[f32], books: &[f32], factor: f32) -> Self {
        let dim = q.len();
        let mut exact = vec![[0f32; POINTS]; codebooks(dim)];
        let mut lo = vec![0f32; exact.len()];
        let (mut widest, mut total) = (0f32, 0f32);
        for (b, ((t, m), book)) in exact
            .iter_mut()
            .zip(&mut lo)
            .zip(books.chunks_exact(POINTS * SUB))
            .enumerate()
        {
            let qs = sub(q, b).map(|x| -factor * x);
            for (e, p) in t.iter_mut().zip(book.chunks_exact(SUB)) {
                *e = (0..SUB).map(|j| qs[j] * p[j]).sum();
            }
            let (min, max) = t
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            *m = min;
            widest = widest.max(max - min);
            total += max - min;
        }
        // Rounding adds at most half a unit a table: the sums stay below 2^16.
        let room = f32::from(u16::MAX) - exact.len() as f32;
        let delta = (widest / 255.0).max(total / room.max(1.0));
        let delta = if delta > 0.0 && delta.is_finite() {
            delta
        } else {
            1.0
        };
        let mut tables = vec![0u8; tables(dim) * 16];
        for ((out, t), &m) in tables.chunks_exact_mut(16).zip(&exact).zip(&lo) {
            for (o, &x) in out.iter_mut().zip(t) {
                // Rounded to nearest (x - m >= 0; the cast saturates at 255).
                *o = ((x - m) / delta + 0.5) as u8;
            }
        }
        Lut {
            tables,
            delta,
            bias: lo.iter().sum(),
        }
    }

    /// The table sums of `blocks` (whole blocks of this query's width) into `out`, 32 per block.
    pub fn sums(&self, kernels: &Kernels, blocks: &[u8], out: &mut Vec<u16>) {
        let n = blocks.len() / self.tables.len().max(1);
        out.clear();
        out.resize(n * BLOCK, 0);
        (kernels.sum_lut16)(&self.tables, blocks, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::simd::scalar_kernels;

    /// Codes decoded from the blocks equal the codes packed, and the table sums reproduce the
    /// exact `-q . decoded` within the rounding of one unit per table.
    #[test]
    fn packed_codes_sum_to_the_decoded_inner_product() {
        let dim = 13;
        let rows = 45;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let data: Vec<f32> = (0..rows * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let books = train(&data, dim, 3);
        assert_eq!(books.len(), codebooks(dim) * POINTS * SUB);
        let nb = codebooks(dim);
        let mut codes = vec![0u8; rows * nb];
        for (x, c) in data.chunks_exact(dim).zip(codes.chunks_exact_mut(nb)) {
            encode(&books, x, c);
        }
        let mut blocks = vec![0u8; rows.div_ceil(BLOCK) * block_bytes(dim)];
        pack(&codes, nb, &mut blocks);
        let q: Vec<f32> = (0..dim).map(|j| (j as f32 - 6.0) / 7.0).collect();
        let lut = Lut::new(&q, &books, 1.0);
        let mut sums = Vec::new();
        lut.sums(&scalar_kernels(), &blocks, &mut sums);
        for (i, code) in codes.chunks_exact(nb).enumerate() {
            let decoded: Vec<f32> = (0..dim)
                .map(|j| books[(j / SUB * POINTS + code[j / SUB] as usize) * SUB + j % SUB])
                .collect();
            let exact = -q.iter().zip(&decoded).map(|(a, b)| a * b).sum::<f32>();
            let approx = lut.bias + lut.delta * f32::from(sums[i]);
            assert!(
                (exact - approx).abs() <= lut.delta * nb as f32,
                "row {i}: {exact} vs {approx}"
            );
        }
    }

    /// With 16 or fewer distinct values a codebook holds each of them, so encoding is lossless.
    #[test]
    fn few_distinct_points_are_encoded_exactly() {
        let dim = 4;
        let data: Vec<f32> = (0..64)
            .flat_map(|i| {
                let v = (i % 5) as f32;
                [v, -v, 2.0 * v, 0.5]
            })
            .collect();
        let books = train(&data, dim, 1);
        let mut code = [0u8; 2];
        for x in data.chunks_exact(dim) {
            encode(&books, x, &mut code);
            for (b, &c) in code.iter().enumerate() {
                let p = &books[(b * POINTS + c as usize) * SUB..][..SUB];
                assert_eq!(p, &x[b * SUB..b * SUB + SUB]);
            }
        }
    }
}
