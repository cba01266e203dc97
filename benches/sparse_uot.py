#!/usr/bin/env python3
"""Sparse UOT at scale against POT's dense solver: the figures of docs/PERFORMANCE.md,
"UOT over the kNN graph".

Three runs, each through the real `ptsel` binary (`select --timing`, whose summary splits the
selection into its phases) and POT in the same process tree:

1. sample level: `select --method uot-knn --per-target 64` of 20k targets over a pool of ROWS x
   128 rows with its HNSW graph: wall time, peak RSS against the index file, and the solve on
   one thread (RAYON_NUM_THREADS=1) and on all cores;
2. class level: the pool's 2000 label classes against 10k target samples, `--method uot
   --graph-k 64` against the dense `--method uot` and POT's `sinkhorn_knopp_unbalanced` on the
   same problem (one thread each): time and the overlap of the top-200 classes;
3. centroid level: `build --kmeans 100000` of the pool, then 100k targets against the 100k
   centroids with `--graph-k 64` (no dense peer: the cost matrix would be 80 GB).

The pool is the acceptance check's, scaled: 2000 Gaussian centres in 128-d, each row a centre
plus noise 0.6 and labelled by it; the sample and centroid targets are drawn around the first 40
centres, the class-level targets around the first 400 with Zipf weights (numpy seed 77).

    pip install numpy pot
    python3 benches/sparse_uot.py --ptsel target/release/ptsel --dir /tmp/sparse-bench [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# One BLAS thread for POT, as ptsel's class-level runs get one thread (set before numpy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

CENTRES, DIM, SEED = 2000, 128, 77


def run(cmd, threads=None):
    """Run `cmd`; its wall seconds and peak RSS in bytes, by GNU time (a child forked from this
    Python process would report Python's peak: Linux keeps the high-water mark across exec)."""
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    fd, stats = tempfile.mkstemp(suffix=".time")
    os.close(fd)
    try:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", stats, *map(str, cmd)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if p.returncode != 0:
            sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stderr.decode(errors='replace')}")
        with open(stats) as f:
            wall, kib = f.read().split()[-2:]
    finally:
        os.unlink(stats)
    return float(wall), int(kib) * 1024


