//! The int8 format of the matrix kernels ([`super::MatrixKernel`]) and its portable reference.
//!
//! Every vector `v` is stored as codes `c = clamp(round(v / s), -127, 127)` with its own scale
//! `s` (the vector's largest magnitude over 127, rounded up to 16 significant bits, so that
//! `s c` is exact in f32). Rows keep signed codes; queries keep `c + 128` as unsigned bytes (the
//! operand order `vpdpbusd` multiplies), and a kernel subtracts `128` times the row's code sum.
//! Blocks are 16 vectors over k-blocks of [`KBLOCK`] dimensions (the last zero-padded), 1 KiB
//! each ([`super::operand`]):
//! - corpus rows: block `(g, kb)` holds rows `16 g ..` as 16 rows of 64 codes, row-major;
//! - queries: block `(b, kb)` holds queries `16 b ..` as 16 quads of dimensions, each row the
//!   quad of every query in turn (`[quad][query][4]`).
//!
//! A kernel computes `c[r * queries + q] = s_r t_q (sum_i (u_qi - 128) x_ri)` in f32, exactly
//! up to the f32 rounding of that last product (the integer sum is exact). The rows' rounding
//! enters the error bound (`score::exact`) as `rho = E / M`, `E` the largest exact error norm
//! `|x - s c|` of a packed row and `M` the largest row norm.

use super::operand::{check, start_pack, Operand, OperandRef, BLOCK_WORDS};
use crate::store::Vectors;
use half::slice::HalfFloatSliceExt;

/// Dimensions per k-block.
pub const KBLOCK: usize = 64;
/// The offset of the queries' unsigned codes.
const OFFSET: i32 = 128;

/// The scale of a vector whose largest magnitude is `max`: at least `max / 127` up to the
/// rounding of that quotient, with at most 16 significant bits (0 for a zero vector).
pub fn scale(max: f32) -> f32 {
    let s = max / 127.0;
    if s == 0.0 || !s.is_finite() {
        return s;
    }
    f32::from_bits((s.to_bits() + 0xff) & !0xff)
}

/// The code of `v` under scale `s`, rounded to nearest even (a zero scale codes everything as
/// 0).
pub fn code(v: f32, s: f32) -> i8 {
    if s == 0.0 {
        0
    } else {
        (v / s).round_ties_even().clamp(-127.0, 127.0) as i8
    }
}

/// The bytes of an operand's words.
pub fn bytes(words: &[u16]) -> &[u8] {
    bytemuck::cast_slice(words)
}

fn bytes_mut(words: &mut [u16]) -> &mut [u8] {
    bytemuck::cast_slice_mut(words)
}

/// Packs rows `x` (`[n, dim]`) as the corpus operand of `padded` rows (a multiple of
/// [`super::operand::BLOCK`], at least `n`) into `out`, and their f32 sums of squares into
/// `norms2`; returns `rho`, the largest exact error norm of a row over the largest norm (the
/// portable [`super::MatrixKernel::pack`]).
pub fn pack_rows(
    x: Vectors<'_>,
    dim: usize,
    padded: usize,
    out: &mut Operand,
    norms2: &mut Vec<f32>,
) -> f64 {
    let (n, kb) = start_pack(x, (dim, KBLOCK), padded, true, out, norms2);
    let mut wide = vec![0.0f32; dim];
    let codes = bytes_mut(&mut out.codes);
    for i in 0..n {
        let row: &[f32] = match x {
            Vectors::F16(v) => {
                v[i * dim..(i + 1) * dim].convert_to_f32_slice(&mut wide);
                &wide
            }
            Vectors::F32(v) => &v[i * dim..(i + 1) * dim],
        };
        norms2.push(row.iter().map(|v| v * v).sum());
        let s = scale(row.iter().fold(0.0f32, |m, v| m.max(v.abs())));
        let (g, r) = (i / 16, i % 16);
        let (mut sum, mut err2) = (0i32, 0.0f64);
        for (j, &v) in row.iter().enumerate() {
            let c = code(v, s);
            sum += i32::from(c);
            err2 += (f64::from(v) - f64::from(s) * f64::from(c)).powi(2);
            codes[2 * ((g * kb + j / KBLOCK) * BLOCK_WORDS) + r * KBLOCK + j % KBLOCK] = c as u8;
        }
        out.scales[i] = s;
        out.sums[i] = sum;
        out.errors[i] = error_norm(err2);
    }
    rho(&out.errors, norms2)
}

