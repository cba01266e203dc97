//! The int8 matrix kernel of [`super::super::MatrixKernel`] on x86-64 with AVX512-VNNI
//! (`vpdpbusd`: 16 x 4 byte products an instruction, summed exactly in i32), and its row
//! packing. Operand layouts and the arithmetic are those of [`super::super::int8`], whose
//! portable code gives the same codes, sums, scales and scores.

use super::super::int8::{self, KBLOCK};
use super::super::operand::{check, start_pack, Operand, OperandRef, BLOCK_WORDS};
use crate::store::Vectors;
use half::f16;
use std::arch::x86_64::*;

/// Whether the CPU has AVX512-VNNI (and the AVX-512 F/BW it extends).
pub fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
}

/// Rows per micro-tile (broadcast), against two blocks of 16 queries (loaded): 8 x 2
/// accumulators.
const MR: usize = 8;
/// Bytes of one block of 16 vectors over one k-block.
const BLOCK_BYTES: usize = 2 * BLOCK_WORDS;

/// The AVX512-VNNI kernel: 8 rows x 32 queries a micro-tile, each step broadcasting a row's
/// quad of codes against 16 queries' quads.
pub fn matrix_vnni(kb: usize, a: OperandRef<'_>, b: OperandRef<'_>, c: &mut [f32]) {
    assert!(has_vnni(), "matrix_vnni: AVX512-VNNI is not available");
    let (rows, queries) = check(kb, a, b, c, true);
    /// # Safety
    /// The CPU must support avx512f and avx512vnni; the operands must be as `check` proves.
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn run(
        kb: usize,
        a: OperandRef<'_>,
        b: OperandRef<'_>,
        c: &mut [f32],
        rows: usize,
        queries: usize,
    ) {
        let step = kb * BLOCK_BYTES;
        let (ra, qb) = (int8::bytes(a.codes).as_ptr(), int8::bytes(b.codes).as_ptr());
        for r0 in (0..rows).step_by(MR) {
            let (g, r) = (r0 / 16, r0 % 16);
            for j in (0..queries / 16).step_by(2) {
                let mut acc = [[_mm512_setzero_si512(); 2]; MR];
                for k in 0..kb {
                    let pa = ra.add(g * step + k * BLOCK_BYTES + r * KBLOCK);
                    let pb = qb.add(j * step + k * BLOCK_BYTES);
                    for p in 0..KBLOCK / 4 {
                        let q0 = _mm512_loadu_si512(pb.add(p * 64).cast());
                        let q1 = _mm512_loadu_si512(pb.add(step + p * 64).cast());
                        for (i, s) in acc.iter_mut().enumerate() {
                            let quad = pa.add(i * KBLOCK + 4 * p).cast::<i32>().read_unaligned();
                            let x = _mm512_set1_epi32(quad);
                            s[0] = _mm512_dpbusd_epi32(s[0], q0, x);
                            s[1] = _mm512_dpbusd_epi32(s[1], q1, x);
                        }
                    }
                }
                let t = b.scales.as_ptr().add(j * 16);
                let (t0, t1) = (_mm512_loadu_ps(t), _mm512_loadu_ps(t.add(16)));
                for (i, s) in acc.iter().enumerate() {
                    let row = r0 + i;
                    // int8::finish on 16 lanes: (dot - 128 sum) as f32 * (s_r * t_q).
                    let off = _mm512_set1_epi32(128 * a.sums[row]);
                    let sr = _mm512_set1_ps(a.scales[row]);
                    let out = c.as_mut_ptr().add(row * queries + j * 16);
                    for (h, (acc, t)) in [(s[0], t0), (s[1], t1)].into_iter().enumerate() {
                        let dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, off));
                        _mm512_storeu_ps(out.add(16 * h), _mm512_mul_ps(dot, _mm512_mul_ps(sr, t)));
                    }
                }
            }
        }
    }
    // SAFETY: has_vnni() checked the CPU; check() proved every read (rows in groups of 16,
    // queries in blocks of 16, kb k-blocks of 1 KiB each, a scale and sum per row, a scale per
    // query) and write (rows x queries) is in bounds.
    unsafe { run(kb, a, b, c, rows, queries) }
}

