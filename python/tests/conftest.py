"""Shared fixtures: a small synthetic labelled corpus, its index, and the `ptsel` CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ptsel

REPO = Path(__file__).resolve().parents[2]


class Corpus:
    """Clustered features: `classes` class centres, rows scattered around them."""

    def __init__(self, root: Path, rows=3000, dim=32, classes=40, seed=7):
        rng = np.random.default_rng(seed)
        self.centres = rng.normal(size=(classes, dim)).astype(np.float32)
        self.labels = rng.integers(0, classes, size=rows)
        self.x = (self.centres[self.labels] + 0.7 * rng.normal(size=(rows, dim))).astype(np.float32)
        self.queries = self.sample(rng, rng.integers(0, classes, size=200))
        target_classes = rng.choice(classes, size=4, replace=False)
        self.target_labels = rng.integers(0, 4, size=300)
        self.target = self.sample(rng, target_classes[self.target_labels])
        self.target_weights = np.array([4, 3, 2, 1], dtype=np.float32)
        self.root = root
        self.x_npy, self.labels_npy = root / "x.npy", root / "labels.npy"
        self.target_npy, self.target_labels_npy = root / "t.npy", root / "tl.npy"
        self.target_weights_npy = root / "tw.npy"
        np.save(self.target_weights_npy, self.target_weights)
        np.save(self.x_npy, self.x)
        np.save(self.labels_npy, self.labels)
        np.save(self.target_npy, self.target)
        np.save(self.target_labels_npy, self.target_labels)
        self.ids = [f"img/{i:05d}.jpg" for i in range(rows)]
        self.ids_txt = root / "ids.txt"
        self.ids_txt.write_text("".join(f"{i}\n" for i in self.ids))
        self.index_path = root / "corpus.ptsel"
        ptsel.build(self.x_npy, self.index_path, labels=self.labels_npy, ids=self.ids_txt,
                    progress=False)

    def sample(self, rng, classes):
        d = self.centres.shape[1]
        return (self.centres[classes] + 0.7 * rng.normal(size=(len(classes), d))).astype(np.float32)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def index(corpus):
    return ptsel.open(corpus.index_path)


@pytest.fixture(scope="session")
def cli():
    """The `ptsel` binary: $PTSEL_BIN, else built with cargo from this repository."""
    if os.environ.get("PTSEL_BIN"):
        return os.environ["PTSEL_BIN"]
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("set PTSEL_BIN to a `ptsel` binary (no cargo to build one)")
    subprocess.run([cargo, "build", "--quiet", "--release", "--bin", "ptsel"], cwd=REPO,
                   check=True)
    meta = subprocess.run([cargo, "metadata", "--format-version", "1", "--no-deps"], cwd=REPO,
                          check=True, capture_output=True, text=True).stdout
    return str(Path(json.loads(meta)["target_directory"]) / "release" / "ptsel")


def brute_force(x, q, k):
    """Exact cosine top-k in float64: `[nq, k]` row numbers, best first."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ xn.T.astype(np.float64)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k], sims


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def local_spark(app: str, master: str):
    """A local Spark session for tests: loopback only, no UI, this Python for the workers."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (SparkSession.builder.master(master).appName(app)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session
