"""Opening an index: properties and read-only zero-copy views of the mapped file."""

import gc
import time

import numpy as np
import pytest

import ptsel


def test_properties(index, corpus):
    assert len(index) == len(corpus.x)
    assert (index.dim, index.dtype, index.metric) == (32, "f16", "cos")
    assert index.classes == corpus.labels.max() + 1
    assert index.class_names is None
    assert str(index.path) == str(corpus.index_path)
    assert repr(index).startswith("Index(")
    assert index.ids[:2] == corpus.ids[:2] and len(index.ids) == len(corpus.x)


def test_views_hold_the_stored_data(index, corpus):
    x = corpus.x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(index.norms, norms, rtol=1e-6)
    np.testing.assert_allclose(index.vectors, x / norms[:, None], atol=1e-3)
    np.testing.assert_array_equal(index.labels, corpus.labels)
    counts = np.bincount(corpus.labels)
    np.testing.assert_array_equal(index.class_counts, counts)
    means = np.stack([x[corpus.labels == c].mean(axis=0) for c in range(len(counts))])
    np.testing.assert_allclose(index.class_means, means, rtol=1e-9, atol=1e-12)
    assert index.vectors.dtype == np.float16 and index.labels.dtype == np.uint32


@pytest.mark.parametrize("name", ["vectors", "norms", "labels", "class_counts", "class_means"])
def test_views_are_read_only_and_zero_copy(index, name):
    v = getattr(index, name)
    assert not v.flags.writeable and not v.flags.owndata
    assert v.base is index
    with pytest.raises(ValueError):
        v[0] = 1
    with pytest.raises(ValueError):
        v.setflags(write=True)


def test_a_view_keeps_the_index_alive(corpus):
    expected = ptsel.open(corpus.index_path).vectors.astype(np.float32).sum()
    v = ptsel.open(corpus.index_path).vectors  # the Index object is dropped at once
    gc.collect()
    assert v.astype(np.float32).sum() == expected
    del v
    gc.collect()


def test_open_is_fast(corpus):
    best = min(_timed(lambda: ptsel.open(corpus.index_path).vectors) for _ in range(20))
    assert best < 1e-3, f"open + vectors took {best * 1e3:.2f} ms"


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def test_views_do_not_copy_the_vectors(tmp_path):
    statm = "/proc/self/statm"
    try:
        open(statm).close()
    except OSError:
        pytest.skip("needs /proc/self/statm")
    x = np.random.default_rng(0).normal(size=(40000, 256)).astype(np.float32)
    ptsel.build(x, tmp_path / "big.ptsel", dtype="f32", hnsw=False, progress=False)
    del x
    gc.collect()

    def resident():
        return int(open(statm).read().split()[1]) * 4096

    before = resident()
    index = ptsel.open(tmp_path / "big.ptsel")
    views = [index.vectors for _ in range(10)]
    grown = resident() - before
    assert views[0].nbytes == 40000 * 256 * 4
    assert grown < 4 << 20, f"resident memory grew by {grown >> 20} MiB"


def test_info_matches_the_index(index, corpus):
    info = index.info()
    assert info["rows"] == len(corpus.x) and info["dim"] == 32 and info["classes"] == 40
    assert info["params"]["labels"] == str(corpus.labels_npy)
    assert info["hnsw"]["m"] == 16
