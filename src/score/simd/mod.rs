//! SIMD distance kernels, chosen once at run time from the CPU's capabilities (AVX-512F + BW, or
//! AVX2 + FMA + F16C, on x86-64; portable scalar code elsewhere). f16 values are widened in
//! registers and accumulated in f32.

use crate::store::Vectors;
use half::f16;
pub use operand::{Operand, OperandRef};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A set of kernels for one instruction set.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Name of the instruction set (`avx512f+bw`, `avx512f+bw+vnni`, `avx2+fma+f16c` or
    /// `scalar`).
    pub isa: &'static str,
    /// Inner product of two f32 vectors of equal length.
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    /// Inner product of an f16 vector with an f32 vector of equal length.
    pub dot_f16: fn(&[f16], &[f32]) -> f32,
    /// The inner product of an f32 vector with an f32 vector of equal length, and the first
    /// one's sum of squares, in one pass (exact scoring's few-query path: the norms bound the
    /// error of its sums).
    pub dot_norm_f32: fn(&[f32], &[f32]) -> (f32, f32),
    /// [`Kernels::dot_norm_f32`] of an f16 vector.
    pub dot_norm_f16: fn(&[f16], &[f32]) -> (f32, f32),
    /// Squared Euclidean distance of two f32 vectors.
    pub l2_f32: fn(&[f32], &[f32]) -> f32,
    /// Squared Euclidean distance of an f16 vector to an f32 vector.
    pub l2_f16: fn(&[f16], &[f32]) -> f32,
    /// Inner product of an i8 code vector with an i16 vector (the HNSW traversal codes against
    /// a quantised query; the caller keeps `len * 128 * max|b|` below 2^31).
    pub dot_i8_i16: fn(&[i8], &[i16]) -> i32,
    /// Inner products of one f32 query with the [`PANEL`] vectors of a panel stored
    /// dimension-major (`panel[j * PANEL + l]` = element `j` of vector `l`), into `out`; the
    /// query's length is the dimension and the panel holds `dim * PANEL` values (the partitioned
    /// search's centroids, ranked for each query without a horizontal sum per centroid).
    pub dot_panel: fn(&[f32], &[f32], &mut [f32; PANEL]),
    /// [`Kernels::dot_i8_i16`] of each of the `out.len()` consecutive codes of `codes` (each
    /// as long as the second argument) with it: a scan of contiguous codes in one call.
    pub dot_i8_i16_rows: fn(&[i8], &[i16], &mut [i32]),
    /// `sum_lut16(luts, blocks, out)`: the sums of table look-ups of 4-bit codes in blocks of 32
    /// rows (the partitioned search's product-quantised codes). `luts` holds `g` tables of 16
    /// bytes, `g` a multiple of [`LUT_GROUP`]; each block of `blocks` holds `g` runs of 16 bytes,
    /// byte `i` of run `t` packing the codes of rows `i` (low nibble) and `16 + i` (high nibble)
    /// for table `t`. `out[32 b + r]` receives the sum over `t` of `luts[16 t + code]` for row
    /// `r` of block `b`, for the `out.len() / 32` blocks (wrapping at 2^16, which callers avoid).
    pub sum_lut16: fn(&[u8], &[u8], &mut [u16]),
    /// The positions (bit `i` for position `i`, at most 64) where a score of the first slice is
    /// not below the threshold at the same position of the second (a `NaN` score reaches):
    /// exact scoring's test of a row against the thresholds of many queries at once.
    pub reaches: fn(&[f32], &[f32]) -> u64,
}

/// Tables of [`Kernels::sum_lut16`] come in groups of this many (one 512-bit load).
pub const LUT_GROUP: usize = 4;

/// Vectors per panel of [`Kernels::dot_panel`].
pub const PANEL: usize = 64;

/// The best kernels for this CPU (detected on first use).
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(detect)
}

fn detect() -> Kernels {
    available_kernels()
        .into_iter()
        .next()
        .unwrap_or_else(scalar_kernels)
}

