//! Scoring backends against a brute-force f64 oracle. Each test body is written once and run on
//! every backend (candle's test_device! pattern). The CUDA variants are ignored by default
//! (`#[ignore = "needs a CUDA GPU"]`, so `cargo test` reports them as ignored, not passed): run
//! them on a GPU machine with `cargo test --test score -- --ignored`, where they fail if CUDA is
//! unusable.

use half::f16;
use ptsel::score::oracle::{self, similarity as sim, OwnedVectors as Stored};
use ptsel::score::{self, cpu::CpuScorer, cuda, simd, Device, Neighbors, Scorer};
use ptsel::Metric;

/// Seeded corpus `[rows, dim]` (unit rows for cos) with rows 11 and `rows - 1` exact copies of
/// row 4, and queries `[nq, dim]` whose first is row 4 itself.
fn data(
    rows: usize,
    dim: usize,
    nq: usize,
    metric: Metric,
    f16_storage: bool,
    seed: u64,
) -> (Stored, Vec<f32>) {
    let mut x = ptsel::synth::gaussian_matrix(rows, dim, seed);
    if metric == Metric::Cos {
        for r in x.chunks_exact_mut(dim) {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            r.iter_mut().for_each(|v| *v /= n);
        }
    }
    let row4 = x[4 * dim..5 * dim].to_vec();
    x[11 * dim..12 * dim].copy_from_slice(&row4);
    x[(rows - 1) * dim..].copy_from_slice(&row4);
    let stored = if f16_storage {
        Stored::F16(x.iter().map(|&v| f16::from_f32(v)).collect())
    } else {
        Stored::F32(x)
    };
    let mut q = ptsel::synth::gaussian_matrix(nq, dim, seed + 1);
    q[..dim].copy_from_slice(&stored.values()[4 * dim..5 * dim]);
    (stored, q)
}

/// Checks `got` against the oracle: at every rank the returned row's exact similarity and the
/// returned score match the oracle's within `tol` (ids may differ only between near-ties), ids
/// are distinct, and the exact duplicates of row 4 come out as 4, 11, rows - 1.
fn check_top_k(metric: Metric, x: &[f32], dim: usize, q: &[f32], got: &Neighbors, tol: f64) {
    let sign = if metric == Metric::L2 { -1.0 } else { 1.0 };
    let rows = x.len() / dim;
    let norm = |v: &[f32]| v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
    let xmax = x.chunks_exact(dim).map(norm).fold(0.0, f64::max);
    for qi in 0..got.queries() {
        let query = &q[qi * dim..(qi + 1) * dim];
        // Rounding is relative to the magnitudes combined: |q| |x| for a product, (|q| + |x|)^2
        // for a squared distance computed as |q|^2 + |x|^2 - 2 q.x.
        let scale = 1.0
            + match metric {
                Metric::Cos => 1.0,
                Metric::Ip => norm(query) * xmax,
                Metric::L2 => (norm(query) + xmax).powi(2),
            };
        let want = oracle::top_k(metric, x, dim, query, got.k);
        let ids = got.ids_of(qi);
        let mut seen = ids.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), got.k, "query {qi}: duplicate ids {ids:?}");
        for (j, (&id, &score)) in ids.iter().zip(got.scores_of(qi)).enumerate() {
            let exact = sim(
                metric,
                &x[id as usize * dim..(id as usize + 1) * dim],
                query,
            );
            assert!(
                (exact - want[j].0).abs() <= tol * scale,
                "query {qi} rank {j}: row {id} scores {exact}, oracle row {} scores {}",
                want[j].1,
                want[j].0
            );
            assert!(
                (sign * f64::from(score) - want[j].0).abs() <= tol * scale,
                "query {qi} rank {j}: score {score} vs oracle {}",
                want[j].0
            );
        }
        if qi == 0 {
            assert_eq!(
                &ids[..3],
                &[4, 11, rows as u32 - 1],
                "exact ties must be ordered by row id"
            );
        }
    }
}

