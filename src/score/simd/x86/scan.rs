//! The scan kernels of the partitioned search: one query against a panel of centroids, and a
//! run of 8-bit codes against one quantised query.

use super::*;

/// Defines [`Kernels::dot_panel`](super::super::Kernels) for `$lanes`-wide registers: the panel's
/// `PANEL / $lanes` registers of sums, twice (even and odd dimensions), so that enough
/// independent FMA chains are in flight to hide their latency.
macro_rules! panel_kernel {
    ($name:ident, $feat:literal, $lanes:literal, $zero:ident, $load:ident, $store:ident, $set1:ident, $add:ident, $fma:ident) => {
        /// # Safety
        /// The CPU must support the features named in the attribute. Reads
        /// `q.len() * PANEL` values of `panel`, checked first.
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(q: &[f32], panel: &[f32], out: &mut [f32; super::super::PANEL]) {
            const V: usize = super::super::PANEL / $lanes;
            let dim = q.len();
            assert!(
                panel.len() >= dim * super::super::PANEL,
                "panel shorter than dim x PANEL"
            );
            let p = panel.as_ptr();
            let (mut even, mut odd) = ([$zero(); V], [$zero(); V]);
            // SAFETY (all loads): j + 1 < dim, resp. j < dim, so the panel row ends within
            // dim * PANEL <= panel.len().
            let mut j = 0;
            while j + 2 <= dim {
                let (x, y) = ($set1(q[j]), $set1(q[j + 1]));
                for v in 0..V {
                    even[v] = $fma(
                        x,
                        $load(p.add(j * super::super::PANEL + v * $lanes)),
                        even[v],
                    );
                    odd[v] = $fma(
                        y,
                        $load(p.add((j + 1) * super::super::PANEL + v * $lanes)),
                        odd[v],
                    );
                }
                j += 2;
            }
            if j < dim {
                let x = $set1(q[j]);
                for v in 0..V {
                    even[v] = $fma(
                        x,
                        $load(p.add(j * super::super::PANEL + v * $lanes)),
                        even[v],
                    );
                }
            }
            let acc = [even, odd];
            for v in 0..V {
                // SAFETY: out holds PANEL values, v * $lanes + $lanes <= PANEL.
                $store(out.as_mut_ptr().add(v * $lanes), $add(acc[0][v], acc[1][v]));
            }
        }
    };
}

panel_kernel!(
    dot_panel_avx512,
    "avx512f",
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_add_ps,
    _mm512_fmadd_ps
);
panel_kernel!(
    dot_panel_avx2,
    "avx2,fma",
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_add_ps,
    _mm256_fmadd_ps
);

/// Codes ahead of the one measured that [`Kernels::dot_i8_i16_rows`](super::super::Kernels)
/// starts loading.
const ROWS_AHEAD: usize = 32;

/// Defines [`Kernels::dot_i8_i16_rows`](super::super::Kernels) over `$dot`, inlined into the loop
/// over the codes (no call per code, the query stays in registers), each code requested
/// [`ROWS_AHEAD`] codes before it is measured: a partition's run starts cold, before the
/// hardware prefetcher has seen the stream.
macro_rules! rows_kernel {
    ($name:ident, $feat:literal, $dot:ident) => {
        /// # Safety
        /// The CPU must support the features named in the attribute.
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(codes: &[i8], q: &[i16], out: &mut [i32]) {
            let n = q.len().max(1);
            let ahead = codes.as_ptr().wrapping_add(ROWS_AHEAD * n);
            for (i, (o, c)) in out.iter_mut().zip(codes.chunks_exact(n)).enumerate() {
                for line in (0..n).step_by(64) {
                    // A hint that never faults, whatever the address.
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(i * n + line));
                }
                *o = $dot(c, q);
            }
        }
    };
}

rows_kernel!(dot_i8_i16_rows, "avx2,fma,f16c", dot_i8_i16);

