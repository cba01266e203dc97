//! GPU check: on a machine with a GPU, checks the CUDA scorer against the CPU one on seeded
//! random data and measures its throughput. Build it here (`cargo build --release --example
//! gpu_check`), carry it to the GPU machine and run it through `scripts/gpu-check.sh`; it
//! prints everything to stdout and exits non-zero if a check fails. For each batch size it reports the
//! ids identical to the CPU's (all of them, ties aside, is the promise of docs/CLI.md), whether
//! every query gets the same ids and scores as when it is sent alone, and how many queries the
//! tensor-core path re-ran with f32 queries.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ptsel::score::cpu::CpuScorer;
use ptsel::score::cuda::{self, CudaScorer};
use ptsel::score::oracle::{compare, OwnedVectors};
use ptsel::score::{Neighbors, Scorer};
use ptsel::{DType, Metric};
use std::time::Instant;

/// Check the CUDA scorer against the CPU and measure its throughput (needs a GPU).
#[derive(Parser)]
struct Args {
    /// Corpus rows of the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Corpus rows of the CPU comparison.
    #[arg(long, default_value_t = 50_000)]
    check_rows: usize,
    /// Dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Seed of the random data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Query batch sizes of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,8,16,64,512,4096")]
    batches: Vec<usize>,
    /// Seconds to spend timing each batch size (at least two runs each).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// Whether every query of `queries` gets the ids and scores of `batch` when scored alone.
fn same_alone(gpu: &CudaScorer, queries: &[f32], dim: usize, batch: &Neighbors) -> Result<bool> {
    for (qi, q) in queries.chunks_exact(dim).enumerate() {
        let alone = gpu
            .top_k(q, batch.k)?
            .context("the kernels declined a single query")?;
        if alone.ids != batch.ids_of(qi) || alone.scores != batch.scores_of(qi) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn main() -> Result<()> {
    let args = Args::parse();
    cuda::probe()?;
    let (d, k) = (args.dim, args.k);
    let mut failures = 0;
    println!(
        "== correctness: CUDA vs CPU on {} x {d} (seed {}), k = {k}",
        args.check_rows, args.seed
    );
    let last = args.check_rows - 1;
    // 300 dims: a row stride with padding and a partial last pipeline stage on the device.
    for (d, dtype, metric) in [
        (d, DType::F16, Metric::Ip),
        (d, DType::F16, Metric::Cos),
        (d, DType::F16, Metric::L2),
        (d, DType::F32, Metric::Ip),
        (300, DType::F16, Metric::Ip),
    ] {
        let mut data = ptsel::synth::gaussian_matrix(args.check_rows, d, args.seed);
        // Exact duplicates of row 3 at rows 17 and the last: ties that must come out as 3, 17, last.
        let row3 = data[3 * d..4 * d].to_vec();
        data[17 * d..18 * d].copy_from_slice(&row3);
        data[last * d..(last + 1) * d].copy_from_slice(&row3);
        let stored = OwnedVectors::new(data.clone(), d, dtype, metric);
        let rows = stored.values();
        let xmax = rows
            .chunks_exact(d)
            .map(|r| r.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt())
            .fold(0.0, f64::max);
        let cpu = CpuScorer::from_vectors(stored.view(), d, metric)?;
        let t = Instant::now();
        let gpu = CudaScorer::new(stored.view(), d, metric)?;
        let upload = t.elapsed().as_secs_f64();
        for nq in [1usize, 2, 3, 7, 64, 300] {
            let mut queries = ptsel::synth::gaussian_matrix(nq, d, args.seed + nq as u64);
            queries[..d].copy_from_slice(&rows[3 * d..4 * d]);
            let c = cpu.top_k(&queries, k)?;
            let reruns = gpu.reruns();
            let t = Instant::now();
            let g = gpu
                .top_k(&queries, k)?
                .context("the kernels declined the batch")?;
            let gpu_s = t.elapsed().as_secs_f64();
            let reruns = gpu.reruns() - reruns;
            // f32 sums of the same products in two orders: within d 2^-23 of |q| |x| each.
            let tol = |qi: usize| {
                let qn = queries[qi * d..(qi + 1) * d]
                    .iter()
                    .map(|x| f64::from(*x).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let scale = match metric {
                    Metric::Cos => 1.0,
                    Metric::Ip => qn * xmax,
                    Metric::L2 => 2.0 * qn * xmax + qn * qn + xmax * xmax,
                };
                scale * d as f64 * 2f64.powi(-22) + 1e-7
            };
            let a = compare(metric, &rows, d, &queries, &c, &g, tol);
            let ties = g.ids_of(0)[..3] == [3, 17, last as u32];
            let alone = same_alone(&gpu, &queries, d, &g)?;
            let pass = a.pass && ties && alone;
            failures += usize::from(!pass);
            println!(
                "{} {d}-d {dtype:?} {metric:?} batch {nq:>4}: ids identical {:>6.2}% ({:.2}% ties aside), max |score dev| {:.2e}, same ids and scores alone: {alone}, exact ties 3,17,{last} in order: {ties}, re-run with f32 queries: {reruns}, gpu {:.2} ms (upload {upload:.2} s, {})",
                if pass { "ok  " } else { "FAIL" },
                100.0 * a.same,
                100.0 * a.ties_aside,
                a.worst,
                gpu_s * 1e3,
                gpu.kernel_for(nq, k)
            );
        }
    }

    println!("== throughput: {} x {d} f16, ip, k = {k}", args.rows);
    let t = Instant::now();
    let stored = OwnedVectors::new(
        ptsel::synth::gaussian_matrix(args.rows, d, args.seed),
        d,
        DType::F16,
        Metric::Ip,
    );
    println!("generated in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let gpu = CudaScorer::new(stored.view(), d, Metric::Ip)?;
    println!(
        "uploaded in {:.2} s to {}",
        t.elapsed().as_secs_f64(),
        gpu.describe()
    );
    {
        // Fixed cost of a call (allocations, copies, launches, merge) on a corpus of 1024 rows.
        let tiny = OwnedVectors::new(
            ptsel::synth::gaussian_matrix(1024, d, 5),
            d,
            DType::F16,
            Metric::Ip,
        );
        let small = CudaScorer::new(tiny.view(), d, Metric::Ip)?;
        let q = ptsel::synth::gaussian_matrix(1, d, 6);
        let best = (0..200).map(|_| {
            let t = Instant::now();
            small.top_k(&q, k).map(|_| t.elapsed().as_secs_f64())
        });
        let best = best
            .collect::<ptsel::Result<Vec<f64>>>()?
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        println!(
            "fixed cost of one top_k call (1 query, 1024 rows): {:.3} ms",
            best * 1e3
        );
    }
    let bytes = (args.rows * d * 2) as f64;
    for &nq in &args.batches {
        let queries = ptsel::synth::gaussian_matrix(nq, d, args.seed ^ nq as u64);
        let reruns = gpu.reruns();
        gpu.top_k(&queries, k)?;
        let reruns = gpu.reruns() - reruns;
        let (mut runs, mut best) = (0, f64::INFINITY);
        let start = Instant::now();
        while runs < 2 || start.elapsed().as_secs_f64() < args.seconds {
            let t = Instant::now();
            gpu.top_k(&queries, k)?;
            best = best.min(t.elapsed().as_secs_f64());
            runs += 1;
        }
        let kernels = match gpu.kernel_times(&queries, k)? {
            Some([score, merge]) => format!(
                "kernels: scoring {score:.3} ms ({:.1} GB/s, {:.1} TFLOP/s), merge {merge:.3} ms",
                bytes / f64::from(score) / 1e6,
                2.0 * (nq * args.rows * d) as f64 / f64::from(score) / 1e9
            ),
            None => "scored on the CPU".into(),
        };
        println!(
            "batch {nq:>5}: {:>10.1} queries/s, {:>8.3} ms per batch, corpus streamed {:>7.1} GB/s, {:>7.1} TFLOP/s  (best of {runs}, end to end, {}; {kernels}; re-run with f32 queries: {reruns} of {nq})",
            nq as f64 / best,
            best * 1e3,
            bytes / best / 1e9,
            2.0 * (nq * args.rows * d) as f64 / best / 1e12,
            gpu.kernel_for(nq, k)
        );
    }
    if failures > 0 {
        bail!("{failures} GPU check(s) failed");
    }
    println!("all GPU checks passed");
    Ok(())
}
