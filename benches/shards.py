#!/usr/bin/env python3
"""Sharded corpora: build and selection on one file, on a corpus of shards (CLI) and on Spark.

    PTSEL_BIN=target/release/ptsel SPARK_LOCAL_IP=127.0.0.1 python3 benches/shards.py [--big]

needs numpy, pyspark and the ptsel package (``pip install ./python``) in the running Python.
On 200,000 x 64 rows (100 classes, as the acceptance check draws them) in 8 shards, it times,
interleaved and best of ``--repeats``: the single-file build, ``ptsel build --shard-rows``, and
``ptsel.spark.build`` on Spark ``local[2]`` (each shard's build time, and the peak memory and
CPU time of every process); exact kNN, HNSW kNN and UOT selection on the single file and on the corpus
(the CLI, on the same rows and threads) and through ``ptsel.spark.select``; and Spark's fixed
costs (session start, an empty job). ``--big`` adds one 250,000 x 512 shard built by the CLI
(the per-shard figures behind docs/SCALE.md's LAION arithmetic). Prints a JSON report.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = os.environ.get("PTSEL_BIN", "target/release/ptsel")


def run(*args):
    """Run the CLI under GNU time; (wall s, peak RSS MiB, CPU s). GNU time, not os.wait4:
    a child that Python starts with vfork reports the parent's resident memory as its own."""
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", BIN, *map(str, args)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"ptsel {args}: {p.stderr}")
    wall, rss, user, system = p.stderr.strip().split("\n")[-1].split()
    return float(wall), int(rss) / 1024, float(user) + float(system)


def best(results):
    """Best wall time, highest peak memory and least CPU time of repeated runs."""
    return (min(r[0] for r in results), max(r[1] for r in results),
            min(r[2] for r in results))


def data(d: Path, rows=200_000, dim=64, shards=8):
    rng = np.random.default_rng(23)
    c = rng.normal(size=(100, dim)).astype(np.float32)
    lab = rng.integers(0, 100, size=rows)
    x = (c[lab] + 0.9 * rng.normal(size=(rows, dim))).astype(np.float32)
    np.save(d / "all.npy", x)
    np.save(d / "all_lab.npy", lab)
    n = rows // shards
    for k in range(shards):
        np.save(d / f"emb_{k}.npy", x[k * n:(k + 1) * n])
        np.save(d / f"lab_{k}.npy", lab[k * n:(k + 1) * n])
    t = c[rng.choice(rng.choice(100, 6, replace=False), 300)] + 0.9 * rng.normal(size=(300, dim))
    np.save(d / "t.npy", t.astype(np.float32))
    idx = rng.choice(rows, 2000, replace=False)
    np.save(d / "t2000.npy", (x[idx] + 0.3 * rng.normal(size=(2000, dim))).astype(np.float32))
    return rows // shards


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", action="store_true")
    args = ap.parse_args()
    import ptsel
    import ptsel.spark
    from pyspark.sql import SparkSession

    report = {"machine": subprocess.run(["lscpu"], capture_output=True, text=True).stdout
              .split("Model name:")[1].split("\n")[0].strip(), "cores": os.cpu_count()}
    d = Path(tempfile.mkdtemp(prefix="ptsel-shards-"))
    shard_rows = data(d)
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    t0 = time.perf_counter()
    spark = (SparkSession.builder.master("local[2]").appName("ptsel-bench")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    report["spark_session_s"] = time.perf_counter() - t0
    empty = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        spark.sparkContext.parallelize(range(8), 8).map(lambda x: x).collect()
        empty.append(time.perf_counter() - t0)
    report["spark_empty_job_8_tasks_s"] = min(empty)

    tasks = []

    class Tasks(logging.Handler):
        def emit(self, record):
            tasks.append(record.args)

    logging.getLogger("ptsel.spark").addHandler(Tasks())
    logging.getLogger("ptsel.spark").setLevel(logging.INFO)
    builds = {"single": [], "cli_sharded": [], "spark": []}
    for _ in range(args.repeats):
        builds["single"].append(run("build", "--features", d / "all.npy", "--labels",
                                    d / "all_lab.npy", "--out", d / "single.ptsel", "--force",
                                    "-q"))
        builds["cli_sharded"].append(run("build", "--features", d / "all.npy", "--labels",
                                         d / "all_lab.npy", "--shard-rows", shard_rows, "--out",
                                         d / "sharded", "--force", "-q"))
        tasks.clear()
        t0 = time.perf_counter()
        ptsel.spark.build(spark, [d / f"emb_{k}.npy" for k in range(8)], d / "spark",
                          labels=[d / f"lab_{k}.npy" for k in range(8)], force=True)
        builds["spark"].append((time.perf_counter() - t0, max(t[4] for t in tasks),
                                sum(t[3] for t in tasks)))
    report["build_wall_s_peak_rss_mib_cpu_s"] = {k: best(v) for k, v in builds.items()}
    report["spark_shard_build_s"] = sorted(t[2] for t in tasks)
    info = ptsel.open(d / "sharded").info()
    report["cli_shard_build_s"] = sorted(s["build_seconds"] for s in info["shards"])
    report["one_shard_alone_wall_s_peak_rss_mib_cpu_s"] = best(
        [run("build", "--features", d / "emb_0.npy", "--labels", d / "lab_0.npy", "--out",
             d / "one.ptsel", "--force", "-q") for _ in range(args.repeats)])

    selections = {
        "knn_exact_300x20": ("t.npy", ["--method", "knn", "--exact", "--per-target", "20",
                                       "--budget", "3000"]),
        "knn_exact_2000x50": ("t2000.npy", ["--method", "knn", "--exact", "--per-target", "50",
                                            "--budget", "40000"]),
        "knn_hnsw_300x20": ("t.npy", ["--method", "knn", "--per-target", "20", "--budget",
                                      "3000"]),
        "uot_6_classes": ("t.npy", ["--method", "uot", "--classes", "6"]),
    }
    report["select_s"] = {}
    for name, (target, extra) in selections.items():
        target = d / target
        times = {"single": [], "cli_sharded": []}
        for _ in range(args.repeats):
            for key, ix in [("single", d / "single.ptsel"), ("cli_sharded", d / "sharded")]:
                times[key].append(run("select", "--index", ix, "--target", target, *extra,
                                      "--out", d / "sel.csv"))
        report["select_s"][name] = {k: best(v)[0] for k, v in times.items()}
    for name, kw in [("knn_exact_300x20", dict(method="knn", exact=True, per_target=20,
                                               budget=3000)),
                     ("knn_hnsw_300x20", dict(method="knn", per_target=20, budget=3000))]:
        t = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ptsel.spark.select(spark, d / "spark", d / "t.npy", **kw)
            t.append(time.perf_counter() - t0)
        report["select_s"][name]["spark"] = min(t)
    spark.stop()
    if args.big:
        rng = np.random.default_rng(1)
        centres = rng.normal(size=(1000, 512)).astype(np.float32)
        big = centres[rng.integers(0, 1000, 250_000)]
        big += rng.normal(size=big.shape).astype(np.float32)
        np.save(d / "big.npy", big)
        report["shard_250k_x_512_wall_s_peak_rss_mib_cpu_s"] = run(
            "build", "--features", d / "big.npy", "--out", d / "big.ptsel", "--force", "-q")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
