"""Selection from Python equals `ptsel select` on the same inputs, manifest byte for byte."""

import json
import subprocess

import numpy as np
import pytest

import ptsel

CASES = {
    "uot-labelled": ({"labels": "tl", "classes": 5}, ["--target-labels", "tl", "--classes", "5"]),
    "uot-samples": ({"classes": 3}, ["--classes", "3"]),
    "uot-budget-log": ({"budget": 700, "eps": 0.01, "uot_domain": "log"},
                       ["--budget", "700", "--eps", "0.01", "--uot-domain", "log"]),
    "knn-exact": ({"method": "knn", "budget": 250, "exact": True, "per_target": 20},
                  ["--method", "knn", "--budget", "250", "--exact", "--per-target", "20"]),
    "knn-hnsw": ({"method": "knn", "budget": 400, "ef": 80},
                 ["--method", "knn", "--budget", "400", "--ef", "80"]),
    "similarity": ({"method": "similarity", "budget": 500}, ["--method", "similarity", "--budget", "500"]),
    "random": ({"method": "random", "classes": 2, "seed": 4},
               ["--method", "random", "--classes", "2", "--seed", "4"]),
    "uot-knn-weighted": ({"method": "uot-knn", "budget": 200, "labels": "tl", "target_weights": "w"},
                         ["--method", "uot-knn", "--budget", "200", "--target-labels", "tl",
                          "--target-weights", "w"]),
    "uot-weighted": ({"classes": 2, "labels": "tl", "target_weights": "w"},
                     ["--classes", "2", "--target-labels", "tl", "--target-weights", "w"]),
    "exclude": ({"classes": 4, "exclude_near": "t", "exclude_threshold": 0.9},
                ["--classes", "4", "--exclude-near", "t", "--exclude-threshold", "0.9"]),
}


def cli_select(cli, corpus, args, out, fmt="csv"):
    paths = {"t": str(corpus.target_npy), "tl": str(corpus.target_labels_npy),
             "w": str(corpus.target_weights_npy)}
    summary = out.with_suffix(".json")
    subprocess.run([cli, "select", "--index", corpus.index_path, "--target", corpus.target_npy,
                    *[paths.get(a, a) for a in args], "--out", out, "--format", fmt,
                    "--summary", summary], check=True, capture_output=True)
    return out.read_bytes(), json.loads(summary.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_equal_the_cli(index, corpus, cli, tmp_path, case):
    kwargs, args = CASES[case]
    arrays = {"t": corpus.target, "tl": corpus.target_labels, "w": corpus.target_weights}
    sel = index.select(corpus.target, **{k: arrays.get(v, v) if isinstance(v, str) else v
                                         for k, v in kwargs.items()})
    manifest, summary = cli_select(cli, corpus, args, tmp_path / "cli.csv")
    sel.save(tmp_path / "py.csv")
    assert (tmp_path / "py.csv").read_bytes() == manifest
    rows = [int(line.split(b",")[1]) for line in manifest.splitlines()[1:]]
    assert sel.rows.tolist() == rows and len(sel) == len(rows)
    assert sel.summary["selected"] == summary["selected"]
    assert sel.summary["importance"] == summary["importance"]
    assert sel.summary["selected_classes"] == summary["selected_classes"]


def test_summary_equals_the_cli_for_the_same_files(index, corpus, cli, tmp_path):
    sel = index.select(corpus.target_npy, labels=corpus.target_labels_npy, classes=5)
    _, summary = cli_select(cli, corpus, ["--target-labels", "tl", "--classes", "5"],
                            tmp_path / "cli.csv")
    assert sel.summary == summary
    assert sel.classes == [c["class"] for c in summary["selected_classes"]]
    np.testing.assert_array_equal(sel.importance, summary["importance"])
    assert sel.importance.dtype == np.float64 and len(sel.importance) == index.classes


@pytest.mark.parametrize("fmt", ["jsonl", "npy"])
def test_every_manifest_format(index, corpus, cli, tmp_path, fmt):
    sel = index.select(corpus.target, labels=corpus.target_labels, classes=5)
    manifest, _ = cli_select(cli, corpus, ["--target-labels", "tl", "--classes", "5"],
                             tmp_path / f"cli.{fmt}", fmt)
    sel.save(tmp_path / f"py.{fmt}")
    assert (tmp_path / f"py.{fmt}").read_bytes() == manifest
    sel.save(tmp_path / "explicit.out", format=fmt)
    assert (tmp_path / "explicit.out").read_bytes() == manifest


def test_means_and_pseudo_classes(corpus, tmp_path):
    index = ptsel.build(corpus.x, tmp_path / "k.ptsel", kmeans=8, progress=False)
    means = np.stack([corpus.target[corpus.target_labels == c].mean(axis=0) for c in range(4)])
    sel = index.select(means, means=True, classes=2)
    assert sel.summary["grouping"] == "kmeans" and sel.summary["parameters"]["target_kind"] == "means"
    assert len(sel.classes) == 2 and len(sel) > 0
    assert repr(sel).startswith("Selection(method='uot'")


def test_target_weights_give_each_class_its_share(index, corpus):
    sel = index.select(corpus.target, labels=corpus.target_labels, method="uot-knn", budget=200,
                       target_weights=corpus.target_weights)
    assert "0: 80, 1: 60, 2: 40, 3: 20" in " ".join(sel.summary["notes"])
    with pytest.raises(ValueError, match="need the target labels"):
        index.select(corpus.target, method="uot-knn", budget=200, target_weights=[1.0])
    with pytest.raises(ValueError, match="weight 0"):
        index.select(corpus.target, labels=corpus.target_labels, method="uot-knn", budget=200,
                     target_weights=[1, 1, 0, 1])