/// Tolerance of every backend: f32 sums (the tensor-core path re-scores its fp16 candidates
/// with f32 queries).
const TOLERANCE: f64 = 2e-5;

/// Runs one test body on every backend; the CUDA variant only with `--ignored`.
macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(Device::Cpu);
        }
        #[test]
        #[ignore = "needs a CUDA GPU"]
        fn $cuda() {
            $body(Device::Cuda);
        }
    };
}

fn top_k_matches_oracle(device: Device) {
    // 300-d splits into the micro-kernel's 128-wide slices with a remainder; 2600 rows span
    // several tiles with a partial last one; 1, 5 queries take the direct path, 37 the tiles
    // (on the GPU: 1 the f32 kernel, 5 and 37 the tensor cores, re-scored, for f16 rows).
    let (rows, dim, k) = (2600, 300, 10);
    for metric in [Metric::Cos, Metric::Ip, Metric::L2] {
        for f16_storage in [true, false] {
            for nq in [1, 5, 37] {
                let (stored, q) = data(rows, dim, nq, metric, f16_storage, 3);
                let scorer = score::scorer_for_vectors(stored.view(), dim, metric, device).unwrap();
                let got = scorer.top_k(&q, k).unwrap();
                assert_eq!((got.k, got.queries()), (k, nq));
                check_top_k(metric, &stored.values(), dim, &q, &got, TOLERANCE);
                if device == Device::Cuda {
                    // The GPU's answer does not depend on the batch: each query alone gets the
                    // same ids and scores.
                    for (qi, query) in q.chunks_exact(dim).enumerate() {
                        let alone = scorer.top_k(query, k).unwrap();
                        assert_eq!(
                            alone.ids,
                            got.ids_of(qi),
                            "{metric:?} batch {nq} query {qi}"
                        );
                        assert_eq!(alone.scores, got.scores_of(qi));
                    }
                }
            }
        }
    }
}
test_device!(
    top_k_matches_oracle,
    top_k_matches_oracle_cpu,
    top_k_matches_oracle_cuda
);

/// The CUDA scorer computes max_similarity with its CPU scorer: there is no GPU variant.
#[test]
fn max_similarity_matches_oracle_cpu() {
    let (rows, dim, nq) = (1500, 72, 20);
    for metric in [Metric::Cos, Metric::Ip, Metric::L2] {
        let (stored, q) = data(rows, dim, nq, metric, true, 5);
        let scorer = score::scorer_for_vectors(stored.view(), dim, metric, Device::Cpu).unwrap();
        let got = scorer.max_similarity(&q).unwrap();
        let x = stored.values();
        for (i, &g) in got.iter().enumerate() {
            let want = q
                .chunks_exact(dim)
                .map(|qq| sim(metric, &x[i * dim..(i + 1) * dim], qq))
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                (f64::from(g) - want).abs() <= TOLERANCE * (1.0 + want.abs()),
                "{metric:?} row {i}: {g} vs {want}"
            );
        }
    }
}

/// The portable micro-kernel and dot kernels give the same top-k as the detected SIMD ones.
#[test]
fn scalar_kernels_agree_with_simd() {
    let kernels: &'static simd::Kernels = Box::leak(Box::new(simd::scalar_kernels()));
    let tile: &'static simd::TileKernel = Box::leak(Box::new(simd::scalar_tile_kernel()));
    let (rows, dim, nq) = (700, 40, 19);
    for metric in [Metric::Ip, Metric::L2] {
        let (stored, q) = data(rows, dim, nq, metric, true, 11);
        let scalar = CpuScorer::with_kernels(stored.view(), dim, metric, kernels, tile)
            .top_k(&q, 7)
            .unwrap();
        check_top_k(metric, &stored.values(), dim, &q, &scalar, 2e-5);
    }
}

