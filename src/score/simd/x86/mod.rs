//! The x86-64 kernels: AVX2 + FMA + F16C and AVX-512 (F, BW, VNNI) versions of the
//! [`super::Kernels`] entries, chosen once at run time by [`super::kernels`].

use half::f16;
use std::arch::x86_64::*;

/// Sum of the 8 lanes of `v`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Loads 8 f16 at `p` widened to f32.
///
/// # Safety
/// `p` must point to 8 readable f16 values; the CPU must support f16c.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
}

/// Inner product of i8 codes with i16 values: 16 pairs a step sign-extended to i16,
/// multiplied and summed pairwise into i32 lanes (`vpmaddwd`), then the scalar tail.
///
/// # Safety
/// The CPU must support AVX2. Slices are read only up to the shorter length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_i8_i16(a: &[i8], b: &[i16]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut i = 0;
    // SAFETY (all loads): i + 32 <= n, resp. i + 16 <= n, bounds both slices.
    while i + 32 <= n {
        for (j, slot) in acc.iter_mut().enumerate() {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16 * j).cast()));
            let y = _mm256_loadu_si256(pb.add(i + 16 * j).cast());
            *slot = _mm256_add_epi32(*slot, _mm256_madd_epi16(x, y));
        }
        i += 32;
    }
    while i + 16 <= n {
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
        let y = _mm256_loadu_si256(pb.add(i).cast());
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x, y));
        i += 16;
    }
    let s = _mm256_add_epi32(acc[0], acc[1]);
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    let tail = if i < n {
        super::scalar::dot_i8_i16(&a[i..n], &b[i..n])
    } else {
        0
    };
    _mm_cvtsi128_si32(s) + tail
}

mod fastscan;
mod int8;
mod matrix;
mod scan;
pub use fastscan::{sum_lut16_avx2, sum_lut16_avx512};
pub use int8::{has_vnni, matrix_vnni, pack_rows_int8};
pub use matrix::{has_amx, has_dpbf16, matrix_amx, matrix_dpbf16, pack_rows_bf16};
pub use scan::{
    dot_i8_i16_rows, dot_i8_i16_rows_avx512, dot_panel_avx2, dot_panel_avx512, reaches_avx2,
    reaches_avx512, with_vnni,
};

/// [`dot_i8_i16`] on 512-bit registers: 32 pairs a step into one accumulator (the chain
/// is a one-cycle add), the rest (fewer than 32) by the AVX2 kernel.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX2. Slices are read only up to the
/// shorter length.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_i8_i16_avx512(a: &[i8], b: &[i16]) -> i32 {
    let n = a.len().min(b.len());
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    // SAFETY (all loads): i + 32 <= n bounds both slices.
    while i + 32 <= n {
        let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(a.as_ptr().add(i).cast()));
        let y = _mm512_loadu_si512(b.as_ptr().add(i).cast());
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(x, y));
        i += 32;
    }
    let tail = if i < n {
        dot_i8_i16(&a[i..n], &b[i..n])
    } else {
        0
    };
    _mm512_reduce_add_epi32(acc) + tail
}

/// One step of a distance: `acc + x * y` (dot) or `acc + (x - y)^2` (l2).
macro_rules! step {
    (dot, $fma:ident, $sub:ident, $acc:expr, $x:expr, $y:expr) => {
        $fma($x, $y, $acc)
    };
    (l2, $fma:ident, $sub:ident, $acc:expr, $x:expr, $y:expr) => {{
        let d = $sub($x, $y);
        $fma(d, d, $acc)
    }};
}

