#!/usr/bin/env python3
"""Exact top-k QPS of `examples/bench_score.rs` (CPU, f16 or f32 storage) against faiss IndexFlatIP
(f32, BLAS sgemm) on the same data and thread count, measured in the same run.

usage: scripts/score-vs-faiss.py [--rows 100000] [--dim 512] [--queries 1000] [--k 10]
       [--threads 1,2] [--dtype f16] [--kernels auto] [--bin target/release/examples/bench_score]
needs: pip install faiss-cpu numpy
"""
import argparse, json, os, subprocess, tempfile, time

import faiss
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=100_000)
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--threads", default="1,2")
ap.add_argument("--dtype", default="f16")
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--kernels", default="auto", help="ptsel's CPU products to run, e.g. f32,amx")
ap.add_argument("--bin", default="target/release/examples/bench_score")
a = ap.parse_args()

rng = np.random.default_rng(1)
x = rng.standard_normal((a.rows, a.dim), dtype=np.float32)
q = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
with tempfile.TemporaryDirectory() as tmp:
    xp, qp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "q.npy")
    np.save(xp, x)
    np.save(qp, q)
    index = faiss.IndexFlatIP(a.dim)
    index.add(x)
    for t in [int(s) for s in a.threads.split(",")]:
        faiss.omp_set_num_threads(t)
        index.search(q[: min(100, a.queries)], a.k)
        best = float("inf")
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            index.search(q, a.k)
            best = min(best, time.perf_counter() - t0)
        faiss_qps = a.queries / best
        for kernel in a.kernels.split(","):
            out = subprocess.run(
                [a.bin, "--data", xp, "--queries-file", qp, "--dtype", a.dtype, "--metric", "ip",
                 "--k", str(a.k), "--device", "cpu", "--repeat", str(a.repeat), "--kernel", kernel],
                env=dict(os.environ, RAYON_NUM_THREADS=str(t)), check=True, capture_output=True, text=True).stdout
            ours = json.loads(out.splitlines()[-1])
            print(f"threads {t}: ptsel {ours['backend']} ({a.dtype}) {ours['qps']:.0f} q/s, "
                  f"faiss IndexFlatIP (f32) {faiss_qps:.0f} q/s, ratio {ours['qps'] / faiss_qps:.2f}  "
                  f"[{a.rows} x {a.dim}, {a.queries} queries, k={a.k}]", flush=True)
