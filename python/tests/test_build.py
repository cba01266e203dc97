"""Building from numpy arrays and from files, with the CLI's outputs and creation parameters."""

import subprocess
import sys
import types

import numpy as np
import pytest

import ptsel


def test_same_index_as_the_cli(corpus, cli, tmp_path):
    out = tmp_path / "cli.ptsel"
    subprocess.run([cli, "build", "--features", corpus.x_npy, "--labels", corpus.labels_npy,
                    "--ids", corpus.ids_txt, "--out", out, "--quiet"], check=True)
    theirs, ours = ptsel.open(out), ptsel.open(corpus.index_path)
    assert theirs.info()["params"] == ours.info()["params"]
    for name in ["vectors", "norms", "labels", "class_counts", "class_means"]:
        np.testing.assert_array_equal(getattr(theirs, name), getattr(ours, name), err_msg=name)
    assert theirs.ids == ours.ids
    assert ([s["bytes"] for s in theirs.info()["sections"]]
            == [s["bytes"] for s in ours.info()["sections"]])
    q = corpus.queries
    for a, b in zip(theirs.search(q, k=5), ours.search(q, k=5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_any_float_dtype_and_order(corpus, tmp_path, dtype, order):
    x = np.asarray(corpus.x.astype(dtype), order=order)
    reference = corpus.x.astype(dtype).astype(np.float32)
    index = ptsel.build(x, tmp_path / "a.ptsel", labels=corpus.labels, dtype="f32",
                        metric="ip", hnsw=False, progress=False)
    np.testing.assert_array_equal(index.vectors, reference)
    np.testing.assert_array_equal(index.labels, corpus.labels)
    assert index.info()["params"]["features"] == f"numpy {np.dtype(dtype).name} array [3000, 32]"


def test_a_strided_view_is_read_as_such(tmp_path):
    base = np.arange(5 * 8, dtype=np.float32).reshape(5, 8) + 1
    view = base[::2, 1::3]
    index = ptsel.build(view, tmp_path / "v.ptsel", dtype="f32", metric="l2", hnsw=False,
                        progress=False)
    np.testing.assert_array_equal(index.vectors, view)


def test_labels_ids_and_class_names_from_memory(corpus, tmp_path):
    names = [f"class {c}" for c in range(40)]
    index = ptsel.build(corpus.x, tmp_path / "m.ptsel", labels=corpus.labels.astype(np.uint8),
                        ids=corpus.ids, class_names=names, kmeans=5, progress=False)
    assert index.class_names == names and index.ids == corpus.ids
    np.testing.assert_array_equal(index.labels, corpus.labels)
    params = index.info()["params"]
    assert params["kmeans_k"] == "5" and params["kmeans_iters"] == "20"
    assert "ids" not in params and params["hnsw_m"] == "16"


def test_build_parameters_are_recorded(corpus, tmp_path):
    index = ptsel.build(corpus.x, tmp_path / "p.ptsel", m=8, ef_construction=50, seed=3,
                        progress=False)
    params = index.info()["params"]
    assert (params["hnsw_m"], params["hnsw_ef_construction"], params["hnsw_seed"]) == ("8", "50", "3")
    assert index.info()["hnsw"]["m"] == 8
    assert ptsel.build(corpus.x, tmp_path / "n.ptsel", hnsw=False, progress=False).info()["hnsw"] is None


def test_graph_layouts(corpus, tmp_path):
    blocks = ptsel.build(corpus.x, tmp_path / "b.ptsel", progress=False)
    compact = ptsel.build(corpus.x, tmp_path / "c.ptsel", graph_layout="compact", progress=False)
    assert blocks.info()["hnsw"]["layout"] == "blocks"
    assert compact.info()["hnsw"]["layout"] == "compact"
    assert compact.info()["params"]["hnsw_layout"] == "compact"
    assert blocks.info()["hnsw"]["bytes"] > compact.info()["hnsw"]["bytes"]
    exact, _ = blocks.search(corpus.queries, k=5, exact=True)
    for index in (blocks, compact):
        ids, _ = index.search(corpus.queries, k=5, ef=64)
        assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, exact)]) >= 0.9
    with pytest.raises(ValueError, match="graph layout"):
        ptsel.build(corpus.x, tmp_path / "x.ptsel", graph_layout="sparse", progress=False)
    assert not (tmp_path / "x.ptsel").exists()


def test_progress_reports_reach_the_end(corpus, tmp_path):
    # Reports are snapshots taken while the caller waits: a short build may show only its end.
    seen = []
    ptsel.build(corpus.x, tmp_path / "r.ptsel", progress=lambda *a: seen.append(a))
    stage, done, total = seen[-1]
    assert stage.startswith("hnsw") and done == total


def test_a_callable_sees_each_stage_count_up(tmp_path):
    x = np.random.default_rng(3).normal(size=(60_000, 32)).astype(np.float32)
    seen = []
    ptsel.build(x, tmp_path / "c.ptsel", progress=lambda *a: seen.append(a))
    stages = list(dict.fromkeys(s for s, _, _ in seen))
    assert "hnsw" in stages, stages  # (writing the vectors may end between two polls)
    for stage in stages:
        counts = [(d, t) for s, d, t in seen if s == stage]
        done = [d for d, _ in counts]
        assert done == sorted(done) and all(0 <= d <= t for d, t in counts), (stage, counts)
    # Each stage reports on one run of calls: a stage never comes back after the next began.
    runs = [s for i, (s, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != s]
    assert len(runs) == len(stages), runs
    assert len(seen) > len(stages)  # a build of this size is seen while it runs


def test_progress_on_a_terminal_without_tqdm(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails as if not installed
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    ptsel.build(corpus.x, tmp_path / "s.ptsel", hnsw=False)
    assert capsys.readouterr().err.endswith("\r   vectors [" + "=" * 30 + "] 3000/3000\n")
    # Not a terminal (a log, a notebook without tqdm): no stream of raw lines.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    ptsel.build(corpus.x, tmp_path / "t.ptsel", hnsw=False)
    assert capsys.readouterr().err == ""


def test_progress_bars_with_tqdm_and_none_when_off(corpus, tmp_path, capsys, monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, desc, **_):
            self.total, self.desc, self.n, self.closed = total, desc, 0, False
            bars.append(self)

        def refresh(self):
            assert 0 <= self.n <= self.total

        def close(self):
            self.closed = True

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeTqdm
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    ptsel.build(corpus.x, tmp_path / "b.ptsel")
    assert bars and bars[-1].desc.startswith("hnsw"), [b.desc for b in bars]
    # Reports are snapshots: the last stage's bar ends full; every bar is closed.
    assert bars[-1].n == bars[-1].total and all(b.closed for b in bars)
    bars.clear()
    ptsel.build(corpus.x, tmp_path / "q.ptsel", progress=False)
    assert bars == [] and capsys.readouterr().err == ""


def test_an_existing_output_needs_force(corpus, tmp_path):
    out = tmp_path / "f.ptsel"
    ptsel.build(corpus.x[:100], out, hnsw=False, progress=False)
    with pytest.raises(ValueError, match="exists"):
        ptsel.build(corpus.x, out, hnsw=False, progress=False)
    assert len(ptsel.build(corpus.x, out, hnsw=False, progress=False, force=True)) == 3000