/// The distance kernels of one instruction set over `$lanes`-wide registers (four
/// independent accumulators, `4 * $lanes` values a step, then single registers, then the
/// scalar tail), and `$set()`: the [`Kernels`](super::Kernels) using them when the CPU has
/// the features of `$feat`.
macro_rules! kernel_set {
    ($set:ident, $isa:literal, $has:expr, $feat:literal, $lanes:literal, $zero:ident, $add:ident, $sub:ident, $fma:ident, $hsum:ident, $load32:ident, $dot_i8:ident, $panel:ident, $rows:ident, $lut16:ident, $reach:ident,
     [$(($name:ident, $field:ident, $op:ident, $t:ty, $load:ident)),*],
     [$(($nname:ident, $nfield:ident, $nt:ty, $nload:ident)),*]) => {
        $(
            /// # Safety
            /// The CPU must support the features named in the attribute. Slices are read
            /// only up to the shorter length.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(a: &[$t], b: &[f32]) -> f32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc = [$zero(); 4];
                let mut i = 0;
                // SAFETY (all loads): i + 4 * $lanes <= n, resp. i + $lanes <= n, bounds
                // both slices.
                while i + 4 * $lanes <= n {
                    for (j, slot) in acc.iter_mut().enumerate() {
                        let (x, y) = ($load(pa.add(i + $lanes * j)), $load32(pb.add(i + $lanes * j)));
                        *slot = step!($op, $fma, $sub, *slot, x, y);
                    }
                    i += 4 * $lanes;
                }
                while i + $lanes <= n {
                    let (x, y) = ($load(pa.add(i)), $load32(pb.add(i)));
                    acc[0] = step!($op, $fma, $sub, acc[0], x, y);
                    i += $lanes;
                }
                let s = $add($add(acc[0], acc[1]), $add(acc[2], acc[3]));
                let tail = if i < n { super::scalar::$field(&a[i..n], &b[i..n]) } else { 0.0 };
                $hsum(s) + tail
            }
        )*

        $(
            /// # Safety
            /// The CPU must support the features named in the attribute. Slices are read
            /// only up to the shorter length.
            #[target_feature(enable = $feat)]
            pub unsafe fn $nname(a: &[$nt], b: &[f32]) -> (f32, f32) {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let (mut dot, mut norm) = ([$zero(); 4], [$zero(); 4]);
                let mut i = 0;
                // SAFETY (all loads): i + 4 * $lanes <= n, resp. i + $lanes <= n, bounds
                // both slices.
                while i + 4 * $lanes <= n {
                    for j in 0..4 {
                        let (x, y) = ($nload(pa.add(i + $lanes * j)), $load32(pb.add(i + $lanes * j)));
                        dot[j] = $fma(x, y, dot[j]);
                        norm[j] = $fma(x, x, norm[j]);
                    }
                    i += 4 * $lanes;
                }
                while i + $lanes <= n {
                    let (x, y) = ($nload(pa.add(i)), $load32(pb.add(i)));
                    dot[0] = $fma(x, y, dot[0]);
                    norm[0] = $fma(x, x, norm[0]);
                    i += $lanes;
                }
                let (td, tn) = if i < n { super::scalar::$nfield(&a[i..n], &b[i..n]) } else { (0.0, 0.0) };
                let sum = |v: [_; 4]| $hsum($add($add(v[0], v[1]), $add(v[2], v[3])));
                (sum(dot) + td, sum(norm) + tn)
            }
        )*

        pub fn $set() -> Option<super::Kernels> {
            // SAFETY (every closure): built only when the CPU has the features of `$feat`
            // and those of `$dot_i8` (checked by `$has`).
            $has.then_some(super::Kernels {
                isa: $isa,
                $($field: |a, b| unsafe { $name(a, b) },)*
                $($nfield: |a, b| unsafe { $nname(a, b) },)*
                dot_i8_i16: |a, b| unsafe { $dot_i8(a, b) },
                dot_panel: |q, p, o| unsafe { $panel(q, p, o) },
                dot_i8_i16_rows: |c, q, o| unsafe { $rows(c, q, o) },
                sum_lut16: |l, b, o| unsafe { $lut16(l, b, o) },
                reaches: |s, t| unsafe { $reach(s, t) },
            })
        }
    };
}

/// Loads 16 f16 at `p` widened to f32.
///
/// # Safety
/// `p` must point to 16 readable f16 values; the CPU must support avx512f.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_f16x16(p: *const f16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
}

/// Loads 16 f32 at `p` (unaligned).
///
/// # Safety
/// `p` must point to 16 readable f32 values; the CPU must support avx512f.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_f32x16(p: *const f32) -> __m512 {
    _mm512_loadu_ps(p)
}

/// Sum of the 16 lanes of `v`.
///
/// # Safety
/// The CPU must support avx512f.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn hsum16(v: __m512) -> f32 {
    _mm512_reduce_add_ps(v)
}

/// Loads 8 f32 at `p` (unaligned).
///
/// # Safety
/// `p` must point to 8 readable f32 values; the CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32(p: *const f32) -> __m256 {
    _mm256_loadu_ps(p)
}