#[test]
fn bad_k_and_queries_are_errors() {
    let (stored, q) = data(50, 8, 2, Metric::Ip, false, 1);
    let s = CpuScorer::from_vectors(stored.view(), 8, Metric::Ip).unwrap();
    assert!(s.top_k(&q, 0).is_err());
    assert!(s.top_k(&q, 51).is_err());
    assert!(s.top_k(&q[1..], 3).is_err());
    let mut nan = q.clone();
    nan[3] = f32::NAN;
    assert!(s.top_k(&nan, 3).is_err());
}

/// Without a usable GPU, `search --exact --device cuda` is a clear error with exit code 4 and
/// no output, not a panic; with one, it scores on the GPU. `--device auto` takes whichever is
/// there and gives the CPU's answer.
#[test]
fn device_cuda_is_used_or_refused_with_a_clear_error() {
    let gpu = cuda::probe().is_ok();
    let dir = tempfile::tempdir().unwrap();
    let (rows, dim) = (300, 16);
    let features = dir.path().join("x.npy");
    let queries = dir.path().join("q.npy");
    let x = ptsel::synth::gaussian_matrix(rows, dim, 3);
    ptsel::npy::write_matrix(&features, &x, rows, dim).unwrap();
    ptsel::npy::write_matrix(&queries, &x[..3 * dim], 3, dim).unwrap();
    let index = dir.path().join("x.ptsel");
    let opts = ptsel::BuildOptions {
        hnsw: None,
        ..Default::default()
    };
    let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
    ptsel::build(&mut source, &index, opts, &|_, _, _| {}).unwrap();
    let run = |device: &str| {
        let out = dir.path().join(format!("nn-{device}.npy"));
        let res = std::process::Command::new(env!("CARGO_BIN_EXE_ptsel"))
            .args(["search", "--exact", "-k", "5", "--device", device])
            .arg("--index")
            .arg(&index)
            .arg("--queries")
            .arg(&queries)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (res, out)
    };
    let (res, out) = run("cuda");
    let stderr = String::from_utf8_lossy(&res.stderr);
    if gpu {
        assert!(res.status.success(), "stderr: {stderr}");
    } else {
        assert_eq!(res.status.code(), Some(4), "stderr: {stderr}");
        assert!(
            stderr.contains("CUDA unavailable") && !stderr.contains("panicked"),
            "stderr: {stderr}"
        );
        assert!(!out.exists(), "a refused search wrote {}", out.display());
    }
    let (res, auto) = run("auto");
    assert!(
        res.status.success(),
        "auto must fall back to the CPU: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (_, cpu) = run("cpu");
    assert_eq!(
        std::fs::read(&auto).unwrap(),
        std::fs::read(&cpu).unwrap(),
        "auto and cpu return different rows"
    );
}

/// Every kernel compiles with NVRTC (no GPU needed). `.ci/run` installs NVRTC and runs this
/// with `--ignored`; without NVRTC it fails, saying what is missing.
#[test]
#[ignore = "needs NVRTC and cuda_fp16.h (.ci/run installs them and runs this with --ignored)"]
fn kernels_compile_with_nvrtc() {
    assert!(
        cuda::nvrtc_present(),
        "NVRTC (libnvrtc.so) not found; .ci/run installs it"
    );
    if let Err(e) = cuda::include_dir() {
        panic!("{e}");
    }
    for check in cuda::check_kernels() {
        match check.result {
            Ok(p) => assert!(
                p.bytes > 0 && p.target == "sm_90",
                "{}: target {}",
                check.file,
                p.target
            ),
            Err(e) => panic!("{}: {e}", check.file),
        }
    }
}

/// Every CPU kernel the machine has (f32 SIMD, portable f32, portable bf16, AVX512-BF16, AMX)
/// proposes rows and re-scores them in f64, so each gives the float64 top-k exactly: the same
/// ids in the same order as the oracle (ties to the lower row) and its scores.
fn cpu_scorers<'a>(stored: &'a Stored, dim: usize, metric: Metric) -> Vec<(String, CpuScorer<'a>)> {
    let kernels: &'static simd::Kernels = Box::leak(Box::new(simd::scalar_kernels()));
    let tile: &'static simd::TileKernel = Box::leak(Box::new(simd::scalar_tile_kernel()));
    let simd_f32 = CpuScorer::from_vectors(stored.view(), dim, metric).unwrap();
    let mut all = vec![
        ("f32 simd".to_string(), simd_f32.with_matrix(None)),
        (
            "f32 scalar".to_string(),
            CpuScorer::with_kernels(stored.view(), dim, metric, kernels, tile).with_matrix(None),
        ),
    ];
    for m in simd::scalar_matrix_kernels()
        .into_iter()
        .chain(simd::available_matrix_kernels())
    {
        let s = CpuScorer::from_vectors(stored.view(), dim, metric).unwrap();
        all.push((m.isa.to_string(), s.with_matrix(Some(m))));
    }
    all
}

