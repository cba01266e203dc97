#!/usr/bin/env python3
"""Write the UOT fixtures of tests/uot_pot.rs: small random instances solved by the Python
Optimal Transport package (POT), the independent oracle of the solver that docs/ARCHITECTURE.md
("The method") describes.

    pip install pot numpy && python3 scripts/gen_uot_fixtures.py

The fixtures are committed, so CI needs no POT. POT >= 0.9.5 starts from u = v = 1 and
multiplies the kernel by a b^T unless reg_type="entropy"; we pass reg_type="entropy" (the
objective's eps * sum T log T) and warmstart = (log 1/K_s, log 1/K_t), the method's start,
so the plain solver runs the very same iterates as ptsel's.
"""
import json
import os
import warnings

import numpy as np
import ot

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "uot")


def cost(rng, rows, cols, dim, near, p_m=0.1):
    # Class means with a shared positive offset, like features after a ReLU. With `near`, each
    # target class is a perturbed source class (as real targets are close to some source
    # classes), which keeps every column's cheapest entry within exp's range at small eps.
    common = rng.normal(size=dim)
    s = rng.normal(size=(rows, dim)) + 0.7 * common
    if near:
        t = s[rng.choice(rows, cols, replace=False)] + 0.3 * rng.normal(size=(cols, dim))
    else:
        t = rng.normal(size=(cols, dim)) + 0.7 * common
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return (1.0 - s @ t.T) / p_m


def instance(name, seed, rows, cols, eps, tau_s, tau_t, uniform, solver, max_iter, tol, dim=16, near=False):
    rng = np.random.default_rng(seed)
    M = cost(rng, rows, cols, dim, near)
    a = np.ones(rows) if uniform else rng.uniform(0.5, 2.0, rows)
    b = np.ones(cols) if uniform else rng.uniform(0.5, 2.0, cols)
    start = (np.full(rows, -np.log(rows)), np.full(cols, -np.log(cols)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver == "plain":
            plan, log = ot.unbalanced.sinkhorn_knopp_unbalanced(
                a, b, M, eps, reg_m=(tau_s, tau_t), reg_type="entropy", warmstart=start,
                numItermax=max_iter, stopThr=tol, log=True)
        else:
            # POT's stabilised loop tests the change of u only, every 10th iteration, and stops
            # far from the optimum at tau_t = 100 (its plan's objective is worse than ours); so
            # it runs a fixed 20,000 iterations here (stopThr = 0), well past convergence.
            plan, log = ot.unbalanced.sinkhorn_stabilized_unbalanced(
                a, b, M, eps, reg_m=(tau_s, tau_t), reg_type="entropy", warmstart=start,
                numItermax=20000, stopThr=0.0, log=True)
    assert np.all(np.isfinite(plan)), name
    if solver == "stabilized":
        assert log["err"][-1] < tol, (name, log["err"][-1])
        assert np.abs(plan.sum(0) - b).max() < 0.2 * b.max(), (name, plan.sum(0), b)
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
        "cost": M.ravel().tolist(),
        "plan": plan.ravel().tolist(),
        # Plain: one error entry per iteration, so this is POT's iteration count.
        "iterations": len(log["err"]) if solver == "plain" else None,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = [
        instance("paper_defaults", 1, 40, 12, 1.0, 1.0, 100.0, True, "plain", 1000, 1e-6),
        instance("nonuniform", 2, 50, 20, 0.5, 2.0, 50.0, False, "plain", 1000, 1e-9),
        instance("wide_target", 3, 15, 60, 1.0, 1.0, 100.0, False, "plain", 1000, 1e-6),
        instance("capped", 4, 30, 10, 0.2, 1.0, 100.0, True, "plain", 25, 1e-12),
        # Small eps: max M/eps reaches ~1200, beyond exp's range; POT's stabilised
        # solver run to convergence is the oracle of ptsel's log-domain solver.
        instance("small_eps", 5, 20, 8, 0.01, 1.0, 10.0, False, "stabilized", 200000, 1e-14, near=True),
        instance("small_eps_paper_tau", 6, 30, 10, 0.01, 1.0, 100.0, False, "stabilized", 200000, 1e-14, near=True),
    ]
    for c in cases:
        path = os.path.join(OUT, c["name"] + ".json")
        with open(path, "w") as f:
            json.dump(c, f)
        print(path, c["solver"], c["iterations"])


if __name__ == "__main__":
    main()