/// Defines a micro-kernel with `$mr` broadcast queries and `$nv` vectors of `$lanes` corpus
/// rows: `$mr * $nv` accumulators plus `$nv` panel loads and one broadcast must fit the
/// register file (32 zmm for AVX-512: 8 x 3; 16 ymm for AVX2: 4 x 3).
macro_rules! tile_kernel {
    ($name:ident, $feat:literal, $mr:ident = $mrv:literal, $nr:ident, $nv:literal, $lanes:literal, $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident) => {
        pub const $mr: usize = $mrv;
        pub const $nr: usize = $nv * $lanes;

        /// Safe entry: checks the slice lengths once, then runs the SIMD loop.
        pub fn $name(
            kc: usize,
            q: &[f32],
            ldq: usize,
            panel: &[f32],
            c: &mut [f32],
            ldc: usize,
            accumulate: bool,
        ) {
            super::check_tile(($mr, $nr), kc, q, ldq, panel, c, ldc);
            /// The micro-kernel loop over raw pointers.
            ///
            /// # Safety
            /// The CPU must support the features named in the attribute; `q` must hold
            /// `$mr` rows of `kc` values at stride `ldq`, `p` `kc * $nr` values and `c`
            /// `$mr` rows of `$nr` values at stride `ldc` (what `check_tile` proves).
            #[target_feature(enable = $feat)]
            unsafe fn inner(
                kc: usize,
                q: *const f32,
                ldq: usize,
                p: *const f32,
                c: *mut f32,
                ldc: usize,
                accumulate: bool,
            ) {
                let mut s = [[$zero(); $nv]; $mr];
                if accumulate {
                    for (i, si) in s.iter_mut().enumerate() {
                        for (j, sij) in si.iter_mut().enumerate() {
                            *sij = $load(c.add(i * ldc + j * $lanes));
                        }
                    }
                }
                for k in 0..kc {
                    let mut b = [$zero(); $nv];
                    for (j, bj) in b.iter_mut().enumerate() {
                        *bj = $load(p.add(k * $nr + j * $lanes));
                    }
                    for (i, si) in s.iter_mut().enumerate() {
                        let a = $set1(*q.add(i * ldq + k));
                        for (sij, bj) in si.iter_mut().zip(&b) {
                            *sij = $fma(a, *bj, *sij);
                        }
                    }
                }
                for (i, si) in s.iter().enumerate() {
                    for (j, sij) in si.iter().enumerate() {
                        $store(c.add(i * ldc + j * $lanes), *sij);
                    }
                }
            }
            // SAFETY: `tile_kernel` hands this out only when the CPU has the features named
            // in `$feat`; check_tile proved q holds $mr rows of kc values at stride ldq, the
            // panel kc x $nr values and c $mr rows of $nr values at stride ldc.
            unsafe {
                inner(
                    kc,
                    q.as_ptr(),
                    ldq,
                    panel.as_ptr(),
                    c.as_mut_ptr(),
                    ldc,
                    accumulate,
                )
            }
        }
    };
}

tile_kernel!(
    tile_avx512,
    "avx512f",
    MR16 = 8,
    NR16,
    3,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
tile_kernel!(
    tile_avx2,
    "avx2,fma",
    MR8 = 4,
    NR8,
    3,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);

kernel_set!(
    avx2,
    "avx2+fma+f16c",
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"),
    "avx2,fma,f16c",
    8,
    _mm256_setzero_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_fmadd_ps,
    hsum,
    load_f32,
    dot_i8_i16,
    dot_panel_avx2,
    dot_i8_i16_rows,
    sum_lut16_avx2,
    reaches_avx2,
    [
        (dot_f32, dot_f32, dot, f32, load_f32),
        (dot_f16, dot_f16, dot, f16, load_f16),
        (l2_f32, l2_f32, l2, f32, load_f32),
        (l2_f16, l2_f16, l2, f16, load_f16)
    ],
    [
        (dot_norm_f32, dot_norm_f32, f32, load_f32),
        (dot_norm_f16, dot_norm_f16, f16, load_f16)
    ]
);
kernel_set!(
    avx512,
    "avx512f+bw",
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"),
    "avx512f",
    16,
    _mm512_setzero_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_fmadd_ps,
    hsum16,
    load_f32x16,
    dot_i8_i16_avx512,
    dot_panel_avx512,
    dot_i8_i16_rows_avx512,
    sum_lut16_avx512,
    reaches_avx512,
    [
        (dot_f32_avx512, dot_f32, dot, f32, load_f32x16),
        (dot_f16_avx512, dot_f16, dot, f16, load_f16x16),
        (l2_f32_avx512, l2_f32, l2, f32, load_f32x16),
        (l2_f16_avx512, l2_f16, l2, f16, load_f16x16)
    ],
    [
        (dot_norm_f32_avx512, dot_norm_f32, f32, load_f32x16),
        (dot_norm_f16_avx512, dot_norm_f16, f16, load_f16x16)
    ]
);