/// The SIMD kernel sets this CPU supports, best first (tests check each against the scalar
/// ones).
pub fn available_kernels() -> Vec<Kernels> {
    #[cfg(target_arch = "x86_64")]
    {
        [x86::avx512().map(x86::with_vnni), x86::avx2()]
            .into_iter()
            .flatten()
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// Portable kernels (also the reference the SIMD ones are tested against).
pub fn scalar_kernels() -> Kernels {
    Kernels {
        isa: "scalar",
        dot_f32: scalar::dot_f32,
        dot_f16: scalar::dot_f16,
        l2_f32: scalar::l2_f32,
        l2_f16: scalar::l2_f16,
        dot_norm_f32: scalar::dot_norm_f32,
        dot_norm_f16: scalar::dot_norm_f16,
        dot_i8_i16: scalar::dot_i8_i16,
        dot_panel: scalar::dot_panel,
        dot_i8_i16_rows: scalar::dot_i8_i16_rows,
        sum_lut16: scalar::sum_lut16,
        reaches: scalar::reaches,
    }
}

/// A register-blocked micro-kernel: `C[MR x NR] (+)= Q[MR rows] . P` where `P` is a packed panel
/// of `NR` corpus rows stored dimension-major (`P[k * NR + j]` = element `k` of row `j`). Each
/// query element is broadcast and multiplied with `NR` corpus values held in vector registers;
/// the `MR x NR` sums stay in registers for the whole `kc` loop (the BLIS/GotoBLAS scheme).
#[derive(Clone, Copy)]
pub struct TileKernel {
    /// Name of the instruction set.
    pub isa: &'static str,
    /// Queries per micro-tile.
    pub mr: usize,
    /// Corpus rows per micro-tile (the panel width).
    pub nr: usize,
    /// `tile(kc, q, ldq, panel, c, ldc, accumulate)`: query row `i` starts at `q[i * ldq]`,
    /// panel element `(k, j)` is `panel[k * nr + j]`, result `(i, j)` goes to `c[i * ldc + j]`
    /// (added to it when `accumulate`). Panics if a slice is too short for `kc`, `mr`, `nr`.
    pub tile: TileFn,
}

/// Signature of a micro-kernel: `(kc, q, ldq, panel, c, ldc, accumulate)`.
pub type TileFn = fn(usize, &[f32], usize, &[f32], &mut [f32], usize, bool);

/// Checks the slice lengths every [`Kernels::sum_lut16`] relies on: tables in whole groups,
/// whole blocks of 32 results, and a block of codes for each; returns the number of blocks.
fn check_lut16(luts: &[u8], blocks: &[u8], out: &[u16]) -> usize {
    assert!(
        luts.len().is_multiple_of(16 * LUT_GROUP),
        "sum_lut16: tables must come in groups of {LUT_GROUP}"
    );
    assert!(
        out.len().is_multiple_of(32),
        "sum_lut16: results in blocks of 32"
    );
    let n = out.len() / 32;
    assert!(
        n.checked_mul(luts.len()).is_some_and(|b| b <= blocks.len()),
        "sum_lut16: fewer blocks of codes than of results"
    );
    n
}

/// Checks the slice lengths a micro-kernel relies on (one check per call, not per load).
fn check_tile(
    (mr, nr): (usize, usize),
    kc: usize,
    q: &[f32],
    ldq: usize,
    panel: &[f32],
    c: &[f32],
    ldc: usize,
) {
    assert!(
        kc <= ldq && q.len() >= (mr - 1) * ldq + kc,
        "micro-kernel: query block too short"
    );
    assert!(panel.len() >= kc * nr, "micro-kernel: panel too short");
    assert!(
        nr <= ldc && c.len() >= (mr - 1) * ldc + nr,
        "micro-kernel: result block too short"
    );
}

/// The best micro-kernel for this CPU (AVX-512, AVX2+FMA, or portable code), detected once.
pub fn tile_kernel() -> &'static TileKernel {
    static K: OnceLock<TileKernel> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return TileKernel {
                    isa: "avx512f",
                    mr: x86::MR16,
                    nr: x86::NR16,
                    tile: x86::tile_avx512,
                };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return TileKernel {
                    isa: "avx2+fma",
                    mr: x86::MR8,
                    nr: x86::NR8,
                    tile: x86::tile_avx2,
                };
            }
        }
        scalar_tile_kernel()
    })
}

/// Portable micro-kernel (also the reference the SIMD ones are tested against).
pub fn scalar_tile_kernel() -> TileKernel {
    TileKernel {
        isa: "scalar",
        mr: scalar::MR,
        nr: scalar::NR,
        tile: scalar::tile,
    }
}

