"""Bad input raises a Python exception that names the argument or the file, never a panic."""

import numpy as np
import pytest

import ptsel


@pytest.fixture
def small(corpus):
    return corpus.queries[:5]


def test_nan_features_name_the_row(tmp_path):
    x = np.ones((10, 4), np.float32)
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match="features: row 7 column 2 is NaN"):
        ptsel.build(x, tmp_path / "n.ptsel", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_nan_in_an_npy_file(tmp_path):
    x = np.ones((10, 4), np.float32)
    x[3, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match="x.npy: row 3 column 0 is inf"):
        ptsel.build(tmp_path / "x.npy", tmp_path / "n.ptsel", progress=False)


def test_missing_files(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="nope.ptsel"):
        ptsel.open(tmp_path / "nope.ptsel")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        ptsel.build(tmp_path / "nope.npy", tmp_path / "a.ptsel", progress=False)
    with pytest.raises(FileNotFoundError, match="labels.npy"):
        ptsel.build(corpus.x, tmp_path / "a.ptsel", labels=tmp_path / "labels.npy", progress=False)


def test_corrupt_index(tmp_path):
    path = tmp_path / "c.ptsel"
    path.write_bytes(b"PTSELIDX" + b"\0" * 200)
    with pytest.raises(ptsel.CorruptIndexError, match="c.ptsel"):
        ptsel.open(path)
    assert issubclass(ptsel.CorruptIndexError, ValueError)


def test_truncated_index(tmp_path, corpus):
    data = corpus.index_path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 100):
        path = tmp_path / f"t{cut}.ptsel"
        path.write_bytes(data[:cut])
        with pytest.raises(ptsel.CorruptIndexError, match="truncated|shorter"):
            ptsel.open(path)


@pytest.mark.parametrize("k", [0, 3001])
def test_k_out_of_range(index, small, k):
    with pytest.raises(ValueError, match="k"):
        index.search(small, k=k)


def test_wrong_queries(index, small):
    with pytest.raises(ValueError, match="queries: 10-d, but the index is 32-d"):
        index.search(small[:, :10], k=5)
    with pytest.raises(ValueError, match="queries: expected a 2-D array"):
        index.search(small[0], k=5)
    with pytest.raises(ValueError, match="queries: expected float16, float32 or float64"):
        index.search(small.astype(np.int32), k=5)
    bad = small.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        index.search(bad, k=5)


def test_wrong_label_counts(corpus, index, tmp_path):
    with pytest.raises(ValueError, match="2999 labels for 3000"):
        ptsel.build(corpus.x, tmp_path / "l.ptsel", labels=corpus.labels[1:], progress=False)
    with pytest.raises(ValueError, match="labels: 299 target labels for the 300 rows"):
        index.select(corpus.target, labels=corpus.target_labels[1:], classes=2)
    with pytest.raises(ValueError, match="labels: label at position 0 is -1"):
        ptsel.build(corpus.x[:3], tmp_path / "l.ptsel", labels=np.array([-1, 0, 1]), progress=False)
    with pytest.raises(ValueError, match="labels: labels must be integers"):
        ptsel.build(corpus.x[:3], tmp_path / "l.ptsel", labels=np.zeros(3), progress=False)
    with pytest.raises(ValueError, match="ids"):
        ptsel.build(corpus.x[:3], tmp_path / "l.ptsel", ids=["a", "b"], progress=False)


@pytest.mark.parametrize("call, name", [
    (lambda ix, q: ix.select(q, method="ot"), "method"),
    (lambda ix, q: ix.select(q, device="tpu"), "device"),
    (lambda ix, q: ix.search(q, device="gpu"), "device"),
    (lambda ix, q: ix.select(q, uot_domain="exp"), "UOT domain"),
    (lambda ix, q: ix.select(q, method="knn"), "budget"),
    (lambda ix, q: ix.select(q, classes=2, budget=3), "budget"),
    (lambda ix, q: ix.select(q, classes=500), "classes"),
    (lambda ix, q: ix.select(q, labels=[0] * 5, means=True), "means"),
    (lambda ix, q: ix.select(q[:, :3]), "target"),
    (lambda ix, q: ptsel.build(q, "x.ptsel", dtype="f8"), "dtype"),
    (lambda ix, q: ptsel.build(q, "x.ptsel", metric="cosine"), "metric"),
])
def test_bad_parameters(index, small, call, name):
    with pytest.raises(ValueError, match=name):
        call(index, small)


def test_bad_manifest_format(index, corpus, tmp_path):
    sel = index.select(corpus.target, classes=2)
    with pytest.raises(ValueError, match="format"):
        sel.save(tmp_path / "s.csv", format="parquet")
    with pytest.raises(ValueError, match="missing does not exist"):
        sel.save(tmp_path / "missing" / "s.csv")


def test_bad_argument_types(index, tmp_path):
    with pytest.raises(TypeError, match="progress"):
        ptsel.build(np.ones((3, 2)), tmp_path / "a.ptsel", progress="yes")
    with pytest.raises(ValueError, match="queries"):
        index.search("queries.npy")