def data(d, rows):
    """Pool, labels and targets (cached in `d`)."""
    paths = {k: os.path.join(d, f"{k}.npy") for k in ("x", "lab", "t20k", "t10k", "t100k")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    rng = np.random.default_rng(SEED)
    c = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    lab = rng.integers(0, CENTRES, rows)
    x = np.empty((rows, DIM), np.float32)
    for s in range(0, rows, 1 << 16):
        e = min(rows, s + (1 << 16))
        x[s:e] = c[lab[s:e]] + 0.6 * rng.normal(size=(e - s, DIM)).astype(np.float32)
    np.save(paths["x"], x)
    np.save(paths["lab"], lab.astype(np.int32))
    # Class level ranks 200 classes: its targets come from 400 centres with Zipf weights, so that
    # the top 200 are classes the targets are near, not the order of a diffuse tail.
    zipf = 1.0 / np.arange(1, 401) ** 1.1
    for name, n in (("t20k", 20_000), ("t10k", 10_000), ("t100k", 100_000)):
        centre = (rng.choice(400, size=n, p=zipf / zipf.sum()) if name == "t10k"
                  else rng.integers(0, 40, n))
        t = c[centre] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
        np.save(paths[name], t.astype(np.float32))
    return paths


def summary(path):
    with open(path) as f:
        return json.load(f)


PHASES = ("search", "reverse", "graph", "solve", "rank")


def phases(s):
    """The parts of the selection's time that ran, by name."""
    t = s["timing"]
    return {p: t[f"{p}_s"] for p in PHASES if f"{p}_s" in t}


def sample_level(ptsel, d, paths, out):
    index = os.path.join(d, "pool.ptsel")
    if not os.path.exists(index):
        wall, _ = run([ptsel, "build", "--features", paths["x"], "--labels", paths["lab"],
                       "--out", index, "--quiet"])
        out["pool_build_s"] = wall
    out["index_bytes"] = os.path.getsize(index)
    res = []
    for threads in (1, None, None):
        s_path = os.path.join(d, "knn.json")
        wall, rss = run([ptsel, "select", "--index", index, "--target", paths["t20k"],
                         "--method", "uot-knn", "--per-target", "64", "--budget", "3000",
                         "--out", os.path.join(d, "knn.npy"), "--summary", s_path, "--timing"],
                        threads)
        s = summary(s_path)
        res.append({"threads": threads or os.cpu_count(), "wall_s": wall, "peak_rss": rss,
                    "select_s": s["timing"]["select_s"], "phases": phases(s),
                    "edges": s["solver"]["edges"], "touched_rows": s["solver"]["touched_rows"],
                    "iterations": s["solver"]["iterations"],
                    "converged": s["solver"]["converged"]})
    out["uot_knn"] = res
    return index


def pot_dense(paths, eps, p_m, tau, n_targets):
    """POT's dense solve on the pool's class means and the targets (one thread): seconds, row sums."""
    import ot  # noqa: PLC0415 (only this run needs POT)

    x = np.load(paths["x"], mmap_mode="r")
    lab = np.load(paths["lab"])
    means = np.zeros((CENTRES, DIM))
    for s in range(0, len(lab), 1 << 18):
        np.add.at(means, lab[s:s + (1 << 18)], np.asarray(x[s:s + (1 << 18)], np.float64))
    t = np.load(paths["t10k"]).astype(np.float64)[:n_targets]
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    t0 = time.perf_counter()
    m = (1.0 - means @ t.T) / p_m
    a, b = np.ones(len(means)), np.ones(len(t))
    start = (np.full(len(a), -np.log(len(a))), np.full(len(b), -np.log(len(b))))
    plan = ot.unbalanced.sinkhorn_knopp_unbalanced(
        a, b, m, eps, reg_m=tau, reg_type="entropy", warmstart=start, numItermax=1000,
        stopThr=1e-6)
    return time.perf_counter() - t0, plan.sum(axis=1)


def top(importance, n):
    imp = np.asarray(importance)
    return set(np.lexsort((np.arange(len(imp)), -imp))[:n].tolist())


def class_level(ptsel, d, paths, index, out):
    res = {}
    for name, extra in (("graph_k_64", ["--graph-k", "64"]), ("graph_k_256", ["--graph-k", "256"]),
                        ("dense", [])):
        s_path = os.path.join(d, f"cls-{name}.json")
        wall, rss = run([ptsel, "select", "--index", index, "--target", paths["t10k"],
                         "--method", "uot", "--classes", "200", *extra,
                         "--out", os.path.join(d, f"cls-{name}.csv"), "--summary", s_path,
                         "--timing"], 1)
        s = summary(s_path)
        res[name] = {"wall_s": wall, "peak_rss": rss, "phases": phases(s),
                     "iterations": s["solver"]["iterations"], "importance": s["importance"]}
    u = summary(os.path.join(d, "cls-dense.json"))["parameters"]
    uot = u["uot"]
    pot_s, pot_rows = pot_dense(paths, uot["eps"], u["p_m"],
                                (uot["tau_source"], uot["tau_target"]), 10_000)
    g, dense = top(res["graph_k_64"]["importance"], 200), top(res["dense"]["importance"], 200)
    out["class_level"] = {
        "shape": f"{CENTRES} x 10000", "eps": uot["eps"],
        "graph_k_64_s": sum(res["graph_k_64"]["phases"].values()),
        "graph_k_64_phases": res["graph_k_64"]["phases"],
        "dense_solve_s": res["dense"]["phases"].get("solve"),
        "pot_dense_s": pot_s,
        "top200_overlap_graph_vs_dense": len(g & dense) / 200,
        "graph_k_256_s": sum(res["graph_k_256"]["phases"].values()),
        "top200_overlap_graph_256_vs_dense":
            len(top(res["graph_k_256"]["importance"], 200) & dense) / 200,
        "top200_overlap_graph_vs_pot": len(g & top(pot_rows, 200)) / 200,
        "top200_overlap_dense_vs_pot": len(dense & top(pot_rows, 200)) / 200,
    }


def centroid_level(ptsel, d, paths, out, k):
    index = os.path.join(d, f"km{k}.ptsel")
    if not os.path.exists(index):
        wall, _ = run([ptsel, "build", "--features", paths["x"], "--kmeans", str(k),
                       "--kmeans-iters", "1", "--no-hnsw", "--out", index, "--quiet"])
        out["kmeans_build_s"] = wall
    s_path = os.path.join(d, "km.json")
    wall, rss = run([ptsel, "select", "--index", index, "--target", paths["t100k"],
                     "--method", "uot", "--pseudo-classes", "--graph-k", "64", "--classes",
                     "1000", "--out", os.path.join(d, "km.csv"), "--summary", s_path,
                     "--timing"])
    s = summary(s_path)
    out["centroid_level"] = {"centroids": k, "targets": 100_000, "wall_s": wall,
                             "peak_rss": rss, "phases": phases(s),
                             "edges": s["solver"]["edges"],
                             "iterations": s["solver"]["iterations"],
                             "converged": s["solver"]["converged"]}


def report(out):
    mib = 1 << 20
    print(f"pool {out['rows']} x {DIM}, index {out['index_bytes'] / mib:.0f} MiB")
    for r in out["uot_knn"]:
        ph = ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
        print(f"uot-knn 20k targets, {r['threads']} thread(s): {r['wall_s']:.2f} s wall, "
              f"peak RSS {r['peak_rss'] / mib:.0f} MiB (index + "
              f"{(r['peak_rss'] - out['index_bytes']) / mib:.0f}); {ph}; {r['edges']} edges, "
              f"{r['touched_rows']} rows, {r['iterations']} iterations, "
              f"converged {r['converged']}")
    c = out["class_level"]
    print(f"class level {c['shape']} (eps {c['eps']}), 1 thread: graph-k 64 "
          f"{c['graph_k_64_s']:.3f} s ({c['graph_k_64_phases']}), ptsel dense solve "
          f"{c['dense_solve_s']:.3f} s, POT dense {c['pot_dense_s']:.3f} s: "
          f"{c['pot_dense_s'] / c['graph_k_64_s']:.1f}x; top-200 overlap with dense "
          f"{c['top200_overlap_graph_vs_dense']:.3f}, with POT "
          f"{c['top200_overlap_graph_vs_pot']:.3f} (dense vs POT "
          f"{c['top200_overlap_dense_vs_pot']:.3f}); graph-k 256 {c['graph_k_256_s']:.3f} s, "
          f"overlap with dense {c['top200_overlap_graph_256_vs_dense']:.3f}")
    k = out.get("centroid_level")
    if k:
        print(f"centroid level {k['centroids']} x {k['targets']}, graph-k 64: "
              f"{k['wall_s']:.2f} s wall, peak RSS {k['peak_rss'] / mib:.0f} MiB; "
              f"{k['phases']}; {k['edges']} edges, {k['iterations']} iterations, "
              f"converged {k['converged']}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ptsel", default="target/release/ptsel")
    p.add_argument("--dir", required=True, help="work folder (data and indexes are kept)")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--kmeans", type=int, default=100_000, help="centroids (0: skip)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    paths = data(a.dir, a.rows)
    out = {"rows": a.rows}
    index = sample_level(a.ptsel, a.dir, paths, out)
    class_level(a.ptsel, a.dir, paths, index, out)
    if a.kmeans:
        centroid_level(a.ptsel, a.dir, paths, out, a.kmeans)
    if a.json:
        json.dump(out, sys.stdout, indent=1, default=float)
        print()
    else:
        report(out)


if __name__ == "__main__":
    main()