/// Defines [`Kernels::dot_i8_i16_rows`](super::super::Kernels) on 512-bit registers for codes of a
/// multiple of 32 values: four codes at a time against one load of the query, their four
/// sums reduced together (two unpack-and-add steps, then the four 128-bit lanes), which
/// costs a quarter of four separate reductions; `$step(acc, codes, query)` accumulates 32
/// products. Other lengths and the last codes go one at a time through
/// [`dot_i8_i16_avx512`].
macro_rules! rows_kernel_512 {
    ($name:ident, $feat:literal, $step:expr) => {
        /// # Safety
        /// The CPU must support the features named in the attribute.
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(codes: &[i8], q: &[i16], out: &mut [i32]) {
            let n = q.len();
            let rows = out.len().min(codes.len() / n.max(1));
            let mut r = 0;
            if n > 0 && n % 32 == 0 {
                let (pc, pq) = (codes.as_ptr(), q.as_ptr());
                while r + 4 <= rows {
                    for line in (0..4 * n).step_by(64) {
                        // A hint that never faults, whatever the address.
                        _mm_prefetch::<_MM_HINT_T0>(pc.wrapping_add((r + ROWS_AHEAD) * n + line));
                    }
                    let mut acc = [_mm512_setzero_si512(); 4];
                    let mut i = 0;
                    while i < n {
                        // SAFETY: i + 32 <= n, and rows r..r + 4 lie within `codes`.
                        let y = _mm512_loadu_si512(pq.add(i).cast());
                        for (t, a) in acc.iter_mut().enumerate() {
                            let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                                pc.add((r + t) * n + i).cast(),
                            ));
                            *a = $step(*a, x, y);
                        }
                        i += 32;
                    }
                    let pair = |a, b| {
                        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
                    };
                    let (ab, cd) = (pair(acc[0], acc[1]), pair(acc[2], acc[3]));
                    // Each 128-bit lane now holds a part of the four sums, in order.
                    let s = _mm512_add_epi32(
                        _mm512_unpacklo_epi64(ab, cd),
                        _mm512_unpackhi_epi64(ab, cd),
                    );
                    let s = _mm256_add_epi32(
                        _mm512_castsi512_si256(s),
                        _mm512_extracti64x4_epi64::<1>(s),
                    );
                    let s =
                        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
                    // SAFETY: r + 4 <= rows <= out.len().
                    _mm_storeu_si128(out.as_mut_ptr().add(r).cast(), s);
                    r += 4;
                }
            }
            for (o, c) in out[r..rows]
                .iter_mut()
                .zip(codes[r * n..].chunks_exact(n.max(1)))
            {
                *o = dot_i8_i16_avx512(c, q);
            }
        }
    };
}

rows_kernel_512!(
    dot_i8_i16_rows_avx512,
    "avx512f,avx512bw,avx2,fma,f16c",
    |a, x, y| _mm512_add_epi32(a, _mm512_madd_epi16(x, y))
);
rows_kernel_512!(
    dot_i8_i16_rows_vnni,
    "avx512f,avx512bw,avx512vnni,avx2,fma,f16c",
    |a, x, y| _mm512_dpwssd_epi32(a, x, y)
);

/// `k` (the AVX-512 set) with the code scan on `vpdpwssd` when the CPU has AVX512-VNNI.
pub fn with_vnni(mut k: super::super::Kernels) -> super::super::Kernels {
    if is_x86_feature_detected!("avx512vnni") {
        k.isa = "avx512f+bw+vnni";
        // SAFETY: the CPU has AVX512-VNNI, and the features of the set `k` came from.
        k.dot_i8_i16_rows = |c, q, o| unsafe { dot_i8_i16_rows_vnni(c, q, o) };
    }
    k
}

/// [`Kernels::reaches`](super::super::Kernels) on 16 lanes: one "not less than" mask a step
/// (a NaN compares true).
///
/// # Safety
/// The CPU must support avx512f. Reads at most 64 values of the shorter slice.
#[target_feature(enable = "avx512f")]
pub unsafe fn reaches_avx512(s: &[f32], t: &[f32]) -> u64 {
    let n = s.len().min(t.len()).min(64);
    let mut hit = 0u64;
    let mut i = 0;
    // SAFETY (all loads): i + 16 <= n bounds both slices.
    while i + 16 <= n {
        let (a, b) = (
            _mm512_loadu_ps(s.as_ptr().add(i)),
            _mm512_loadu_ps(t.as_ptr().add(i)),
        );
        hit |= u64::from(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(a, b)) << i;
        i += 16;
    }
    // The tail (fewer than one register) starts at bit i < 64, or is empty.
    hit | super::super::scalar::reaches(&s[i..n], &t[i..n])
        .checked_shl(i as u32)
        .unwrap_or(0)
}

/// [`Kernels::reaches`](super::super::Kernels) on 8 lanes.
///
/// # Safety
/// The CPU must support AVX2. Reads at most 64 values of the shorter slice.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn reaches_avx2(s: &[f32], t: &[f32]) -> u64 {
    let n = s.len().min(t.len()).min(64);
    let mut hit = 0u64;
    let mut i = 0;
    // SAFETY (all loads): i + 8 <= n bounds both slices.
    while i + 8 <= n {
        let (a, b) = (
            _mm256_loadu_ps(s.as_ptr().add(i)),
            _mm256_loadu_ps(t.as_ptr().add(i)),
        );
        let m = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(a, b)) as u8;
        hit |= u64::from(m) << i;
        i += 8;
    }
    // The tail (fewer than one register) starts at bit i < 64, or is empty.
    hit | super::super::scalar::reaches(&s[i..n], &t[i..n])
        .checked_shl(i as u32)
        .unwrap_or(0)
}
