"""Batch search against numpy brute force, input conversions, and the GIL released."""

import threading
import time

import numpy as np
import pytest

import ptsel

from conftest import brute_force, recall


def test_exact_search_is_numpy_brute_force(index, corpus):
    ids, scores = index.search(corpus.queries, k=10, exact=True, device="cpu")
    truth, sims = brute_force(corpus.x, corpus.queries, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (200, 10)
    # Stored vectors are f16: near-ties may swap, so compare scores, then most ids.
    expected = np.take_along_axis(sims, truth, axis=1)
    np.testing.assert_allclose(scores, expected, atol=2e-3)
    assert recall(ids, truth) > 0.98
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_hnsw_search_recall(index, corpus):
    truth, _ = brute_force(corpus.x, corpus.queries, 10)
    ids, _ = index.search(corpus.queries, k=10, ef=64)
    assert recall(ids, truth) > 0.95
    one, _ = index.search(corpus.queries, k=10, ef=64, threads=1)
    np.testing.assert_array_equal(ids, one)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_queries_in_any_float_dtype_and_order(index, corpus, dtype, order):
    q = np.asarray(corpus.queries.astype(dtype), order=order)
    reference = index.search(q.astype(np.float32), k=5, exact=True)
    for a, b in zip(index.search(q, k=5, exact=True), reference):
        np.testing.assert_array_equal(a, b)


def test_a_list_of_lists_is_accepted(index, corpus):
    q = corpus.queries[:3]
    for a, b in zip(index.search(q.tolist(), k=3), index.search(q, k=3)):
        np.testing.assert_array_equal(a, b)


def test_search_releases_the_gil(index):
    """A second thread keeps ticking while a long search runs (it could not if the search held
    the GIL)."""
    q = np.random.default_rng(1).normal(size=(40000, 32)).astype(np.float32)
    ticks, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.002)

    t = threading.Thread(target=tick)
    t.start()
    try:
        time.sleep(0.02)
        start = time.perf_counter()
        index.search(q, k=10, exact=True, device="cpu", threads=1)
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    assert end - start > 0.1, "the search was too short to tell"
    inside = [x for x in ticks if start + 0.02 < x < end - 0.02]
    assert len(inside) >= 5, f"{len(inside)} ticks during a {end - start:.2f} s search"


@pytest.mark.parametrize("codes", ["sq8", "pq4"])
def test_partitioned_search_reaches_exact_and_names_what_is_missing(index, corpus, tmp_path, codes):
    import ptsel

    truth, _ = brute_force(corpus.x, corpus.queries, 10)
    built = ptsel.build(corpus.x, tmp_path / "p.ptsel", hnsw=False, partitions=16, partition_codes=codes,
                        progress=False)
    few, scores = built.search(corpus.queries, k=10, probes=2, ef=40)
    every, _ = built.search(corpus.queries, k=10, probes=16, ef=100)
    assert recall(few, truth) <= recall(every, truth)
    assert recall(every, truth) > 0.98
    assert np.all(np.diff(scores, axis=1) <= 0)
    # One query at a time answers as the batch does.
    one, _ = built.search(corpus.queries[:1], k=10, probes=2, ef=40)
    np.testing.assert_array_equal(one[0], few[0])
    with pytest.raises(ValueError, match="no partitions"):
        index.search(corpus.queries, k=10, probes=2)
    assert built.has_partitions and not built.has_graph and not index.has_partitions
    # kNN selection through the partitions: the rows of exact search.
    knn = dict(method="knn", per_target=10, budget=60)
    exact = set(built.select(corpus.queries, exact=True, **knn).rows)
    found = set(built.select(corpus.queries, probes=16, ef=100, **knn).rows)
    assert len(found & exact) >= 0.95 * len(exact)
    with pytest.raises(ValueError, match="no partitions"):
        index.select(corpus.queries, probes=2, **knn)
    with pytest.raises(ValueError, match="pq4"):
        ptsel.build(corpus.x, tmp_path / "bad.ptsel", partitions=16, partition_codes="pq2", progress=False)
    assert not (tmp_path / "bad.ptsel").exists()


def test_every_kernel_gives_the_float64_top_k(index, corpus):
    """Exact search on each kernel this CPU has equals float64 arithmetic on the stored f16
    vectors: the same ids in the same order, scores to float32 rounding."""
    v = index.vectors.astype(np.float64)
    q = corpus.queries.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ v.T
    truth = np.lexsort((np.broadcast_to(np.arange(v.shape[0]), sims.shape), -sims))[:, :10]
    ran = []
    try:
        for kernel in ["f32", "bf16", "amx", "int8", "auto"]:
            try:
                name = ptsel.set_kernel(kernel)
            except RuntimeError as e:  # this CPU lacks the unit
                assert kernel in ("bf16", "amx", "int8") and "needs" in str(e)
                continue
            ran.append(name)
            ids, scores = index.search(corpus.queries, k=10, exact=True, device="cpu")
            np.testing.assert_array_equal(ids, truth, err_msg=name)
            np.testing.assert_allclose(scores, np.take_along_axis(sims, truth, 1), rtol=1e-6)
    finally:
        ptsel.set_kernel("auto")
    assert ran[0].startswith("f32")
    with pytest.raises(ValueError, match="unknown kernel"):
        ptsel.set_kernel("tpu")
