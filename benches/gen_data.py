#!/usr/bin/env python3
"""Clustered data with overlapping clusters for the HNSW benchmarks.

Each point is a cluster centre plus isotropic Gaussian noise; centres share a common direction
(like post-ReLU features) and the noise is large enough that clusters overlap, so the nearest
neighbours of a query are spread over several clusters. Easy, well separated data hides the
differences between engines; with the defaults, HNSW (M 16, efConstruction 200) reaches a
recall@10 near 0.9 at ef 16. Queries come from the same distribution but are not in the corpus.

    python3 benches/gen_data.py --rows 100000 --dim 512 --out-dir /tmp/bench
writes base.npy [rows, dim] and queries.npy [queries, dim] (float32).
"""
import argparse
import os

import numpy as np


def generate(rows, dim, queries, clusters, spread, seed):
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim).astype(np.float32)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) + 0.5 * common
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = spread / np.sqrt(dim)

    def draw(n):
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 65536):
            m = min(65536, n - start)
            c = rng.integers(0, clusters, size=m)
            out[start:start + m] = centres[c] + noise * rng.standard_normal((m, dim), dtype=np.float32)
        return out

    return draw(rows), draw(queries)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0, help="noise norm relative to the unit centre norm")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out-dir", required=True)
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    base, queries = generate(a.rows, a.dim, a.queries, a.clusters, a.spread, a.seed)
    np.save(os.path.join(a.out_dir, "base.npy"), base)
    np.save(os.path.join(a.out_dir, "queries.npy"), queries)
    print(f"{a.out_dir}: base {base.shape}, queries {queries.shape}")


if __name__ == "__main__":
    main()