/// A matrix kernel: scores blocks of corpus rows against blocks of queries in a narrow format
/// ([`bf16`] products summed in f32, or [`int8`] codes summed exactly), operands packed by its
/// `pack` and `pack_queries`. Exact scoring proposes rows with it and re-scores them exactly
/// (`score::exact`).
#[derive(Clone, Copy)]
pub struct MatrixKernel {
    /// Name of the unit (`amx-bf16`, `avx512-bf16`, `avx512-vnni-int8`, `scalar-bf16`, ...).
    pub isa: &'static str,
    /// The format (`bf16` or `int8`): kernels of a format share its packing and reference.
    pub format: &'static str,
    /// Dimensions per k-block of the format.
    pub kblock: usize,
    /// `run(kblocks, rows, queries, scores)`: `scores[r * queries + q]` for every packed row
    /// `r` and query `q`.
    pub run: MatrixFn,
    /// `pack(rows, dim, padded, operand, norms2)`: rows `[n, dim]` as the corpus operand of
    /// `padded` rows, and their f32 sums of squares; returns the rows' `rho` of the error bound
    /// (the format's rounding of a row, relative to the largest row norm).
    pub pack: PackFn,
    /// `pack_queries(queries, dim, padded, operand)`: queries `[n, dim]` as the query operand
    /// of `padded` queries; returns them as the kernel reads them, in f32, for the bound.
    pub pack_queries: QueryPackFn,
}

impl MatrixKernel {
    /// Number of k-blocks for vectors of `dim` values.
    pub fn kblocks(&self, dim: usize) -> usize {
        dim.div_ceil(self.kblock)
    }
}

/// Signature of a matrix kernel's packing of corpus rows.
pub type PackFn = fn(Vectors<'_>, usize, usize, &mut Operand, &mut Vec<f32>) -> f64;

/// Signature of a matrix kernel's packing of queries.
pub type QueryPackFn = fn(&[f32], usize, usize, &mut Operand) -> Vec<f32>;

/// Signature of a matrix kernel: `(kblocks, rows, queries, scores)`.
pub type MatrixFn = fn(usize, OperandRef<'_>, OperandRef<'_>, &mut [f32]);

/// Which kernel exact scoring multiplies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Kernel {
    /// AMX tiles where the CPU has them, else int8 codes where it has AVX512-VNNI, else f32
    /// (docs/PERFORMANCE.md measures each).
    #[default]
    Auto,
    /// f32 products on the SIMD units (every CPU).
    F32,
    /// bf16 products with AVX512-BF16 (`vdpbf16ps`).
    Bf16,
    /// bf16 products on AMX tiles.
    Amx,
    /// int8 codes with AVX512-VNNI (`vpdpbusd`), each vector with its own scale.
    Int8,
}

parse_by_name!(Kernel, "kernel", { "auto" => Kernel::Auto, "f32" => Kernel::F32, "bf16" => Kernel::Bf16, "amx" => Kernel::Amx, "int8" => Kernel::Int8 });

/// The process-wide kernel choice (a [`Kernel`] as its index).
static CHOICE: AtomicU8 = AtomicU8::new(0);
const CHOICES: [Kernel; 5] = [
    Kernel::Auto,
    Kernel::F32,
    Kernel::Bf16,
    Kernel::Amx,
    Kernel::Int8,
];

impl Kernel {
    /// The matrix kernel this choice means on this CPU (`None`: the f32 kernels), or an error
    /// naming what the CPU lacks.
    pub fn resolve(self) -> crate::Result<Option<&'static MatrixKernel>> {
        let unavailable =
            |what: &str| crate::Error::Unavailable(format!("{what} (this CPU: {})", cpu_units()));
        match self {
            Kernel::F32 => Ok(None),
            Kernel::Auto => Ok(amx().or_else(vnni_int8)),
            Kernel::Bf16 => dpbf16()
                .map(Some)
                .ok_or_else(|| unavailable("the bf16 kernel needs AVX512-BF16")),
            Kernel::Amx => amx()
                .map(Some)
                .ok_or_else(|| unavailable("the amx kernel needs AMX-BF16 tiles")),
            Kernel::Int8 => vnni_int8()
                .map(Some)
                .ok_or_else(|| unavailable("the int8 kernel needs AVX512-VNNI")),
        }
    }

    /// Makes this the kernel of every exact scoring from now on; an error when the CPU lacks it.
    pub fn choose(self) -> crate::Result<()> {
        self.resolve()?;
        let i = CHOICES.iter().position(|&k| k == self).unwrap_or(0);
        CHOICE.store(i as u8, Ordering::Relaxed);
        Ok(())
    }

    /// The current choice ([`Kernel::Auto`] unless [`Kernel::choose`] said otherwise).
    pub fn chosen() -> Kernel {
        CHOICES[usize::from(CHOICE.load(Ordering::Relaxed)) % CHOICES.len()]
    }
}