/// An upper bound in f32 on the norm of a row's coding error from its f64 sum of squares
/// (within `dim 2^-53` of the exact one).
pub fn error_norm(err2: f64) -> f32 {
    let e = (err2 * (1.0 + 1e-9)).sqrt() * (1.0 + 1e-9);
    let f = e as f32;
    if f64::from(f) < e {
        f.next_up()
    } else {
        f
    }
}

/// `rho` from the rows' error norm bounds and their f32 sums of squares: `E / sqrt(max norms2)`
/// rounded up, so that `rho M >= E` for any `M >= sqrt(max norms2)`.
pub fn rho(errors: &[f32], norms2: &[f32]) -> f64 {
    let e = f64::from(errors.iter().fold(0.0f32, |a, &b| a.max(b)));
    let max2 = f64::from(norms2.iter().fold(0.0f32, |a, &b| a.max(b)));
    if e == 0.0 || max2 == 0.0 {
        return 0.0;
    }
    e / max2.sqrt() * (1.0 + 1e-9)
}

/// Packs queries `q` (`[n, dim]` f32) as the query operand of `padded` queries (a multiple of
/// [`super::operand::BLOCK`], at least `n`) into `out`, and returns them as the kernel reads
/// them (`t c`, exact in f32) for the error bound.
pub fn pack_queries(q: &[f32], dim: usize, padded: usize, out: &mut Operand) -> Vec<f32> {
    let kb = dim.div_ceil(KBLOCK);
    out.reset(padded, kb, true);
    let mut seen = Vec::with_capacity(q.len());
    let codes = bytes_mut(&mut out.codes);
    for (n, query) in q.chunks_exact(dim).enumerate() {
        let t = scale(query.iter().fold(0.0f32, |m, v| m.max(v.abs())));
        out.scales[n] = t;
        let (b, j) = (n / 16, n % 16);
        for (i, &v) in query.iter().enumerate() {
            let c = code(v, t);
            seen.push(t * f32::from(c));
            let (k, quad, e) = (i / KBLOCK, i % KBLOCK / 4, i % 4);
            codes[2 * ((b * kb + k) * BLOCK_WORDS) + quad * 64 + 4 * j + e] =
                (i32::from(c) + OFFSET) as u8;
        }
    }
    seen
}

/// The result of a row and a query from their exact code product `dot` (with the offset):
/// `s t (dot - 128 sum)` in f32.
pub fn finish(dot: i32, sum: i32, s: f32, t: f32) -> f32 {
    (dot - OFFSET * sum) as f32 * (s * t)
}

/// The portable kernel (the reference the SIMD ones are tested against).
pub fn matrix(kb: usize, a: OperandRef<'_>, b: OperandRef<'_>, c: &mut [f32]) {
    let (rows, queries) = check(kb, a, b, c, true);
    let (ra, qb) = (bytes(a.codes), bytes(b.codes));
    for r in 0..rows {
        for q in 0..queries {
            let mut dot = 0i32;
            for k in 0..kb {
                let row = &ra[2 * ((r / 16) * kb + k) * BLOCK_WORDS + (r % 16) * KBLOCK..];
                let block = &qb[2 * ((q / 16) * kb + k) * BLOCK_WORDS..];
                for (i, &x) in row[..KBLOCK].iter().enumerate() {
                    let u = block[(i / 4) * 64 + 4 * (q % 16) + i % 4];
                    dot += i32::from(u) * i32::from(x as i8);
                }
            }
            c[r * queries + q] = finish(dot, a.sums[r], a.scales[r], b.scales[q]);
        }
    }
}