/// Asserts that `got` is the oracle's top-k of every query, ids and scores.
fn assert_float64_top_k(
    what: &str,
    metric: Metric,
    x: &[f32],
    dim: usize,
    q: &[f32],
    got: &Neighbors,
) {
    let sign = if metric == Metric::L2 { -1.0 } else { 1.0 };
    for (qi, query) in q.chunks_exact(dim).enumerate() {
        let want = oracle::top_k(metric, x, dim, query, got.k);
        let ids: Vec<u32> = want.iter().map(|w| w.1).collect();
        assert_eq!(got.ids_of(qi), &ids[..], "{what} {metric:?} query {qi}");
        for (&s, w) in got.scores_of(qi).iter().zip(&want) {
            let exact = sign * w.0;
            assert!(
                (f64::from(s) - exact).abs() <= 1e-6 * exact.abs().max(1e-30),
                "{what} {metric:?} query {qi}: score {s} vs {exact}"
            );
        }
    }
}

#[test]
fn every_cpu_kernel_gives_the_float64_top_k() {
    let (rows, dim, k) = (1300, 100, 7);
    for metric in [Metric::Cos, Metric::Ip, Metric::L2] {
        for f16_storage in [true, false] {
            for nq in [3, 40] {
                let (stored, q) = data(rows, dim, nq, metric, f16_storage, 17);
                for (what, scorer) in cpu_scorers(&stored, dim, metric) {
                    let got = scorer.top_k(&q, k).unwrap();
                    assert_float64_top_k(&what, metric, &stored.values(), dim, &q, &got);
                }
            }
        }
    }
}

/// Many queries over few rows (class means, centroids): the scorer splits the queries rather
/// than the rows, in chunks of whole query blocks, and still gives the float64 top-k.
#[test]
fn many_queries_over_few_rows_give_the_float64_top_k() {
    let (rows, dim, k, nq) = (300, 32, 5, 1100);
    for metric in [Metric::Cos, Metric::Ip, Metric::L2] {
        let (stored, q) = data(rows, dim, nq, metric, true, 23);
        for (what, scorer) in cpu_scorers(&stored, dim, metric) {
            let got = scorer.top_k(&q, k).unwrap();
            assert_float64_top_k(&what, metric, &stored.values(), dim, &q, &got);
        }
    }
}

/// Products that overflow f32 (a query near f32's range against f16 rows) make an approximate
/// score +-inf or NaN whatever the exact one is: such a score bounds nothing, in either
/// direction, so no kernel drops a row for it or sets a threshold from it. Here six rows
/// approximate to +inf but are exactly 0, and the true top three approximate to -inf.
#[test]
fn scores_that_overflow_f32_are_settled_exactly() {
    let (dim, k) = (16, 5);
    let normal = ptsel::synth::gaussian_matrix(600, dim, 61);
    let mut x = Vec::new();
    let mut overflowing = |row: [f32; 3]| {
        x.extend(row);
        x.extend(std::iter::repeat_n(0.0, dim - 3));
    };
    for _ in 0..6 {
        overflowing([60000.0, -30000.0, -30000.0]);
    }
    for j in 1..=3 {
        overflowing([-60000.0, 30000.0, 30000.0 + 64.0 * j as f32]);
    }
    for row in normal.chunks_exact(dim) {
        x.extend([0.0; 3]);
        x.extend(&row[3..]);
    }
    let stored = Stored::new(x, dim, ptsel::DType::F16, Metric::Ip);
    let mut q: Vec<f32> = ptsel::synth::gaussian_matrix(40, dim, 62)
        .iter()
        .map(|v| v * 1e30)
        .collect();
    q.chunks_exact_mut(dim).for_each(|r| r[..3].fill(1e34));
    for (what, scorer) in cpu_scorers(&stored, dim, Metric::Ip) {
        let got = scorer.top_k(&q, k).unwrap();
        assert_float64_top_k(&what, Metric::Ip, &stored.values(), dim, &q, &got);
    }
}

