#!/usr/bin/env python3
"""Write the sparse UOT fixtures of tests/sparse_uot.rs: small instances whose plan is masked to
a kNN graph (each target column linked to its k cheapest source rows; rows no column links to
are dropped), solved by the Python Optimal Transport package (POT) on the dense cost with
1000 * eps off the graph, where the kernel exp(-1000) is exactly 0, so POT's dense iterates are
the masked problem's.

    pip install pot numpy && python3 scripts/gen_sparse_uot_fixtures.py

The start and POT's options are those of scripts/gen_uot_fixtures.py (whose cost it reuses).
"""
import json
import os
import sys
import warnings

import numpy as np
import ot

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_uot_fixtures import cost  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "sparse_uot")


def instance(name, seed, rows, cols, k, eps, tau_s, tau_t, uniform, solver, max_iter, tol, near=False):
    rng = np.random.default_rng(seed)
    M = cost(rng, rows, cols, 16, near)
    mask = np.zeros(M.shape, dtype=bool)
    nearest = np.argsort(M, axis=0, kind="stable")[:k]
    for j in range(cols):
        mask[nearest[:, j], j] = True
    keep = mask.any(axis=1)
    M, mask = M[keep], mask[keep]
    rows = M.shape[0]
    a = np.ones(rows) if uniform else rng.uniform(0.5, 2.0, rows)
    b = np.ones(cols) if uniform else rng.uniform(0.5, 2.0, cols)
    masked = np.where(mask, M, 1000.0 * eps)
    start = (np.full(rows, -np.log(rows)), np.full(cols, -np.log(cols)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver == "plain":
            plan, log = ot.unbalanced.sinkhorn_knopp_unbalanced(
                a, b, masked, eps, reg_m=(tau_s, tau_t), reg_type="entropy", warmstart=start,
                numItermax=max_iter, stopThr=tol, log=True)
        else:
            plan, log = ot.unbalanced.sinkhorn_stabilized_unbalanced(
                a, b, masked, eps, reg_m=(tau_s, tau_t), reg_type="entropy", warmstart=start,
                numItermax=20000, stopThr=0.0, log=True)
    assert np.all(np.isfinite(plan)), name
    assert plan[~mask].max(initial=0.0) <= 1e-12 * plan.max(), (name, plan[~mask].max())
    ii, jj = np.nonzero(mask)
    return {
        "name": name,
        "pot_version": ot.__version__,
        "solver": solver,
        "rows": rows,
        "cols": cols,
        "eps": eps,
        "tau_source": tau_s,
        "tau_target": tau_t,
        "max_iter": max_iter,
        "tol": tol,
        "a": a.tolist(),
        "b": b.tolist(),
        "edges": [[int(i), int(j), float(M[i, j])] for i, j in zip(ii, jj)],
        "plan": [float(plan[i, j]) for i, j in zip(ii, jj)],
        "iterations": len(log["err"]) if solver == "plain" else None,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = [
        instance("knn_paper", 11, 60, 15, 8, 1.0, 1.0, 100.0, True, "plain", 1000, 1e-6),
        instance("knn_sample_eps", 12, 80, 25, 6, 0.1, 1.0, 100.0, False, "plain", 1000, 1e-9),
        instance("knn_capped", 13, 40, 12, 5, 0.2, 2.0, 50.0, True, "plain", 30, 1e-12),
        instance("knn_small_eps", 14, 30, 10, 6, 0.01, 1.0, 10.0, False, "stabilized", 200000, 1e-14, near=True),
    ]
    for c in cases:
        path = os.path.join(OUT, c["name"] + ".json")
        with open(path, "w") as f:
            json.dump(c, f)
        print(path, c["solver"], c["iterations"], len(c["edges"]))


if __name__ == "__main__":
    main()