/// [`int8::pack_rows`] with AVX-512: 16 values a step widened (f16), coded, summed and their
/// errors summed in f64 (the same codes, sums and scales; `rho` up to the order of the sums).
pub fn pack_rows_int8(
    x: Vectors<'_>,
    dim: usize,
    padded: usize,
    out: &mut Operand,
    norms2: &mut Vec<f32>,
) -> f64 {
    assert!(has_vnni(), "pack_rows_int8: AVX512-VNNI is not available");
    let (n, kb) = start_pack(x, (dim, KBLOCK), padded, true, out, norms2);
    /// # Safety
    /// The CPU must support avx512f and avx512bw; `out` must hold the operand of `n <= padded`
    /// rows of `kb` k-blocks and `x` `n * dim` values.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn rows(
        x: Vectors<'_>,
        dim: usize,
        kb: usize,
        out: &mut Operand,
        norms2: &mut Vec<f32>,
    ) -> f64 {
        // A row widened to f32, zero-padded to whole steps of 16 (zeros code to 0, error 0).
        let mut wide = vec![0.0f32; dim.next_multiple_of(16)];
        let codes = bytemuck::cast_slice_mut::<u16, u8>(&mut out.codes);
        for i in 0..x.len() / dim {
            match x {
                Vectors::F16(v) => {
                    let row: &[f16] = &v[i * dim..(i + 1) * dim];
                    let (whole, tail) = row.split_at(dim / 16 * 16);
                    for (w, h) in wide.chunks_exact_mut(16).zip(whole.chunks_exact(16)) {
                        let v = _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr().cast()));
                        _mm512_storeu_ps(w.as_mut_ptr(), v);
                    }
                    for (w, h) in wide[whole.len()..].iter_mut().zip(tail) {
                        *w = h.to_f32();
                    }
                }
                Vectors::F32(v) => wide[..dim].copy_from_slice(&v[i * dim..(i + 1) * dim]),
            }
            let (mut sq, mut max) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for c in wide.chunks_exact(16) {
                let v = _mm512_loadu_ps(c.as_ptr());
                sq = _mm512_fmadd_ps(v, v, sq);
                max = _mm512_max_ps(max, _mm512_abs_ps(v));
            }
            // The portable sum is sequential: the norm bound allows any order.
            norms2.push(_mm512_reduce_add_ps(sq));
            let s = int8::scale(_mm512_reduce_max_ps(max));
            let (vs, lim) = (_mm512_set1_ps(s), _mm512_set1_epi32(127));
            let (mut sum, mut err2) = (_mm512_setzero_si512(), _mm512_setzero_pd());
            let (g, r) = (i / 16, i % 16);
            for (m, c) in wide.chunks_exact(16).enumerate() {
                let v = _mm512_loadu_ps(c.as_ptr());
                let code = if s == 0.0 {
                    _mm512_setzero_si512()
                } else {
                    // Rounded to nearest even, as the portable code does.
                    let q = _mm512_cvtps_epi32(_mm512_div_ps(v, vs));
                    _mm512_max_epi32(
                        _mm512_min_epi32(q, lim),
                        _mm512_sub_epi32(_mm512_setzero_si512(), lim),
                    )
                };
                sum = _mm512_add_epi32(sum, code);
                // v - s c is exact in f32 (s c is, and is within a factor 2 of v or 0).
                let e = _mm512_sub_ps(v, _mm512_mul_ps(vs, _mm512_cvtepi32_ps(code)));
                let (lo, hi) = (
                    _mm512_cvtps_pd(_mm512_castps512_ps256(e)),
                    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
                        _mm512_castps_pd(e),
                        1,
                    ))),
                );
                err2 = _mm512_fmadd_pd(lo, lo, _mm512_fmadd_pd(hi, hi, err2));
                let at =
                    2 * (g * kb + m * 16 / KBLOCK) * BLOCK_WORDS + r * KBLOCK + m * 16 % KBLOCK;
                _mm_storeu_si128(
                    codes.as_mut_ptr().add(at).cast(),
                    _mm512_cvtepi32_epi8(code),
                );
            }
            let err2 = _mm512_reduce_add_pd(err2);
            out.scales[i] = s;
            out.sums[i] = _mm512_reduce_add_epi32(sum);
            out.errors[i] = int8::error_norm(err2);
        }
        int8::rho(&out.errors, norms2)
    }
    // SAFETY: has_vnni() checked avx512f and avx512bw; out holds operand_len(padded, kb) words
    // with a scale and sum per padded row, covering every row i < n <= padded, and each step of
    // 16 codes lands inside its row's 64-byte k-block (kb * 64 >= dim rounded up to 16).
    unsafe {
        if n == 0 {
            return 0.0;
        }
        rows(x, dim, kb, out, norms2)
    }
}
