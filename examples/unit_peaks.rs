//! Peak multiply-add rate of each x86 unit exact scoring could multiply on, one thread: f32 FMA
//! (`vfmadd231ps`), AVX512-BF16 (`vdpbf16ps`) and AVX512-VNNI int8 (`vpdpbusd`), each on 16
//! independent zmm accumulators so that throughput, not latency, bounds it. It tells whether a
//! narrower format can beat the f32 kernel on this CPU before a kernel is written for it
//! (docs/PERFORMANCE.md quotes it). Prints one JSON line; units the CPU lacks are `null`.
//! `cargo run --release --example unit_peaks [-- --millions 20 --repeat 3]`.

use clap::Parser;
use serde::Serialize;
use std::time::Instant;

/// Time each unit's multiply-adds on independent accumulators (prints JSON).
#[derive(Parser)]
struct Args {
    /// Iterations per timing, in millions (16 instructions each).
    #[arg(long, default_value_t = 20)]
    millions: usize,
    /// Timings per unit; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// Best rate of each unit, in billions of operations (a multiply-add counts two) per second.
#[derive(Serialize)]
struct Peaks {
    cpu: String,
    f32_fma_gflops: Option<f64>,
    bf16_dot_gflops: Option<f64>,
    int8_vnni_gops: Option<f64>,
}

#[cfg(target_arch = "x86_64")]
mod units {
    use std::arch::x86_64::*;

    /// Accumulators per loop: enough to hide every unit's latency.
    const ACC: usize = 16;

    /// Operations of one instruction of each unit (a multiply-add counts two).
    pub const FMA_OPS: usize = 2 * 16;
    pub const BF16_OPS: usize = 2 * 32;
    pub const VNNI_OPS: usize = 2 * 64;

    /// `n` rounds of `step` on each of `ACC` independent accumulators.
    #[inline(always)]
    fn rounds<A: Copy>(n: usize, zero: A, step: impl Fn(A) -> A) -> [A; ACC] {
        let mut acc = [zero; ACC];
        for _ in 0..n {
            for s in acc.iter_mut() {
                *s = step(*s);
            }
        }
        acc
    }

    /// `n` rounds of `ACC` f32 FMAs; returns a sum so the work is not optimised away.
    ///
    /// # Safety
    /// The CPU must support avx512f.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma(n: usize, seed: f32) -> f32 {
        let (a, b) = (_mm512_set1_ps(seed), _mm512_set1_ps(0.5 * seed));
        let acc = rounds(n, _mm512_setzero_ps(), |s| _mm512_fmadd_ps(a, b, s));
        _mm512_reduce_add_ps(
            acc.iter()
                .fold(_mm512_setzero_ps(), |t, &s| _mm512_add_ps(t, s)),
        )
    }

    /// `n` rounds of `ACC` bf16 pair dot products.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512bf16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn bf16(n: usize, seed: f32) -> f32 {
        let a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(seed), _mm512_set1_ps(seed));
        let b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5 * seed), _mm512_set1_ps(seed));
        let acc = rounds(n, _mm512_setzero_ps(), |s| _mm512_dpbf16_ps(s, a, b));
        _mm512_reduce_add_ps(
            acc.iter()
                .fold(_mm512_setzero_ps(), |t, &s| _mm512_add_ps(t, s)),
        )
    }

    /// `n` rounds of `ACC` u8 x i8 quad dot products.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512vnni.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn vnni(n: usize, seed: i32) -> i32 {
        let (a, b) = (_mm512_set1_epi32(seed), _mm512_set1_epi32(seed + 3));
        let acc = rounds(n, _mm512_setzero_si512(), |s| _mm512_dpbusd_epi32(s, a, b));
        let sum = acc
            .iter()
            .fold(_mm512_setzero_si512(), |t, &s| _mm512_add_epi32(t, s));
        _mm512_reduce_add_epi32(sum)
    }

    pub fn has(feature: &str) -> bool {
        match feature {
            "fma" => is_x86_feature_detected!("avx512f"),
            "bf16" => is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16"),
            _ => is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"),
        }
    }

    pub const ACCUMULATORS: usize = ACC;
}

/// Best rate over `repeat` timings of `run(n)`, `ops` operations an instruction.
fn best(args: &Args, ops: usize, mut run: impl FnMut(usize) -> f64) -> f64 {
    let n = args.millions * 1_000_000;
    (0..args.repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run(n));
            n as f64 * ops as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let args = Args::parse();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let peaks = {
        use units::*;
        let seed = std::env::args().count() as f32 * 1e-3;
        let per = |ops: usize| ops * ACCUMULATORS;
        // SAFETY: each unit runs only where `has` found its features.
        Peaks {
            cpu,
            f32_fma_gflops: has("fma")
                .then(|| best(&args, per(FMA_OPS), |n| f64::from(unsafe { fma(n, seed) }))),
            bf16_dot_gflops: has("bf16").then(|| {
                best(&args, per(BF16_OPS), |n| {
                    f64::from(unsafe { bf16(n, seed) })
                })
            }),
            int8_vnni_gops: has("vnni").then(|| {
                best(&args, per(VNNI_OPS), |n| {
                    f64::from(unsafe { vnni(n, seed as i32 + 1) })
                })
            }),
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let peaks = Peaks {
        cpu,
        f32_fma_gflops: None,
        bf16_dot_gflops: None,
        int8_vnni_gops: None,
    };
    println!("{}", serde_json::to_string(&peaks).unwrap_or_default());
}