/// The matrix kernel of the current choice (`None`: exact scoring multiplies in f32).
pub fn matrix_kernel() -> Option<&'static MatrixKernel> {
    Kernel::chosen().resolve().ok().flatten()
}

/// Name of the products exact scoring of a batch runs on now: the matrix kernel's (`amx-bf16`,
/// `avx512-bf16`) or `f32 <isa>`.
pub fn kernel_name() -> String {
    match matrix_kernel() {
        Some(m) => m.isa.to_string(),
        None => format!("f32 {}", tile_kernel().isa),
    }
}

/// The portable matrix kernels, one per format (the references the others are tested against).
pub fn scalar_matrix_kernels() -> [&'static MatrixKernel; 2] {
    static BF16: MatrixKernel = MatrixKernel {
        isa: "scalar-bf16",
        format: "bf16",
        kblock: bf16::KBLOCK,
        run: bf16::matrix,
        pack: bf16::pack_rows,
        pack_queries: bf16::pack_queries,
    };
    static INT8: MatrixKernel = MatrixKernel {
        isa: "scalar-int8",
        format: "int8",
        kblock: int8::KBLOCK,
        run: int8::matrix,
        pack: int8::pack_rows,
        pack_queries: int8::pack_queries,
    };
    [&BF16, &INT8]
}

/// The AMX kernel, when the CPU and OS allow tiles.
fn amx() -> Option<&'static MatrixKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        static K: MatrixKernel = MatrixKernel {
            isa: "amx-bf16",
            format: "bf16",
            kblock: bf16::KBLOCK,
            run: x86::matrix_amx,
            pack: x86::pack_rows_bf16,
            pack_queries: bf16::pack_queries,
        };
        x86::has_amx().then_some(&K)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The AVX512-BF16 kernel, when the CPU has it.
fn dpbf16() -> Option<&'static MatrixKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        static K: MatrixKernel = MatrixKernel {
            isa: "avx512-bf16",
            format: "bf16",
            kblock: bf16::KBLOCK,
            run: x86::matrix_dpbf16,
            pack: x86::pack_rows_bf16,
            pack_queries: bf16::pack_queries,
        };
        x86::has_dpbf16().then_some(&K)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The AVX512-VNNI int8 kernel, when the CPU has it.
fn vnni_int8() -> Option<&'static MatrixKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        static K: MatrixKernel = MatrixKernel {
            isa: "avx512-vnni-int8",
            format: "int8",
            kblock: int8::KBLOCK,
            run: x86::matrix_vnni,
            pack: x86::pack_rows_int8,
            pack_queries: int8::pack_queries,
        };
        x86::has_vnni().then_some(&K)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The matrix kernels this CPU can run, best first (tests check each against the scalar one).
pub fn available_matrix_kernels() -> Vec<&'static MatrixKernel> {
    [amx(), dpbf16(), vnni_int8()]
        .into_iter()
        .flatten()
        .collect()
}

/// The scoring units this CPU has, for messages and reports (e.g. `avx512f, avx512-bf16, amx`).
pub fn cpu_units() -> String {
    let mut units = vec![tile_kernel().isa];
    units.extend(available_matrix_kernels().iter().map(|k| k.isa));
    units.join(", ")
}

