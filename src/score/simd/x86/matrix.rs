//! The bf16 matrix kernels of [`super::super::MatrixKernel`] on x86-64: AMX tiles
//! (`tdpbf16ps`, 16 x 16 x 32 products an instruction) and AVX512-BF16 (`vdpbf16ps`, 16 x 2).
//! Operand layouts are those of [`super::super::bf16`].

use super::super::bf16::{KBLOCK, RHO};
use super::super::operand::{check, start_pack, Operand, OperandRef, BLOCK_WORDS};
use crate::store::Vectors;
use half::f16;
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether the CPU has AVX512-BF16 (and the AVX-512 it extends).
pub fn has_dpbf16() -> bool {
    is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512f")
}

/// Whether AMX-BF16 tiles are usable: the CPU has them, the OS saves their state, and (Linux)
/// this process was granted it (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked
/// once, before the first tile instruction).
pub fn has_amx() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let leaf7 = __cpuid_count(7, 0);
        let cpu = leaf7.edx & (1 << 22) != 0 && leaf7.edx & (1 << 24) != 0;
        cpu && has_dpbf16() && os_saves_tiles() && request_tiles()
    })
}

/// Whether the OS enabled the tile state in XCR0 (bits 17 and 18).
fn os_saves_tiles() -> bool {
    // CPUID.1:ECX bit 27: the OS enabled xsave (and so xgetbv).
    if __cpuid(1).ecx & (1 << 27) == 0 {
        return false;
    }
    /// XCR0, the state components the OS saves.
    ///
    /// # Safety
    /// The CPU must support xsave and the OS must have enabled it.
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        _xgetbv(0)
    }
    // SAFETY: the OS enabled xsave (checked above), so the CPU has it.
    let x = unsafe { xcr0() };
    x & (3 << 17) == 3 << 17
}

/// Asks Linux for the tile data state (a no-op success elsewhere is not assumed: other systems
/// report no AMX).
fn request_tiles() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call with integer arguments.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The tile configuration: palette 1, all eight tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
};

/// The AMX kernel: every 32 rows x 32 queries in four accumulator tiles (tmm0-3) fed by two row
/// tiles (tmm4-5) and two query tiles (tmm6-7) per k-block.
pub fn matrix_amx(kb: usize, a: OperandRef<'_>, b: OperandRef<'_>, c: &mut [f32]) {
    assert!(has_amx(), "matrix_amx: AMX is not usable");
    let (rows, queries) = check(kb, a, b, c, false);
    let (a, b) = (a.codes, b.codes);
    let ldc = queries * 4;
    let step = kb * BLOCK_WORDS;
    // SAFETY: has_amx() proved the CPU and OS support AMX and the permission was granted.
    // check() proved a holds rows / 16 groups and b queries / 16 blocks of kb tiles each, and c
    // rows x queries values: every tile load reads 16 rows of 64 bytes at stride 64 inside a
    // or b, and every store writes 16 rows of 64 bytes at stride ldc inside c.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        for g in (0..rows / 16).step_by(2) {
            for j in (0..queries / 16).step_by(2) {
                let a0 = a.as_ptr().add(g * step);
                let b0 = b.as_ptr().add(j * step);
                let c00 = c.as_mut_ptr().add(g * 16 * queries + j * 16);
                let c10 = c00.add(16 * queries);
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    "2:",
                    "tileloadd tmm4, [{a0} + {ld}*1]",
                    "tileloadd tmm5, [{a1} + {ld}*1]",
                    "tileloadd tmm6, [{b0} + {ld}*1]",
                    "tileloadd tmm7, [{b1} + {ld}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    "add {a0}, 1024",
                    "add {a1}, 1024",
                    "add {b0}, 1024",
                    "add {b1}, 1024",
                    "dec {k}",
                    "jnz 2b",
                    "tilestored [{c00} + {ldc}*1], tmm0",
                    "tilestored [{c00} + {ldc}*1 + 64], tmm1",
                    "tilestored [{c10} + {ldc}*1], tmm2",
                    "tilestored [{c10} + {ldc}*1 + 64], tmm3",
                    a0 = inout(reg) a0 => _,
                    a1 = inout(reg) a0.add(step) => _,
                    b0 = inout(reg) b0 => _,
                    b1 = inout(reg) b0.add(step) => _,
                    k = inout(reg) kb => _,
                    ld = in(reg) 64usize,
                    ldc = in(reg) ldc,
                    c00 = in(reg) c00,
                    c10 = in(reg) c10,
                    options(nostack),
                );
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// Rows per micro-tile of the AVX512-BF16 kernel (broadcast), and query blocks of 16 (loaded):
/// 8 x 2 accumulators.
const MR: usize = 8;

/// The AVX512-BF16 kernel: 8 rows x 32 queries a micro-tile, each step broadcasting a row's
/// pair of values against 16 queries' pairs.
pub fn matrix_dpbf16(kb: usize, a: OperandRef<'_>, b: OperandRef<'_>, c: &mut [f32]) {
    assert!(has_dpbf16(), "matrix_dpbf16: AVX512-BF16 is not available");
    let (rows, queries) = check(kb, a, b, c, false);
    let (a, b) = (a.codes, b.codes);
    /// # Safety
    /// The CPU must support avx512f and avx512bf16; the operands must be as `check` proves.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn run(kb: usize, a: &[u16], b: &[u16], c: &mut [f32], rows: usize, queries: usize) {
        let step = kb * BLOCK_WORDS;
        for r0 in (0..rows).step_by(MR) {
            let (g, r) = (r0 / 16, r0 % 16);
            for j in (0..queries / 16).step_by(2) {
                let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                for k in 0..kb {
                    let pa = a.as_ptr().add(g * step + k * BLOCK_WORDS + r * KBLOCK);
                    let pb = b.as_ptr().add(j * step + k * BLOCK_WORDS);
                    for p in 0..KBLOCK / 2 {
                        let q0: __m512bh =
                            std::mem::transmute(_mm512_loadu_si512(pb.add(p * KBLOCK).cast()));
                        let q1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            pb.add(step + p * KBLOCK).cast(),
                        ));
                        for (i, s) in acc.iter_mut().enumerate() {
                            let pair = pa.add(i * KBLOCK + 2 * p).cast::<i32>().read_unaligned();
                            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                            s[0] = _mm512_dpbf16_ps(s[0], x, q0);
                            s[1] = _mm512_dpbf16_ps(s[1], x, q1);
                        }
                    }
                }
                for (i, s) in acc.iter().enumerate() {
                    let out = c.as_mut_ptr().add((r0 + i) * queries + j * 16);
                    _mm512_storeu_ps(out, s[0]);
                    _mm512_storeu_ps(out.add(16), s[1]);
                }
            }
        }
    }
    // SAFETY: has_dpbf16() checked the CPU; check() proved every read (rows in groups of 16,
    // queries in blocks of 16, kb k-blocks each) and write (rows x queries) is in bounds.
    unsafe { run(kb, a, b, c, rows, queries) }
}

