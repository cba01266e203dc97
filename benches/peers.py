#!/usr/bin/env python3
"""ptsel's HNSW side by side with hnswlib, faiss (IndexHNSWFlat) and usearch on the same data.

Every engine gets the same .npy vectors (cosine metric), the same M and efConstruction, the same
build threads, and one search thread; recall@k is computed against one exact ground truth (numpy,
float64). ptsel runs through its CLI binary (`ptsel build`, `ptsel search`, `ptsel bench`).
Prints one table: recall and QPS per ef per engine, build time, index size on disk, open time,
and the ratio ptsel / best peer in QPS at matched recall. Also exact search: faiss IndexFlatIP
against `ptsel search --exact` on the same query batch (QPS, all build threads).

    pip install -r benches/requirements.txt
    cargo build --release
    python3 benches/peers.py --rows 100000 --dim 512 --work /tmp/peers
    python3 benches/peers.py --data DIR   # DIR/base.npy and DIR/queries.npy

The data generator is benches/gen_data.py (overlapping clusters).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_data  # noqa: E402


def normalise(x):
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)).astype(np.float32)


def exact_topk(base_n, queries_n, k):
    out = np.empty((len(queries_n), k), dtype=np.int64)
    for s in range(0, len(queries_n), 256):
        sims = queries_n[s:s + 256].astype(np.float64) @ base_n.T.astype(np.float64)
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[s:s + 256] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found, truth):
    k = truth.shape[1]
    return sum(len(set(f[:k]) & set(t)) for f, t in zip(found, truth)) / truth.size


def timed(f):
    t = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t


def cpu_timed(f):
    """Result, wall seconds and CPU seconds (this process and its children): on a shared machine
    the CPU time is the steadier measure of build work."""
    def cpu():
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
    c0 = cpu()
    r, wall = timed(f)
    return r, wall, cpu() - c0


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p


def bench_ptsel(a, base_path, q_path, truth, work):
    path = os.path.join(work, f"ptsel-{a.dtype}.ptsel")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.build_threads))
    _, build_s, build_cpu = cpu_timed(lambda: run([a.ptsel, "build", "--features", base_path, "--out", path, "--force", "-q", "--dtype", a.dtype,
                                    "--hnsw-m", str(a.m), "--ef-construction", str(a.efc), "--seed", "1"], env))
    bench_json = os.path.join(work, "bench.json")
    run([a.ptsel, "bench", "--index", path, "--queries", q_path, "-k", str(a.k), "--ef", ",".join(map(str, a.ef)),
         "--threads", "1", "--json", bench_json, "--plot", os.path.join(work, f"ptsel-{a.dtype}.svg")])
    rep = json.load(open(bench_json))
    rows = []
    for r in rep["rows"]:
        out = os.path.join(work, "nn.npy")
        run([a.ptsel, "search", "--index", path, "--queries", q_path, "-k", str(a.k), "--ef", str(r["ef"]), "--threads", "1", "--out", out])
        rows.append((r["ef"], recall(np.load(out), truth), r["qps"]))
    return dict(name=f"ptsel {a.dtype}", build_s=build_s, build_cpu=build_cpu, size=os.path.getsize(path), open_ms=rep["open_ms"], rows=rows, path=path)


def bench_hnswlib(a, base, queries, truth, work):
    import hnswlib
    idx = hnswlib.Index(space="cosine", dim=base.shape[1])
    idx.init_index(max_elements=len(base), M=a.m, ef_construction=a.efc, random_seed=1)
    idx.set_num_threads(a.build_threads)
    _, build_s, build_cpu = cpu_timed(lambda: idx.add_items(base))
    path = os.path.join(work, "hnswlib.bin")
    idx.save_index(path)
    del idx
    idx = hnswlib.Index(space="cosine", dim=base.shape[1])
    _, open_s = timed(lambda: idx.load_index(path, max_elements=len(base)))
    idx.set_num_threads(1)
    rows = []
    for ef in a.ef:
        idx.set_ef(max(ef, a.k))
        (labels, _), t = timed(lambda: idx.knn_query(queries, k=a.k))
        rows.append((ef, recall(labels, truth), len(queries) / t))
    return dict(name="hnswlib", build_s=build_s, build_cpu=build_cpu, size=os.path.getsize(path), open_ms=open_s * 1e3, rows=rows)


def bench_faiss(a, base_n, queries_n, truth, work):
    import faiss
    idx = faiss.IndexHNSWFlat(base_n.shape[1], a.m, faiss.METRIC_INNER_PRODUCT)
    idx.hnsw.efConstruction = a.efc
    faiss.omp_set_num_threads(a.build_threads)
    _, build_s, build_cpu = cpu_timed(lambda: idx.add(base_n))
    path = os.path.join(work, "faiss.index")
    faiss.write_index(idx, path)
    del idx
    idx, open_s = timed(lambda: faiss.read_index(path))
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in a.ef:
        idx.hnsw.efSearch = max(ef, a.k)
        (_, labels), t = timed(lambda: idx.search(queries_n, a.k))
        rows.append((ef, recall(labels, truth), len(queries_n) / t))
    return dict(name="faiss hnsw", build_s=build_s, build_cpu=build_cpu, size=os.path.getsize(path), open_ms=open_s * 1e3, rows=rows)


def bench_usearch(a, base, queries, truth, work):
    from usearch.index import Index
    idx = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=a.m, expansion_add=a.efc)
    keys = np.arange(len(base), dtype=np.uint64)
    _, build_s, build_cpu = cpu_timed(lambda: idx.add(keys, base, threads=a.build_threads))
    path = os.path.join(work, "usearch.index")
    idx.save(path)
    del idx
    idx, open_s = timed(lambda: Index.restore(path, view=True))
    rows = []
    for ef in a.ef:
        idx.expansion_search = max(ef, a.k)
        m, t = timed(lambda: idx.search(queries, a.k, threads=1))
        rows.append((ef, recall(m.keys.astype(np.int64), truth), len(queries) / t))
    return dict(name="usearch", build_s=build_s, build_cpu=build_cpu, size=os.path.getsize(path), open_ms=open_s * 1e3, rows=rows)


def qps_at(rows, target):
    """QPS of the fastest ef that reaches `target` recall (None if none does)."""
    ok = [qps for _, rec, qps in rows if rec >= target]
    return max(ok) if ok else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="directory with base.npy and queries.npy (otherwise generated)")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0)
    p.add_argument("--work", default=None, help="directory for indexes (default: a temporary one)")
    p.add_argument("--ptsel", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "ptsel"))
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--ef", default="16,32,64,128,256")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--dtype", default="f16", choices=["f16", "f32"])
    p.add_argument("--engines", default="ptsel,hnswlib,faiss,usearch")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-search comparison")
    a = p.parse_args()
    a.ef = [int(x) for x in a.ef.split(",")]
    work = a.work or tempfile.mkdtemp(prefix="ptsel-peers-")
    os.makedirs(work, exist_ok=True)
    if a.data:
        base_path, q_path = os.path.join(a.data, "base.npy"), os.path.join(a.data, "queries.npy")
        base, queries = np.load(base_path), np.load(q_path)
    else:
        base, queries = gen_data.generate(a.rows, a.dim, a.queries, 1000, a.spread, 1)
        base_path, q_path = os.path.join(work, "base.npy"), os.path.join(work, "queries.npy")
        np.save(base_path, base)
        np.save(q_path, queries)
    base_n, queries_n = normalise(base), normalise(queries)
    truth = exact_topk(base_n, queries_n, a.k)
    print(f"data: {base.shape[0]} x {base.shape[1]}, {len(queries)} queries, k {a.k}, M {a.m}, efConstruction {a.efc}, "
          f"build threads {a.build_threads}, search threads 1", flush=True)

    results = []
    for e in a.engines.split(","):
        if e == "ptsel":
            results.append(bench_ptsel(a, base_path, q_path, truth, work))
        elif e == "hnswlib":
            results.append(bench_hnswlib(a, base, queries, truth, work))
        elif e == "faiss":
            results.append(bench_faiss(a, base_n, queries_n, truth, work))
        elif e == "usearch":
            results.append(bench_usearch(a, base, queries, truth, work))
        else:
            sys.exit(f"unknown engine {e}")
        r = results[-1]
        print(f"  {r['name']}: built in {r['build_s']:.1f} s ({r['build_cpu']:.1f} CPU s)", flush=True)

    print()
    print(f"{'engine':<12} {'ef':>5} {'recall':>8} {'QPS':>9}   {'build s':>8} {'CPU s':>7} {'size MiB':>9} {'open ms':>9}")
    for r in results:
        for i, (ef, rec, qps) in enumerate(r["rows"]):
            extra = f"   {r['build_s']:>8.1f} {r['build_cpu']:>7.1f} {r['size'] / 2**20:>9.1f} {r['open_ms']:>9.3f}" if i == 0 else ""
            print(f"{r['name']:<12} {ef:>5} {rec:>8.4f} {qps:>9.0f}{extra}")
    ours = [r for r in results if r["name"].startswith("ptsel")]
    peers = [r for r in results if not r["name"].startswith("ptsel")]
    if ours and peers:
        print()
        print("QPS at matched recall (fastest ef reaching the target), ptsel / best peer:")
        for target in (0.90, 0.95, 0.99):
            mine = qps_at(ours[0]["rows"], target)
            best = max(((qps_at(r["rows"], target) or 0, r["name"]) for r in peers))
            if mine and best[0]:
                print(f"  recall >= {target:.2f}: ptsel {mine:.0f}, best peer {best[1]} {best[0]:.0f}, ratio {mine / best[0]:.2f}")
            else:
                print(f"  recall >= {target:.2f}: not reached by {'ptsel' if not mine else 'any peer'}")
        hl = [r for r in peers if r["name"] == "hnswlib"]
        if hl:
            print(f"build ptsel / hnswlib ({a.build_threads} threads): wall {ours[0]['build_s']:.1f} / {hl[0]['build_s']:.1f} s, "
                  f"CPU {ours[0]['build_cpu']:.1f} / {hl[0]['build_cpu']:.1f} s; throughput ratio (hnswlib time / ptsel time) "
                  f"wall {hl[0]['build_s'] / ours[0]['build_s']:.2f}, CPU {hl[0]['build_cpu'] / ours[0]['build_cpu']:.2f}")

    if not a.no_exact and ours:
        import faiss
        faiss.omp_set_num_threads(a.build_threads)
        flat = faiss.IndexFlatIP(base_n.shape[1])
        flat.add(base_n)
        (_, fl), t_faiss = timed(lambda: flat.search(queries_n, a.k))
        out = os.path.join(work, "exact.npy")
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.build_threads))
        _, t_ours = timed(lambda: run([a.ptsel, "search", "--index", ours[0]["path"], "--queries", q_path, "-k", str(a.k), "--exact",
                                       "--device", "cpu", "--threads", str(a.build_threads), "--out", out], env))
        print()
        print(f"exact search, {len(queries)} queries, {a.build_threads} threads: faiss IndexFlatIP {len(queries) / t_faiss:.0f} QPS "
              f"(recall {recall(fl, truth):.4f}), ptsel search --exact {len(queries) / t_ours:.0f} QPS (recall {recall(np.load(out), truth):.4f}, "
              f"whole command incl. open) -> ratio {t_faiss / t_ours:.2f}")


if __name__ == "__main__":
    main()
