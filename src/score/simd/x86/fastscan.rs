//! The 4-bit code scan of the partitioned search ("fast scan"): 16-entry tables of 8-bit
//! partial distances looked up sixteen codes at a time with a byte shuffle (`vpshufb`), summed in
//! 16-bit lanes. Layout and results are those of the scalar kernel,
//! [`Kernels::sum_lut16`](super::super::Kernels).

use super::*;

/// Defines [`Kernels::sum_lut16`](super::super::Kernels) for `$bytes`-byte registers
/// (`$bytes / 16` tables per load). Even and odd bytes of each shuffle result are summed in
/// separate 16-bit accumulators (a mask and a shift, no unpacking in the loop), for the codes
/// in the low and the high nibbles; `$fold` adds the 128-bit lanes of an accumulator (one lane
/// per table of a load), and the even and odd sums are interleaved back into row order.
macro_rules! lut16_kernel {
    ($name:ident, $feat:literal, $bytes:literal, $int:ty, $load:ident, $set1_8:ident, $set1_16:ident,
     $and:ident, $srli:ident, $shuffle:ident, $add:ident, $zero:ident, $fold:ident) => {
        /// # Safety
        /// The CPU must support the features named in the attribute. Slice lengths are checked
        /// first, as the scalar kernel checks them (`check_lut16`: a table group is 64 bytes,
        /// a multiple of `$bytes`).
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(luts: &[u8], blocks: &[u8], out: &mut [u16]) {
            let n = super::super::check_lut16(luts, blocks, out);
            let stride = luts.len();
            let (low, byte) = ($set1_8(0x0f), $set1_16(0x00ff));
            for b in 0..n {
                let base = blocks.as_ptr().add(b * stride);
                let mut acc: [$int; 4] = [$zero(); 4];
                let mut t = 0;
                // SAFETY (all loads): t + $bytes <= stride, and block b ends at
                // (b + 1) * stride <= blocks.len().
                while t < stride {
                    let codes = $load(base.add(t).cast());
                    let lut = $load(luts.as_ptr().add(t).cast());
                    let lo = $shuffle(lut, $and(codes, low));
                    let hi = $shuffle(lut, $and($srli::<4>(codes), low));
                    acc[0] = $add(acc[0], $and(lo, byte));
                    acc[1] = $add(acc[1], $srli::<8>(lo));
                    acc[2] = $add(acc[2], $and(hi, byte));
                    acc[3] = $add(acc[3], $srli::<8>(hi));
                    t += $bytes;
                }
                let [lo_even, lo_odd, hi_even, hi_odd] =
                    [$fold(acc[0]), $fold(acc[1]), $fold(acc[2]), $fold(acc[3])];
                let o = out.as_mut_ptr().add(b * 32).cast::<__m128i>();
                // SAFETY: (b + 1) * 32 <= out.len().
                _mm_storeu_si128(o, _mm_unpacklo_epi16(lo_even, lo_odd));
                _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(lo_even, lo_odd));
                _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(hi_even, hi_odd));
                _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(hi_even, hi_odd));
            }
        }
    };
}

lut16_kernel!(
    sum_lut16_avx2,
    "avx2",
    32,
    __m256i,
    _mm256_loadu_si256,
    _mm256_set1_epi8,
    _mm256_set1_epi16,
    _mm256_and_si256,
    _mm256_srli_epi16,
    _mm256_shuffle_epi8,
    _mm256_add_epi16,
    _mm256_setzero_si256,
    fold256
);
lut16_kernel!(
    sum_lut16_avx512,
    "avx512f,avx512bw,avx2",
    64,
    __m512i,
    _mm512_loadu_si512,
    _mm512_set1_epi8,
    _mm512_set1_epi16,
    _mm512_and_si512,
    _mm512_srli_epi16,
    _mm512_shuffle_epi8,
    _mm512_add_epi16,
    _mm512_setzero_si512,
    fold512
);

/// The sum of the two 128-bit lanes of `v` (16-bit lanes).
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn fold256(v: __m256i) -> __m128i {
    _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))
}

/// The sum of the four 128-bit lanes of `v` (16-bit lanes).
///
/// # Safety
/// The CPU must support AVX-512F and AVX2.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn fold512(v: __m512i) -> __m128i {
    fold256(_mm256_add_epi16(
        _mm512_castsi512_si256(v),
        _mm512_extracti64x4_epi64::<1>(v),
    ))
}
