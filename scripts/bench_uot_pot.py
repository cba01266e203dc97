#!/usr/bin/env python3
"""Time POT's unbalanced Sinkhorn on the inputs of `cargo bench --bench select` (uot group):
ImageNet's 1000 MoCo-v2 class means against SUN397's 397, cost (1 - cos) / 0.1, eps 1,
tau (1, 100), 1000 iterations at most, tol 1e-6, the start u = 1/K_s, v = 1/K_t.

    pip install pot numpy
    OPENBLAS_NUM_THREADS=1 python3 scripts/bench_uot_pot.py   # one thread, like the bench
"""
import os
import sys
import time
import warnings

import numpy as np
import ot

DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "data", "classmeans-moco128")


def main():
    s = np.load(os.path.join(DATA, "imagenet.npy")).astype(np.float64)
    t = np.load(os.path.join(DATA, "sun.npy")).astype(np.float64)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    M = (1.0 - s @ t.T) / 0.1
    a, b = np.ones(len(s)), np.ones(len(t))
    start = (np.full(len(s), -np.log(len(s))), np.full(len(t), -np.log(len(t))))
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(30):
            t0 = time.perf_counter()
            plan, log = ot.unbalanced.sinkhorn_knopp_unbalanced(
                a, b, M, 1.0, reg_m=(1.0, 100.0), reg_type="entropy", warmstart=start,
                numItermax=1000, stopThr=1e-6, log=True)
            times.append(time.perf_counter() - t0)
    times.sort()
    print(f"POT {ot.__version__} sinkhorn_knopp_unbalanced {M.shape[0]}x{M.shape[1]}: "
          f"{len(log['err'])} iterations, median {1e3 * times[len(times) // 2]:.2f} ms, "
          f"min {1e3 * times[0]:.2f} ms over {len(times)} runs "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
