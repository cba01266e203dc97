#!/usr/bin/env python3
"""ptsel's HNSW (and partitioned) search side by side with hnswlib, faiss (IndexHNSWFlat), usearch,
ScaNN, SymphonyQG (`rabitqlib`) and VSAG (`pyvsag`) on the same data (`--engines` picks them).

Every engine gets the same .npy vectors (cosine metric), the same build threads, and one search
thread; the HNSW engines get the same M and efConstruction; recall@k is computed against one exact
ground truth (numpy, float64). ptsel runs through its CLI binary (`ptsel build`, `ptsel search`,
`ptsel bench`), and as `ptsel-py` through its Python package (`pip install ./python`), in process
like the peers' Python bindings: `Index.search` against `knn_query` and `search` on the same numpy
queries. Prints one table: recall and QPS per ef per engine, build time, index size on disk, open
time, and the ratio ptsel / best peer in QPS at matched recall (each peer's figure beside it). Also
exact search: faiss IndexFlatIP against `ptsel search --exact` on the same query batch (QPS, all
build threads).

ScaNN (`scann` on PyPI) is not a graph: a k-means tree of --scann-leaves partitions (default
2 * sqrt(rows)) over the normalised vectors, anisotropic asymmetric hashing (2 dims a block, LUT16,
threshold 0.2) for the first pass, then an exact float32 rescoring of --scann-reorder (100)
candidates. It has no ef: the --ef sweep maps log-linearly onto the share of partitions searched,
--scann-frac's 1.5 % at the smallest ef to 80 % at the largest, which on the 100k-row MiniLM set
(benches/real_data.py) spans recall@10 0.79 .. 0.9996 as the HNSW engines' ef 16..256 spans about
0.86 .. 0.998; a denser --ef gives ScaNN denser points in the same span. It runs `search_batched`
on the whole query batch with one thread (parallel=False, set_num_threads(1)), trains with
--build-threads (set_n_training_threads), and its size is that of its serialised directory (the
float32 rows for the rescoring included), its open time that of `load_searcher`.

Matched recall is printed two ways. `qps_at` takes, per engine, the fastest ef whose recall reaches
the target: a step, so an engine whose ef points fall just past a target is charged up to one ef
step (about 2x in QPS with the default doubling sweep). `qps_interp` interpolates log QPS linearly
in recall between the two ef points around the target (below the swept span it falls back to the
step's figure, a lower bound; above it there is none). A denser --ef narrows the gap between the two.

    pip install -r benches/requirements.txt
    cargo build --release
    python3 benches/peers.py --rows 100000 --dim 512 --work /tmp/peers
    python3 benches/peers.py --data DIR   # DIR/base.npy and DIR/queries.npy
    python3 benches/peers.py --engines ptsel-py,hnswlib,faiss   # Python against Python
    python3 benches/peers.py --engines ptsel,scann --ef 8,12,16,24,32,48,64,96,128,192,256

`ptsel-ivf-sq8` and `ptsel-ivf-pq4` in --engines are ptsel's partitioned search with 8-bit or
4-bit codes (`build --no-hnsw --partitions --partition-codes`, then `search --probes`): like ScaNN
they have no ef, so the i-th --ef of the sweep scans the i-th of --ivf-probes partitions and
re-ranks --ivf-rerank (sq8) or --ivf-rerank-pq4 rows exactly.

The synthetic data generator is benches/gen_data.py (overlapping clusters); benches/real_data.py
builds a real one (documentation sentences embedded with all-MiniLM-L6-v2, 384-d: --data /tmp/real384).
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


TILE = 5


class Engine:
    """A built (or reloaded) index: build figures, size, open time and a search function that
    returns `(labels [nq, k], wall seconds, CPU seconds)` for one ef on one thread."""

    def __init__(self, name, build, size, open_ms, search):
        self.name, self.build_s, self.build_cpu = name, build["build_s"], build["build_cpu"]
        self.size, self.open_ms, self.search = size, open_ms, search


def built(a, work, name, path, build):
    """Build with `build()` unless --reuse finds `path` and its recorded build figures."""
    log = os.path.join(work, "builds.json")
    known = json.load(open(log)) if os.path.exists(log) else {}
    if a.reuse and os.path.exists(path) and name in known:
        return known[name]
    _, wall, cpu = cpu_timed(build)
    known[name] = dict(build_s=wall, build_cpu=cpu)
    json.dump(known, open(log, "w"), indent=1)
    return known[name]


def ptsel_engine(a, base_path, q_path, work, layout="blocks"):
    """ptsel through its CLI; `layout` is the graph layout (`ptsel-compact` in --engines: the
    layout of indexes written before node blocks, smaller and slower)."""
    tag = "" if layout == "blocks" else f"-{layout}"
    name = f"ptsel {a.dtype}" + ("" if layout == "blocks" else f" {layout}")
    path = os.path.join(work, f"ptsel-{a.dtype}{tag}.ptsel")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.build_threads))
    b = built(a, work, name, path, lambda: run([a.ptsel, "build", "--features", base_path, "--out", path, "--force", "-q", "--dtype", a.dtype,
                                                "--hnsw-m", str(a.m), "--ef-construction", str(a.efc), "--seed", "1",
                                                "--graph-layout", layout], env))
    bench_json = os.path.join(work, f"bench-{a.dtype}{tag}.json")
    run([a.ptsel, "bench", "--index", path, "--queries", q_path, "-k", str(a.k), "--ef", ",".join(map(str, a.ef)),
         "--threads", "1", "--json", bench_json, "--plot", os.path.join(work, f"ptsel-{a.dtype}{tag}.svg")])
    open_ms = json.load(open(bench_json))["open_ms"]
    out = os.path.join(work, "nn.npy")

    def cmd(queries, ef):
        return [a.ptsel, "search", "--index", path, "--queries", queries, "-k", str(a.k), "--ef", str(ef), "--threads", "1", "--out", out]
    search = cli_search(work, path, q_path, out, cmd)
    return Engine(name, b, os.path.getsize(path), open_ms, search)


def cli_search(work, path, q_path, out, cmd):
    """`search(ef)` for an engine run through ptsel's CLI: `cmd(queries, ef)` is its command line,
    writing `out`. Returns (labels, wall s, CPU s) per pass of the queries."""
    one_q, many_q = os.path.join(work, "one-query.npy"), os.path.join(work, "queries-x5.npy")
    q = np.load(q_path)
    np.save(one_q, q[:1])
    np.save(many_q, np.tile(q, (TILE, 1)))

    def search(ef):
        # The CLI's fixed costs (process start, open, reading queries, writing results) are
        # measured with one query and subtracted; the queries run TILE times over in one command
        # so that what remains is dominated by the search. Times are per pass of the queries.
        # The peers search indexes they loaded into memory; ptsel's is mapped, and pages the OS
        # reclaimed while the other engines ran (this machine's DAMON reclaims idle file pages)
        # would be read back inside the timed pass: read the file first, as a serving process's
        # index stays resident.
        warm(path)
        _, w1, c1 = cpu_timed(lambda: run(cmd(one_q, ef)))
        _, w, c = cpu_timed(lambda: run(cmd(many_q, ef)))
        # A pass the one-query run took longer than (a stall on the shared machine) is no
        # measurement: infinite time, so the best-of-repeats keeps another pass.
        valid = lambda many, one: (many - one) / TILE if many > 2 * one else float("inf")
        return np.load(out)[:len(q)], valid(w, w1), valid(c, c1)
    return search


def ivf_params(a, ef, codes):
    """ptsel's partitioned search has no beam: the i-th --ef of the sweep scans the i-th of
    --ivf-probes partitions (the last one repeats) and re-ranks --ivf-rerank rows exactly
    (--ivf-rerank-pq4 for 4-bit codes, which need more)."""
    probes = a.ivf_probes[min(a.ef.index(ef), len(a.ivf_probes) - 1)]
    return probes, max(a.ivf_rerank_pq4 if codes == "pq4" else a.ivf_rerank, a.k)


def ptsel_ivf_engine(a, base_path, q_path, work, codes):
    """ptsel's partitioned search through its CLI: an index of partitions only (`build --no-hnsw
    --partitions --partition-codes CODES`, 2 sqrt(rows) of them unless --ivf-partitions), searched
    with `search --probes`."""
    name = f"ptsel {a.dtype} ivf-{codes}"
    path = os.path.join(work, f"ptsel-{a.dtype}-ivf-{codes}.ptsel")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.build_threads))
    parts = [str(a.ivf_partitions)] if a.ivf_partitions else []
    b = built(a, work, name, path, lambda: run([a.ptsel, "build", "--features", base_path, "--out", path, "--force", "-q",
                                                "--dtype", a.dtype, "--no-hnsw", "--partitions", *parts,
                                                "--partition-codes", codes, "--seed", "1"], env))
    bench_json = os.path.join(work, f"bench-{a.dtype}-ivf-{codes}.json")
    rerank = ivf_params(a, a.ef[0], codes)[1]
    run([a.ptsel, "bench", "--index", path, "--queries", q_path, "-k", str(a.k), "--ef", str(rerank),
         "--probes", ",".join(map(str, a.ivf_probes)), "--threads", "1", "--json", bench_json])
    open_ms = json.load(open(bench_json))["open_ms"]
    out = os.path.join(work, f"nn-ivf-{codes}.npy")

    def cmd(queries, ef):
        probes, rerank = ivf_params(a, ef, codes)
        return [a.ptsel, "search", "--index", path, "--queries", queries, "-k", str(a.k), "--probes", str(probes), "--ef", str(rerank),
                "--threads", "1", "--out", out]
    search = cli_search(work, path, q_path, out, cmd)
    return Engine(name, b, os.path.getsize(path), open_ms, search)


def warm(path, chunk=1 << 24):
    """Read `path` through the page cache (so a mapping of it faults on no disk read)."""
    with open(path, "rb", buffering=0) as f:
        while f.read(chunk):
            pass


def ptsel_python_engine(a, base, queries, work):
    import ptsel
    path = os.path.join(work, f"ptsel-py-{a.dtype}.ptsel")
    b = built(a, work, "ptsel python", path, lambda: ptsel.build(
        base, path, dtype=a.dtype, m=a.m, ef_construction=a.efc, seed=1, progress=False, force=True))
    idx, open_s = timed(lambda: ptsel.open(path))

    def search(ef):
        (labels, _), w, c = cpu_timed(lambda: idx.search(queries, k=a.k, ef=max(ef, a.k), threads=1))
        return labels, w, c
    return Engine("ptsel python", b, os.path.getsize(path), open_s * 1e3, search)


def hnswlib_engine(a, base, queries, work):
    import hnswlib
    path = os.path.join(work, "hnswlib.bin")

    def build():
        idx = hnswlib.Index(space="cosine", dim=base.shape[1])
        idx.init_index(max_elements=len(base), M=a.m, ef_construction=a.efc, random_seed=1)
        idx.set_num_threads(a.build_threads)
        idx.add_items(base)
        idx.save_index(path)
    b = built(a, work, "hnswlib", path, build)
    idx = hnswlib.Index(space="cosine", dim=base.shape[1])
    _, open_s = timed(lambda: idx.load_index(path, max_elements=len(base)))
    idx.set_num_threads(1)

    def search(ef):
        idx.set_ef(max(ef, a.k))
        (labels, _), w, c = cpu_timed(lambda: idx.knn_query(queries, k=a.k))
        return labels, w, c
    return Engine("hnswlib", b, os.path.getsize(path), open_s * 1e3, search)


def faiss_engine(a, base_n, queries_n, work):
    import faiss
    path = os.path.join(work, "faiss.index")

    def build():
        idx = faiss.IndexHNSWFlat(base_n.shape[1], a.m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = a.efc
        faiss.omp_set_num_threads(a.build_threads)
        idx.add(base_n)
        faiss.write_index(idx, path)
    b = built(a, work, "faiss hnsw", path, build)
    idx, open_s = timed(lambda: faiss.read_index(path))

    def search(ef):
        faiss.omp_set_num_threads(1)
        idx.hnsw.efSearch = max(ef, a.k)
        (_, labels), w, c = cpu_timed(lambda: idx.search(queries_n, a.k))
        return labels, w, c
    return Engine("faiss hnsw", b, os.path.getsize(path), open_s * 1e3, search)


def usearch_engine(a, base, queries, work):
    from usearch.index import Index
    path = os.path.join(work, "usearch.index")

    def build():
        idx = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=a.m, expansion_add=a.efc)
        idx.add(np.arange(len(base), dtype=np.uint64), base, threads=a.build_threads)
        idx.save(path)
    b = built(a, work, "usearch", path, build)
    idx, open_s = timed(lambda: Index.restore(path, view=True))

    def search(ef):
        idx.expansion_search = max(ef, a.k)
        m, w, c = cpu_timed(lambda: idx.search(queries, a.k, threads=1))
        return m.keys.astype(np.int64), w, c
    return Engine("usearch", b, os.path.getsize(path), open_s * 1e3, search)


def symqg_engine(a, base_n, queries_n, work):
    """SymphonyQG (`rabitqlib` on PyPI): each vertex stores RaBitQ codes of its neighbours beside
    it, a whole neighbour block is estimated at once with FastScan and the candidates re-ranked
    exactly. Degree --symqg-degree (32, its paper's), efConstruction --efc, inner product on the
    normalised rows (its metrics are l2 and ip); `search_batch` with one thread."""
    import rabitqlib
    path = os.path.join(work, "symqg.index")

    def build():
        idx = rabitqlib.SymqgIndex(base_n.shape[1], a.symqg_degree, metric="ip")
        idx.build(base_n, a.efc, num_threads=a.build_threads)
        idx.save(path)
    b = built(a, work, "symphonyqg", path, build)
    idx, open_s = timed(lambda: rabitqlib.SymqgIndex.load(path))

    def search(ef):
        (ids, _), w, c = cpu_timed(lambda: idx.search_batch(queries_n, a.k, max(ef, a.k), num_threads=1))
        return np.asarray(ids, dtype=np.int64), w, c
    return Engine("symphonyqg", b, os.path.getsize(path), open_s * 1e3, search)


def vsag_engine(a, base_n, queries_n, work):
    """VSAG's HGraph (`pyvsag` on PyPI): a graph over 8-bit scalar codes (sq8) with an exact
    float32 re-rank (use_reorder), max_degree 2 * --m (hnswlib's level-0 degree), efConstruction
    --efc, inner product on the normalised rows. Its binding searches one query per call, so its
    QPS includes a Python call per query."""
    import pyvsag
    pyvsag.set_logger_off()
    path = os.path.join(work, "vsag.index")
    params = json.dumps({"dtype": "float32", "metric_type": "ip", "dim": int(base_n.shape[1]),
                         "index_param": {"base_quantization_type": "sq8", "max_degree": 2 * a.m,
                                         "ef_construction": a.efc, "use_reorder": True,
                                         "precise_quantization_type": "fp32",
                                         "build_thread_count": a.build_threads}})

    def build():
        idx = pyvsag.Index("hgraph", params)
        idx.build(vectors=base_n, ids=np.arange(len(base_n), dtype=np.int64),
                  num_elements=len(base_n), dim=base_n.shape[1])
        idx.save(path)
    b = built(a, work, "vsag hgraph", path, build)
    idx = pyvsag.Index("hgraph", params)
    _, open_s = timed(lambda: idx.load(path))

    def search(ef):
        p = json.dumps({"hgraph": {"ef_search": max(ef, a.k)}})

        def each():
            return np.stack([np.asarray(idx.knn_search(vector=q, k=a.k, parameters=p)[0], dtype=np.int64)
                             for q in queries_n])
        labels, w, c = cpu_timed(each)
        return labels, w, c
    return Engine("vsag hgraph", b, os.path.getsize(path), open_s * 1e3, search)


def scann_leaves(a, n):
    """ScaNN's partition count: --scann-leaves, or 2 * sqrt(rows)."""
    return a.scann_leaves or max(2, int(round(2 * np.sqrt(n))))


def scann_params(a, n, ef):
    """ScaNN has no ef: the --ef sweep maps log-linearly onto the share of partitions searched,
    from --scann-frac's low end at the smallest ef to its high end at the largest (on 100k
    MiniLM rows, 1.5 % .. 80 % spans recall@10 0.79 .. 0.9996); the float32 reorder depth stays at
    --scann-reorder (deeper bought no recall there, only time). Returns (leaves searched, reorder)."""
    leaves = scann_leaves(a, n)
    lo_f, hi_f = (float(x) for x in a.scann_frac.split(","))
    lo, hi = min(a.ef), max(a.ef)
    t = np.log(ef / lo) / np.log(hi / lo) if hi > lo else 1.0
    frac = lo_f * (hi_f / lo_f) ** t
    return int(min(leaves, max(1, round(frac * leaves)))), a.scann_reorder


def scann_engine(a, base_n, queries_n, work):
    """ScaNN (k-means tree partitioning, anisotropic AH scoring in 2-dim blocks, float32 reorder)
    on the normalised vectors with dot product, searched one thread at a time with
    `search_batched` (parallel=False) on the whole query batch."""
    from scann import scann_ops_pybind
    path = os.path.join(work, "scann")
    leaves = scann_leaves(a, len(base_n))

    def build():
        b = scann_ops_pybind.builder(base_n, a.k, "dot_product")
        b = b.tree(num_leaves=leaves, num_leaves_to_search=min(leaves, a.ef[len(a.ef) // 2]),
                   training_sample_size=min(len(base_n), 250_000))
        b = b.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(a.scann_reorder)
        b.set_n_training_threads(a.build_threads)
        idx = b.build()
        os.makedirs(path, exist_ok=True)
        for f in os.listdir(path):
            os.remove(os.path.join(path, f))
        idx.serialize(path)
    b = built(a, work, "scann", path, build)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    idx, open_s = timed(lambda: scann_ops_pybind.load_searcher(path))
    idx.set_num_threads(1)

    def search(ef):
        nprobe, reorder = scann_params(a, len(base_n), ef)
        (labels, _), w, c = cpu_timed(lambda: idx.search_batched(
            queries_n, final_num_neighbors=a.k, pre_reorder_num_neighbors=reorder, leaves_to_search=nprobe))
        return np.asarray(labels, dtype=np.int64), w, c
    return Engine("scann", b, size, open_s * 1e3, search)


def sweep(engines, a, truth):
    """Per engine, per ef: recall and the best of `--repeat` interleaved runs, as QPS by CPU time
    (steady on a shared machine) and by wall time."""
    nq = len(truth)
    best = {e.name: {} for e in engines}
    for _ in range(a.repeat):
        for e in engines:
            for ef in a.ef:
                labels, w, c = e.search(ef)
                r, bw, bc = best[e.name].get(ef, (None, 0.0, 0.0))
                best[e.name][ef] = (recall(labels, truth), max(bw, nq / w), max(bc, nq / c))
    for e in engines:
        e.rows = [(ef, *best[e.name][ef]) for ef in a.ef]


def qps_at(rows, target, col):
    """QPS (column `col`: 2 wall, 3 CPU) of the fastest ef reaching `target` recall, or None."""
    ok = [r[col] for r in rows if r[1] >= target]
    return max(ok) if ok else None


def qps_interp(rows, target, col):
    """QPS at exactly `target` recall, log-QPS interpolated linearly in recall between the two sweep
    points around it. No extrapolation: below the swept recalls the fastest point's QPS (a lower
    bound, as qps_at), above them None."""
    pts = sorted((r[1], r[col]) for r in rows)
    if pts and target < pts[0][0]:
        return qps_at(rows, target, col)
    for (r1, q1), (r2, q2) in zip(pts, pts[1:]):
        if r1 <= target <= r2 and r2 > r1:
            return float(np.exp(np.log(q1) + (target - r1) / (r2 - r1) * (np.log(q2) - np.log(q1))))
    return next((q for r, q in pts if r == target), None)


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
    p.add_argument("--engines", default="ptsel,hnswlib,faiss,usearch,scann")
    p.add_argument("--symqg-degree", type=int, default=32, help="SymphonyQG graph degree (a multiple of 32)")
    p.add_argument("--scann-leaves", type=int, default=0, help="ScaNN partitions (default 2 * sqrt(rows))")
    p.add_argument("--scann-reorder", type=int, default=100, help="ScaNN candidates rescored exactly (float32)")
    p.add_argument("--scann-frac", default="0.015,0.8", help="ScaNN share of partitions searched at the smallest and the largest --ef")
    p.add_argument("--ivf-probes", default="1,2,3,4,6,8,12,16,24,32",
                   help="ptsel-ivf: partitions scanned at each --ef of the sweep, in order (the last repeats)")
    p.add_argument("--ivf-rerank", type=int, default=20, help="ptsel-ivf-sq8: rows re-ranked exactly (search --ef)")
    p.add_argument("--ivf-rerank-pq4", type=int, default=80, help="ptsel-ivf-pq4: rows re-ranked exactly (search --ef)")
    p.add_argument("--ivf-partitions", type=int, default=0, help="ptsel-ivf: partitions (default 2 * sqrt(rows))")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-search comparison")
    p.add_argument("--repeat", type=int, default=3, help="interleaved search runs, best kept")
    p.add_argument("--reuse", action="store_true", help="reuse indexes already built in --work (build figures from builds.json)")
    a = p.parse_args()
    a.ef = [int(x) for x in a.ef.split(",")]
    a.ivf_probes = [int(x) for x in a.ivf_probes.split(",")]
    # Build threads of the in-process ptsel package (its thread pool reads this once).
    os.environ["RAYON_NUM_THREADS"] = str(a.build_threads)
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

    engines = []
    for e in a.engines.split(","):
        if e == "ptsel":
            engines.append(ptsel_engine(a, base_path, q_path, work))
        elif e in ("ptsel-ivf-sq8", "ptsel-ivf-pq4"):
            engines.append(ptsel_ivf_engine(a, base_path, q_path, work, e.rsplit("-", 1)[1]))
        elif e == "ptsel-compact":
            engines.append(ptsel_engine(a, base_path, q_path, work, layout="compact"))
        elif e == "ptsel-py":
            engines.append(ptsel_python_engine(a, base, queries, work))
        elif e == "hnswlib":
            engines.append(hnswlib_engine(a, base, queries, work))
        elif e == "faiss":
            engines.append(faiss_engine(a, base_n, queries_n, work))
        elif e == "usearch":
            engines.append(usearch_engine(a, base, queries, work))
        elif e == "scann":
            engines.append(scann_engine(a, base_n, queries_n, work))
        elif e == "symphonyqg":
            engines.append(symqg_engine(a, base_n, queries_n, work))
        elif e == "vsag":
            engines.append(vsag_engine(a, base_n, queries_n, work))
        else:
            sys.exit(f"unknown engine {e}")
        r = engines[-1]
        print(f"  {r.name}: built in {r.build_s:.1f} s ({r.build_cpu:.1f} CPU s)", flush=True)
    sweep(engines, a, truth)

    print()
    print(f"QPS: one search thread, best of {a.repeat} interleaved runs; 'QPS cpu' = queries / CPU seconds of the search, "
          f"'QPS wall' = queries / wall seconds")
    print(f"{'engine':<18} {'ef':>5} {'recall':>8} {'QPS cpu':>9} {'QPS wall':>9}   {'build s':>8} {'CPU s':>7} {'size MiB':>9} {'open ms':>9}")
    for r in engines:
        for i, (ef, rec, wall, cpu) in enumerate(r.rows):
            extra = f"   {r.build_s:>8.1f} {r.build_cpu:>7.1f} {r.size / 2**20:>9.1f} {r.open_ms:>9.3f}" if i == 0 else ""
            print(f"{r.name:<18} {ef:>5} {rec:>8.4f} {cpu:>9.0f} {wall:>9.0f}{extra}")
    if any(r.name == "scann" for r in engines):
        leaves = scann_leaves(a, len(base))
        print(f"scann: ef -> partitions searched of {leaves} (--scann-frac {a.scann_frac}, log-linear in ef), "
              f"{a.scann_reorder} candidates rescored: " + ", ".join(f"{ef} -> {scann_params(a, len(base), ef)[0]}" for ef in a.ef))
    for codes in ("sq8", "pq4"):
        if any(r.name.endswith(f" ivf-{codes}") for r in engines):
            print(f"ptsel ivf-{codes}: ef -> partitions scanned (--ivf-probes), {ivf_params(a, a.ef[0], codes)[1]} rows re-ranked: "
                  + ", ".join(f"{ef} -> {ivf_params(a, ef, codes)[0]}" for ef in a.ef))
    ours = [r for r in engines if r.name.startswith("ptsel")]
    peers = [r for r in engines if not r.name.startswith("ptsel")]
    if ours and peers:
        print()
        for mine_e in ours:
            for how, fn, op in (("fastest ef reaching the target", qps_at, ">="), ("log-QPS interpolated between the two ef around it", qps_interp, "=")):
                print(f"QPS at matched recall ({how}), {mine_e.name} / best peer:")
                for target in (0.90, 0.95, 0.99):
                    for col, what in ((3, "cpu"), (2, "wall")):
                        mine = fn(mine_e.rows, target, col)
                        best = max(((fn(r.rows, target, col) or 0, r.name) for r in peers))
                        if mine and best[0]:
                            each = ", ".join(f"{r.name} {q:.0f}" if (q := fn(r.rows, target, col)) else f"{r.name} -" for r in peers)
                            print(f"  recall {op} {target:.2f} ({what}): ptsel {mine:.0f}, best peer {best[1]} {best[0]:.0f}, "
                                  f"ratio {mine / best[0]:.2f}  [{each}]")
                        else:
                            print(f"  recall {op} {target:.2f} ({what}): not reached "
                                  f"by {'ptsel' if not mine else 'any peer'}")
        hl = [r for r in peers if r.name == "hnswlib"]
        for mine_e in ours if hl else []:
            print(f"build {mine_e.name} / hnswlib ({a.build_threads} threads): wall {mine_e.build_s:.1f} / {hl[0].build_s:.1f} s, "
                  f"CPU {mine_e.build_cpu:.1f} / {hl[0].build_cpu:.1f} s; throughput ratio (hnswlib time / ptsel time) "
                  f"wall {hl[0].build_s / mine_e.build_s:.2f}, CPU {hl[0].build_cpu / mine_e.build_cpu:.2f}")

    if not a.no_exact and any(r.name == f"ptsel {a.dtype}" for r in engines):
        import faiss
        faiss.omp_set_num_threads(a.build_threads)
        flat = faiss.IndexFlatIP(base_n.shape[1])
        flat.add(base_n)
        out = os.path.join(work, "exact.npy")
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.build_threads))
        cmd = [a.ptsel, "search", "--index", os.path.join(work, f"ptsel-{a.dtype}.ptsel"), "--queries", q_path, "-k", str(a.k), "--exact",
               "--device", "cpu", "--threads", str(a.build_threads), "--out", out]
        f_best, o_best = (0.0, 0.0), (0.0, 0.0)
        for _ in range(a.repeat):
            (_, fl), w, c = cpu_timed(lambda: flat.search(queries_n, a.k))
            f_best = (max(f_best[0], len(queries) / w), max(f_best[1], len(queries) / c))
            _, w, c = cpu_timed(lambda: run(cmd, env))
            o_best = (max(o_best[0], len(queries) / w), max(o_best[1], len(queries) / c))
        print()
        print(f"exact search, {len(queries)} queries, {a.build_threads} threads, best of {a.repeat} (QPS wall / QPS per CPU second):")
        print(f"  faiss IndexFlatIP     {f_best[0]:>8.0f} / {f_best[1]:>8.0f}  recall {recall(fl, truth):.4f}")
        print(f"  ptsel search --exact  {o_best[0]:>8.0f} / {o_best[1]:>8.0f}  recall {recall(np.load(out), truth):.4f}  (whole command: start, open, read, write)")
        print(f"  ratio ptsel / faiss: wall {o_best[0] / f_best[0]:.2f}, CPU {o_best[1] / f_best[1]:.2f}")


if __name__ == "__main__":
    main()