pub mod bf16;
pub mod int8;
pub mod operand;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simd_matches_scalar(v in proptest::collection::vec((-4.0f32..4.0, -4.0f32..4.0), 0..300)) {
            let a: Vec<f32> = v.iter().map(|p| p.0).collect();
            let b: Vec<f32> = v.iter().map(|p| p.1).collect();
            let h: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
            let c: Vec<i8> = a.iter().map(|&x| (x * 32.0) as i8).collect();
            let w: Vec<i16> = b.iter().map(|&x| (x * 8191.0) as i16).collect();
            let s = scalar_kernels();
            let tol = 1e-4 * (1.0 + v.len() as f32);
            for k in available_kernels() {
                prop_assert!(((k.dot_f32)(&a, &b) - (s.dot_f32)(&a, &b)).abs() <= tol, "{}", k.isa);
                prop_assert!(((k.dot_f16)(&h, &b) - (s.dot_f16)(&h, &b)).abs() <= tol, "{}", k.isa);
                prop_assert!(((k.l2_f32)(&a, &b) - (s.l2_f32)(&a, &b)).abs() <= tol * 4.0, "{}", k.isa);
                prop_assert!(((k.l2_f16)(&h, &b) - (s.l2_f16)(&h, &b)).abs() <= tol * 4.0, "{}", k.isa);
                for ((d, n), (wd, wn)) in [((k.dot_norm_f32)(&a, &b), (s.dot_norm_f32)(&a, &b)), ((k.dot_norm_f16)(&h, &b), (s.dot_norm_f16)(&h, &b))] {
                    prop_assert!((d - wd).abs() <= tol && (n - wn).abs() <= tol * 4.0, "{}", k.isa);
                }
                prop_assert_eq!((k.dot_i8_i16)(&c, &w), (s.dot_i8_i16)(&c, &w), "{}", k.isa);
                prop_assert_eq!((k.reaches)(&a, &b), (s.reaches)(&a, &b), "{}", k.isa);
            }
        }

        #[test]
        fn code_rows_match_one_at_a_time(dim in 1usize..150, rows in 0usize..9, seed in 0u32..1000) {
            let codes: Vec<i8> = (0..dim * rows).map(|i| ((i as u32 * 31 + seed) % 256) as u8 as i8).collect();
            let q: Vec<i16> = (0..dim).map(|i| ((i as u32 * 977 + seed) % 65536) as u16 as i16 / 4).collect();
            let want: Vec<i32> = codes.chunks_exact(dim).map(|c| (scalar_kernels().dot_i8_i16)(c, &q)).collect();
            for k in std::iter::once(scalar_kernels()).chain(available_kernels()) {
                let mut got = vec![0i32; rows];
                (k.dot_i8_i16_rows)(&codes, &q, &mut got);
                prop_assert_eq!(&got, &want, "{}", k.isa);
            }
        }

        #[test]
        fn lut16_sums_match_scalar(groups in 1usize..5, blocks in 0usize..4, seed in 0u32..1000) {
            let g = groups * LUT_GROUP;
            let luts: Vec<u8> = (0..g * 16).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 24) as u8).collect();
            let codes: Vec<u8> = (0..blocks * g * 16).map(|i| ((i as u32).wrapping_mul(40503).wrapping_add(seed * 7) >> 5) as u8).collect();
            let mut want = vec![0u16; blocks * 32];
            (scalar_kernels().sum_lut16)(&luts, &codes, &mut want);
            // Row r of block b: the low nibble of byte r (r < 16), else the high one of r - 16.
            for (b, w) in want.chunks_exact(32).enumerate() {
                for (r, &got) in w.iter().enumerate() {
                    let sum: u32 = (0..g).map(|t| {
                        let byte = codes[(b * g + t) * 16 + r % 16];
                        let code = if r < 16 { byte & 15 } else { byte >> 4 };
                        u32::from(luts[t * 16 + usize::from(code)])
                    }).sum();
                    prop_assert_eq!(u32::from(got), sum);
                }
            }
            for k in available_kernels() {
                let mut got = vec![7u16; blocks * 32];
                (k.sum_lut16)(&luts, &codes, &mut got);
                prop_assert_eq!(&got, &want, "{}", k.isa);
            }
        }

        #[test]
        fn matrix_kernels_match_scalar(rows in 1usize..70, queries in 1usize..70, dim in 1usize..150, seed in 0u64..1000) {
            let x: Vec<f32> = crate::synth::gaussian_matrix(rows, dim, seed);
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            let q: Vec<f32> = crate::synth::gaussian_matrix(queries, dim, seed + 1);
            let (rp, qp) = (rows.div_ceil(operand::BLOCK) * operand::BLOCK, queries.div_ceil(operand::BLOCK) * operand::BLOCK);
            for k in available_matrix_kernels() {
                let s = scalar_matrix_kernels().into_iter().find(|s| s.format == k.format).unwrap();
                let kb = s.kblocks(dim);
                let mut b = Operand::default();
                (s.pack_queries)(&q, dim, qp, &mut b);
                for v in [Vectors::F16(&h), Vectors::F32(&x)] {
                    let (mut a, mut n2) = (Operand::default(), Vec::new());
                    let rho = (s.pack)(v, dim, rp, &mut a, &mut n2);
                    let mut want = vec![0.0; rp * qp];
                    (s.run)(kb, a.all(), b.all(), &mut want);
                    let (mut ka, mut kn2) = (Operand::default(), Vec::new());
                    let krho = (k.pack)(v, dim, rp, &mut ka, &mut kn2);
                    prop_assert_eq!(&ka.codes, &a.codes, "{} packs differently", k.isa);
                    prop_assert_eq!(&ka.scales, &a.scales, "{} scales differently", k.isa);
                    prop_assert_eq!(&ka.sums, &a.sums, "{} sums differently", k.isa);
                    prop_assert!((krho - rho).abs() <= 1e-6 * rho, "{}: rho {krho} vs {rho}", k.isa);
                    for (g, w) in ka.errors.iter().zip(&a.errors) {
                        prop_assert!((g - w).abs() <= 1e-6 * w, "{}: row error {g} vs {w}", k.isa);
                    }
                    for (g, w) in kn2.iter().zip(&n2) {
                        prop_assert!((g - w).abs() <= 1e-5 * w.max(1.0), "{}: norm {g} vs {w}", k.isa);
                    }
                    let mut got = vec![f32::NAN; rp * qp];
                    (k.run)(kb, ka.all(), b.all(), &mut got);
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!((g - w).abs() <= 1e-4 * (1.0 + dim as f32), "{}: {g} vs {w}", k.isa);
                    }
                }
            }
        }

        #[test]
        fn int8_codes_recover_the_vectors_within_their_scale(dim in 1usize..200, seed in 0u64..1000, scale in -30i32..30) {
            let mut x = crate::synth::gaussian_matrix(2, dim, seed);
            x.iter_mut().for_each(|v| *v *= 2f32.powi(scale));
            let [_, s] = scalar_matrix_kernels();
            let (mut a, mut n2) = (Operand::default(), Vec::new());
            let rho = (s.pack)(Vectors::F32(&x), dim, operand::BLOCK, &mut a, &mut n2);
            let mut b = Operand::default();
            let seen = (s.pack_queries)(&x, dim, operand::BLOCK, &mut b);
            let m = (f64::from(n2[0].max(n2[1]))).sqrt();
            for (r, row) in x.chunks_exact(dim).enumerate() {
                let sc = f64::from(a.scales[r]);
                let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                prop_assert!(sc * 127.0 >= f64::from(max) * (1.0 - 1e-6) && sc * 127.0 <= f64::from(max) * 1.0001);
                // Each value is within half a step; the row's error within rho M.
                let err2: f64 = row.iter().zip(&seen[r * dim..]).map(|(&v, &k)| {
                    let e = f64::from(v) - f64::from(k);
                    assert!(e.abs() <= sc / 2.0 * (1.0 + 1e-6), "{v} coded as {k}");
                    e * e
                }).sum();
                prop_assert!(err2.sqrt() <= f64::from(a.errors[r]) && err2.sqrt() <= rho * m * (1.0 + 1e-9) + 1e-300);
            }
        }

        #[test]
        fn panel_kernels_match_scalar(q in proptest::collection::vec(-4.0f32..4.0, 0..40), seed in 0u32..1000) {
            let panel: Vec<f32> = (0..q.len() * PANEL)
                .map(|i| ((i as u32 * 7919 + seed) % 997) as f32 / 125.0 - 4.0)
                .collect();
            let s = scalar_kernels();
            let mut want = [0f32; PANEL];
            (s.dot_panel)(&q, &panel, &mut want);
            // Each lane is the inner product of the query with column l of the panel.
            for (l, w) in want.iter().enumerate() {
                let col: Vec<f32> = (0..q.len()).map(|j| panel[j * PANEL + l]).collect();
                prop_assert!((w - (s.dot_f32)(&q, &col)).abs() <= 1e-3 * (1.0 + q.len() as f32));
            }
            let tol = 1e-4 * (1.0 + q.len() as f32);
            for k in available_kernels() {
                let mut got = [f32::NAN; PANEL];
                (k.dot_panel)(&q, &panel, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!((g - w).abs() <= tol * 4.0, "{}: {g} vs {w}", k.isa);
                }
            }
        }
    }
}
