//! The bf16 format of the matrix kernels ([`super::MatrixKernel`]) and its portable reference.
//!
//! Both operands come in blocks of 16 vectors and k-blocks of [`KBLOCK`] dimensions (the last
//! zero-padded), each block 1 KiB ([`super::operand`]).
//! - Corpus rows (the tile's `A`): block `(g, kb)` holds rows `16 g ..` as 16 rows of 32 values
//!   (dimensions `32 kb ..`), row-major.
//! - Queries (the tile's `B`): block `(b, kb)` holds queries `16 b ..` as 16 pairs of
//!   dimensions, each row the pair of every query in turn (`[pair][query][2]`, the "VNNI"
//!   layout the dot-product instructions read).
//!
//! A kernel computes `c[r * queries + q]` = the f32 sum of the products of row `r` and query
//! `q`, for all rows and queries of the operands (each a multiple of [`super::operand::BLOCK`]
//! vectors).

use super::operand::{check, start_pack, Operand, OperandRef, BLOCK_WORDS};
use crate::store::Vectors;
use half::bf16;
use half::slice::HalfFloatSliceExt;

/// Dimensions per k-block.
pub const KBLOCK: usize = 32;
/// Relative rounding of a value to bf16 (8 significant bits): the rows' `rho` of the error
/// bound (`score::exact`).
pub const RHO: f64 = 1.0 / 256.0;

/// `x` rounded to bf16 (to nearest, ties to even), as bits.
pub fn round(x: f32) -> u16 {
    bf16::from_f32(x).to_bits()
}

/// Packs rows `x` (`[n, dim]`) as the corpus operand of `padded` rows (a multiple of
/// [`super::operand::BLOCK`], at least `n`) into `out`, and their f32 sums of squares into
/// `norms2`; returns [`RHO`] (the portable [`super::MatrixKernel::pack`]).
pub fn pack_rows(
    x: Vectors<'_>,
    dim: usize,
    padded: usize,
    out: &mut Operand,
    norms2: &mut Vec<f32>,
) -> f64 {
    let (n, kb) = start_pack(x, (dim, KBLOCK), padded, false, out, norms2);
    let mut wide = vec![0.0f32; dim];
    for i in 0..n {
        let row: &[f32] = match x {
            Vectors::F16(v) => {
                v[i * dim..(i + 1) * dim].convert_to_f32_slice(&mut wide);
                &wide
            }
            Vectors::F32(v) => &v[i * dim..(i + 1) * dim],
        };
        norms2.push(row.iter().map(|v| v * v).sum());
        let (g, r) = (i / 16, i % 16);
        for (k, chunk) in row.chunks(KBLOCK).enumerate() {
            let at = (g * kb + k) * BLOCK_WORDS + r * KBLOCK;
            out.codes[at..at + chunk.len()]
                .iter_mut()
                .zip(chunk)
                .for_each(|(o, &v)| *o = round(v));
        }
    }
    RHO
}

/// Packs queries `q` (`[n, dim]` f32) as the query operand of `padded` queries (a multiple of
/// [`super::operand::BLOCK`], at least `n`) into `out`, and returns them as the kernel reads
/// them (`[n, dim]`, widened back to f32) for the error bound.
pub fn pack_queries(q: &[f32], dim: usize, padded: usize, out: &mut Operand) -> Vec<f32> {
    let kb = dim.div_ceil(KBLOCK);
    out.reset(padded, kb, false);
    let mut seen = Vec::with_capacity(q.len());
    for (n, query) in q.chunks_exact(dim).enumerate() {
        let (b, j) = (n / 16, n % 16);
        for (i, &v) in query.iter().enumerate() {
            let h = round(v);
            seen.push(bf16::from_bits(h).to_f32());
            let (pair, e) = (i / 2, i % 2);
            out.codes[b * kb * BLOCK_WORDS + pair * KBLOCK + 2 * j + e] = h;
        }
    }
    seen
}

/// The portable kernel (the reference the SIMD ones are tested against): the products of bf16
/// values summed in f32, pair by pair.
pub fn matrix(kb: usize, a: OperandRef<'_>, b: OperandRef<'_>, c: &mut [f32]) {
    let (rows, queries) = check(kb, a, b, c, false);
    let (a, b) = (a.codes, b.codes);
    let v = |h: u16| bf16::from_bits(h).to_f32();
    for r in 0..rows {
        for q in 0..queries {
            let mut s = 0.0f32;
            for k in 0..kb {
                let ra = &a[((r / 16) * kb + k) * BLOCK_WORDS + (r % 16) * KBLOCK..][..KBLOCK];
                let qb = &b[((q / 16) * kb + k) * BLOCK_WORDS..][..BLOCK_WORDS];
                for p in 0..KBLOCK / 2 {
                    let at = p * KBLOCK + 2 * (q % 16);
                    s += v(ra[2 * p]) * v(qb[at]) + v(ra[2 * p + 1]) * v(qb[at + 1]);
                }
            }
            c[r * queries + q] = s;
        }
    }
}
