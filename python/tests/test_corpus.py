"""Corpus folders in Python (no Spark): opened like an index, searched by parts and merged,
assembled from shards built apart, and resumed builds."""

import os
import subprocess

import numpy as np
import pytest

import ptsel


@pytest.fixture(scope="module")
def sharded(corpus, cli, tmp_path_factory):
    """The conftest corpus built by the CLI as a corpus of 4 shards (the last one short)."""
    out = tmp_path_factory.mktemp("sharded") / "corpus"
    subprocess.run([cli, "build", "--features", corpus.x_npy, "--labels", corpus.labels_npy,
                    "--ids", corpus.ids_txt, "--shard-rows", "800", "--out", out, "--quiet"],
                   check=True)
    return ptsel.open(out)


def test_a_corpus_opens_like_an_index(corpus, index, sharded):
    assert (len(sharded), sharded.shards, sharded.dim, sharded.classes) == (3000, 4, 32, 40)
    assert "shards=4" in repr(sharded) and index.shards == 1
    assert sharded.ids == corpus.ids and sharded.has_graph
    np.testing.assert_array_equal(sharded.class_counts, index.class_counts)
    np.testing.assert_allclose(sharded.class_means, index.class_means, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="corpus of 4 shards"):
        sharded.vectors
    assert sharded.verify() == sum(s["file_bytes"] for s in sharded.info()["shards"])
    q = corpus.queries
    for a, b in zip(sharded.search(q, k=9, exact=True), index.search(q, k=9, exact=True)):
        np.testing.assert_array_equal(a, b)


def test_parts_searched_apart_merge_into_the_whole(corpus, sharded):
    q = corpus.queries[:30]
    for exact in [True, False]:
        whole = sharded.search(q, k=12, exact=exact)
        parts = [sharded.search(q, k=12, exact=exact, shards=s) for s in [(0, 1), (1, 3), (3, 4)]]
        assert (parts[0][0] < 800).all() and (parts[2][0] >= 2400).all()
        # The last shard holds 600 rows: a part asked for more is padded with -1.
        tail = sharded.search(q, k=700, exact=True, shards=(3, 4))[0]
        assert (tail[:, 600:] == -1).all() and (tail[:, :600] >= 2400).all()
        for merged in [ptsel.merge_neighbors(parts, 12, "cos"),
                       ptsel.merge_neighbors(parts[::-1], 12, "cos")]:
            for a, b in zip(merged, whole):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="shards 3..9"):
        sharded.search(q, k=3, shards=(3, 9))
    # A selection from parts found apart is the selection of the whole corpus.
    test = corpus.x[:25]
    knn = dict(method="knn", per_target=10, budget=150, exclude_near=test, exclude_threshold=0.9)
    groups = [(0, 2), (2, 4)]
    found = dict(neighbors=[sharded.search(q, k=10, ef=64, shards=s) for s in groups],
                 excluded=[sharded.near_duplicates(test, 0.9, shards=s) for s in groups])
    a = sharded.select(q, **knn, **found)
    b = sharded.select(q, **knn)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert a.summary == b.summary and b.summary["excluded"] >= 25


def test_assemble_and_resume(corpus, tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    halves = [corpus.x[:1000], corpus.x[1000:]]
    for k, part in enumerate(halves):
        np.save(tmp_path / f"e{k}.npy", part)
        ptsel.build(tmp_path / f"e{k}.npy", out / f"shard-{k:05d}.ptsel", hnsw=False,
                    progress=False)
    (out / "shard-00007.ptsel").write_bytes(b"left by an earlier build")
    joined = ptsel.assemble(out, ["shard-00000.ptsel", "shard-00001.ptsel"],
                            params={"how": "test"})
    assert len(joined) == 3000 and joined.info()["params"] == {"how": "test"}
    assert not (out / "shard-00007.ptsel").exists()
    with pytest.raises(ValueError, match="class names"):
        ptsel.assemble(out, ["shard-00000.ptsel"], class_names=["a"], classes=2)
    # resume keeps a complete shard built from the same file with the same options...
    shard = out / "shard-00001.ptsel"
    before = os.stat(shard).st_mtime_ns
    ptsel.build(tmp_path / "e1.npy", shard, hnsw=False, resume=True, progress=False)
    assert os.stat(shard).st_mtime_ns == before
    # ...and rebuilds one built with other options, or from an array.
    ptsel.build(tmp_path / "e1.npy", shard, hnsw=False, dtype="f32", resume=True, progress=False)
    assert os.stat(shard).st_mtime_ns != before
    with pytest.raises(ValueError, match="resume"):
        ptsel.build(halves[1], shard, resume=True, progress=False)