/// [`super::super::bf16::pack_rows`] with AVX512-BF16: 32 values a step widened (f16), summed
/// into the norm and rounded to bf16 (`vcvtne2ps2bf16`: to nearest even, subnormals flushed,
/// which the error bound allows for).
pub fn pack_rows_bf16(
    x: Vectors<'_>,
    dim: usize,
    padded: usize,
    out: &mut Operand,
    norms2: &mut Vec<f32>,
) -> f64 {
    assert!(has_dpbf16(), "pack_rows_bf16: AVX512-BF16 is not available");
    let (_, kb) = start_pack(x, (dim, KBLOCK), padded, false, out, norms2);
    /// Widens 16 values at `p` (f16 or f32) to f32.
    ///
    /// # Safety
    /// `p` must point to 16 readable values; the CPU must support avx512f.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load<T: Copy>(p: *const T) -> __m512 {
        if std::mem::size_of::<T>() == 2 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
        } else {
            _mm512_loadu_ps(p.cast())
        }
    }
    /// # Safety
    /// The CPU must support avx512f and avx512bf16; `out` must hold the operand of `n <=
    /// padded` rows of `kb` k-blocks and `x` `n * dim` values.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn rows<T: Copy + Into<f32>>(
        x: &[T],
        dim: usize,
        kb: usize,
        out: &mut [u16],
        norms2: &mut Vec<f32>,
    ) {
        for (i, row) in x.chunks_exact(dim).enumerate() {
            let (g, r) = (i / 16, i % 16);
            let mut acc = _mm512_setzero_ps();
            let mut tail = 0.0f32;
            for k in 0..kb {
                let at = (g * kb + k) * BLOCK_WORDS + r * KBLOCK;
                let c0 = k * KBLOCK;
                if c0 + KBLOCK <= dim {
                    let lo = load(row.as_ptr().add(c0));
                    let hi = load(row.as_ptr().add(c0 + 16));
                    acc = _mm512_fmadd_ps(lo, lo, acc);
                    acc = _mm512_fmadd_ps(hi, hi, acc);
                    let h: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_storeu_si512(out.as_mut_ptr().add(at).cast(), h);
                } else {
                    for (o, &v) in out[at..].iter_mut().zip(&row[c0..]) {
                        let v: f32 = v.into();
                        tail += v * v;
                        *o = super::super::bf16::round(v);
                    }
                }
            }
            norms2.push(_mm512_reduce_add_ps(acc) + tail);
        }
    }
    // SAFETY: has_dpbf16() checked the CPU; out holds operand_len(padded, kb) values, which
    // covers every row i < n <= padded, and each full k-block reads 32 values of a row of dim.
    unsafe {
        match x {
            Vectors::F16(v) => rows::<f16>(v, dim, kb, &mut out.codes, norms2),
            Vectors::F32(v) => rows::<f32>(v, dim, kb, &mut out.codes, norms2),
        }
    }
    RHO
}