/// Cosine queries so long that their squared norm overflows f32 (finite values near 1e25) keep
/// their direction: every kernel gives the float64 top k, the same as for the short queries.
#[test]
fn cosine_queries_whose_norm_overflows_f32_keep_their_ranking() {
    let (dim, k) = (24, 7);
    let (stored, q) = data(900, dim, 30, Metric::Cos, true, 63);
    let long: Vec<f32> = q.iter().map(|v| v * 1e25).collect();
    for (what, scorer) in cpu_scorers(&stored, dim, Metric::Cos) {
        let got = scorer.top_k(&long, k).unwrap();
        assert_float64_top_k(&what, Metric::Cos, &stored.values(), dim, &long, &got);
        assert_eq!(got.ids, scorer.top_k(&q, k).unwrap().ids, "{what}");
    }
}

/// Rows that differ only below bf16's resolution (a few f16 steps in four components): bf16
/// products cannot order them, and more of them tie within the bound than a query keeps before
/// re-scoring early, yet every kernel returns the float64 order (exact duplicates by row id).
/// Rows far from the query surround them.
#[test]
fn near_ties_below_bf16_resolution_are_ranked_exactly() {
    let (dim, ties, far, k) = (64, 2500, 700, 12);
    let base = ptsel::synth::gaussian_matrix(1, dim, 40);
    let noise = ptsel::synth::gaussian_matrix(ties, dim, 41);
    let mut x = Vec::with_capacity((ties + far) * dim);
    for j in 0..ties {
        // Around 0.25 bf16 steps by 2^-10..2^-9, f16 by 2^-13..2^-12.
        x.extend((0..dim).map(|c| {
            let jitter = if c < 4 {
                3e-4 * noise[j * dim + c]
            } else {
                0.0
            };
            0.25 + 0.03 * base[c] + jitter
        }));
    }
    x.extend(
        ptsel::synth::gaussian_matrix(far, dim, 42)
            .iter()
            .map(|v| 0.1 * v),
    );
    let distinct = |round: fn(f32) -> u16| {
        let mut r: Vec<Vec<u16>> = x[..ties * dim]
            .chunks_exact(dim)
            .map(|r| r.iter().map(|&v| round(v)).collect())
            .collect();
        r.sort_unstable();
        r.dedup();
        r.len()
    };
    let (in_f16, in_bf16) = (
        distinct(|v| f16::from_f32(v).to_bits()),
        distinct(|v| half::bf16::from_f32(v).to_bits()),
    );
    assert!(
        in_f16 > 200 && in_bf16 * 4 < in_f16,
        "not adversarial: {in_f16} distinct rows in f16, {in_bf16} in bf16"
    );
    for metric in [Metric::Ip, Metric::L2, Metric::Cos] {
        let stored = Stored::new(x.clone(), dim, ptsel::DType::F16, metric);
        let mut q: Vec<f32> = (0..20 * dim).map(|i| 0.25 + 0.03 * base[i % dim]).collect();
        q.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v += 1e-3 * ((i * 7919 % 13) as f32 - 6.0));
        for (what, scorer) in cpu_scorers(&stored, dim, metric) {
            let got = scorer.top_k(&q, k).unwrap();
            assert_float64_top_k(&what, metric, &stored.values(), dim, &q, &got);
        }
    }
}
