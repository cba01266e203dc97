"""ptsel.spark on a local Spark (local[2, 2]: two task slots, one retry): corpora built by Spark
tasks against a single-file build of the same rows, task failures and retries, reruns, and
missing or corrupt shards. One Spark session serves every test (each costs seconds to start).

pyspark is required where PTSEL_SPARK_TESTS=1 (CI sets it); elsewhere the tests are skipped
when it is not installed.
"""

import importlib
import os
import sys

import numpy as np
import pytest

import ptsel

from conftest import local_spark


def require(module):
    """`module` imported: an error where PTSEL_SPARK_TESTS=1, a skip elsewhere when missing."""
    if os.environ.get("PTSEL_SPARK_TESTS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


require("pyspark")
import ptsel.spark  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    session = local_spark("ptsel-tests", "local[2, 2]")
    yield session
    session.stop()


def test_a_spark_corpus_selects_as_a_single_file_of_the_same_rows(spark, tmp_path):
    # 200,000 x 64 in 8 .npy shards with labels and ids, as an embedding job writes them.
    rng = np.random.default_rng(23)
    centres = rng.normal(size=(100, 64)).astype(np.float32)
    labels = rng.integers(0, 100, size=200_000)
    x = (centres[labels] + 0.9 * rng.normal(size=(200_000, 64))).astype(np.float32)
    ids = [f"{i:032x}" for i in rng.integers(0, 2**62, size=200_000)]
    features, label_files, id_files = [], [], []
    for k in range(8):
        part = slice(k * 25_000, (k + 1) * 25_000)
        features.append(tmp_path / f"img_emb_{k}.npy")
        label_files.append(tmp_path / f"labels_{k}.npy")
        id_files.append(tmp_path / f"ids_{k}.txt")
        np.save(features[-1], x[part])
        np.save(label_files[-1], labels[part])
        id_files[-1].write_text("".join(i + "\n" for i in ids[part]))
    np.save(tmp_path / "all.npy", x)
    target = (centres[rng.choice(rng.choice(100, 6, replace=False), 300)]
              + 0.9 * rng.normal(size=(300, 64))).astype(np.float32)
    graph = dict(m=8, ef_construction=64)
    corpus = ptsel.spark.build(spark, features, tmp_path / "corpus", labels=label_files,
                               ids=id_files, partitions="auto", **graph)
    single = ptsel.build(tmp_path / "all.npy", tmp_path / "single.ptsel", labels=labels, ids=ids,
                         progress=False, **graph)
    assert (len(corpus), corpus.shards, corpus.classes) == (200_000, 8, 100)
    counts, means = single.class_counts, single.class_means
    np.testing.assert_array_equal(corpus.class_counts, counts)
    error = np.linalg.norm(corpus.class_means - means, axis=1)
    assert (error <= 1e-12 * np.linalg.norm(means, axis=1)).all(), error.max()

    # Exact kNN: the same manifest, byte for byte (global rows, the corpus ids, scores).
    knn = dict(method="knn", exact=True, per_target=20, budget=3000)
    ours = ptsel.spark.select(spark, tmp_path / "corpus", target, **knn)
    ours.save(tmp_path / "spark.csv")
    single.select(target, **knn).save(tmp_path / "single.csv")
    assert (tmp_path / "spark.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    assert ours.summary == corpus.select(target, **knn).summary
    # UOT over the kNN graph: its exact search fans out the same way, and the plan is solved on
    # the driver: the same manifest as one file.
    sparse = dict(method="uot-knn", exact=True, per_target=16, budget=2000)
    ptsel.spark.select(spark, tmp_path / "corpus", target, **sparse).save(tmp_path / "s.csv")
    single.select(target, **sparse).save(tmp_path / "s1.csv")
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "s1.csv").read_bytes()
    # UOT on the merged class means: the same rows and classes; importances to 1e-12.
    uot = dict(method="uot", classes=6)
    a, b = ptsel.spark.select(spark, tmp_path / "corpus", target, **uot), single.select(target, **uot)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert a.classes == b.classes and len(a) > 10_000
    np.testing.assert_allclose(a.importance, b.importance, rtol=1e-12, atol=0)
    # HNSW over the shards' graphs agrees with exact search on at least 99% of the rows.
    hnsw = ptsel.spark.select(spark, tmp_path / "corpus", target, method="knn", per_target=20,
                              budget=3000, shards_per_task=3)
    agree = len(set(hnsw.rows) & set(ours.rows)) / len(ours)
    assert agree >= 0.99, agree
    # And over their partitions (2 sqrt(25k) = 316 a shard, 40 scanned).
    ivf = ptsel.spark.select(spark, tmp_path / "corpus", target, method="knn", per_target=20,
                             budget=3000, probes=40, shards_per_task=3)
    agree = len(set(ivf.rows) & set(ours.rows)) / len(ours)
    assert agree >= 0.99, agree


def small_corpus(tmp_path, files=4, rows=3000, dim=16):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(files * rows, dim)).astype(np.float32)
    labels = rng.integers(0, 12, size=files * rows)
    features, label_files = [], []
    for k in range(files):
        features.append(tmp_path / f"e{k}.npy")
        label_files.append(tmp_path / f"l{k}.npy")
        np.save(features[-1], x[k * rows:(k + 1) * rows])
        np.save(label_files[-1], labels[k * rows:(k + 1) * rows])
    return x, labels, features, label_files


def test_failures_retries_and_reruns_end_in_a_correct_corpus(spark, tmp_path):
    x, labels, features, label_files = small_corpus(tmp_path)
    out = tmp_path / "corpus"
    marker = tmp_path / "crashed-once"

    def crash_once(stage, done, total):
        # The first task to report progress dies mid-build, like an executor that is lost,
        # leaving its temporary file; Spark runs the task again.
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os._exit(3)

    corpus = ptsel.spark.build(spark, features, out, labels=label_files, progress=crash_once,
                               m=8, ef_construction=32)
    assert marker.exists()
    assert corpus.verify() > 0 and len(corpus) == 12_000
    assert not [f for f in os.listdir(out) if f.endswith(".ptsel-tmp")]
    local = ptsel.build(x, tmp_path / "local.ptsel", labels=labels, hnsw=False, progress=False)
    q = x[:40] + 0.01
    for a, b in zip(corpus.search(q, k=7, exact=True), local.search(q, k=7, exact=True)):
        np.testing.assert_array_equal(a, b)

    # A rerun after a failed build keeps the complete shards and rebuilds the rest.
    identity = {s["path"]: os.stat(s["path"]).st_mtime_ns for s in corpus.info()["shards"]}
    shard = [str(out / f"shard-{k:05d}.ptsel") for k in range(4)]
    os.remove(out / "corpus.json")
    os.remove(shard[1])
    data = bytearray(open(shard[3], "rb").read())
    data[len(data) // 2] ^= 1
    open(shard[3], "wb").write(bytes(data))
    with pytest.raises(ptsel.CorruptIndexError, match="shard-00003.ptsel"):
        ptsel.open(shard[3]).verify()
    again = ptsel.spark.build(spark, features, out, labels=label_files, m=8, ef_construction=32)
    kept = [os.stat(p).st_mtime_ns == identity[p] for p in shard]
    assert kept == [True, False, True, False]
    assert again.verify() > 0
    # An existing corpus is refused without force.
    with pytest.raises(FileExistsError):
        ptsel.spark.build(spark, features, out, labels=label_files)

    # A task that fails every time fails the build, naming its file, and writes no corpus; in
    # a forced rebuild it leaves the corpus there whole, and a rebuild that succeeds replaces it.
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an npy file")
    with pytest.raises(Exception, match="bad.npy"):
        ptsel.spark.build(spark, [features[0], bad], out, force=True)
    assert not (out / ".rebuild").exists()
    assert ptsel.open(out).verify() > 0 and len(ptsel.open(out)) == 12_000
    first = ptsel.spark.build(spark, features[:1], out, force=True)
    assert len(first) == 3_000 and sorted(os.listdir(out)) == ["corpus.json", "shard-00000.ptsel"]
    ptsel.spark.build(spark, features, out, labels=label_files, force=True)
    with pytest.raises(Exception, match="bad.npy"):
        ptsel.spark.build(spark, [features[0], bad], tmp_path / "failed")
    assert not (tmp_path / "failed" / "corpus.json").exists()

    # A missing or corrupt shard is an error naming it.
    os.remove(shard[2])
    with pytest.raises(ptsel.CorruptIndexError, match="shard-00002.ptsel.*missing"):
        ptsel.spark.select(spark, out, x[:5], method="knn", budget=10)


def test_a_dataframe_and_parquet_metadata(spark, tmp_path):
    pa, pq = require("pyarrow"), require("pyarrow.parquet")

    x, labels, features, _ = small_corpus(tmp_path, files=2, rows=500, dim=8)
    uids = [f"{(i * 7919) % 1000:032x}" for i in range(1000)]
    meta = []
    for k in range(2):
        meta.append(tmp_path / f"metadata_{k}.parquet")
        pq.write_table(pa.table({"uid": uids[k * 500:(k + 1) * 500]}), meta[k])
    from_files = ptsel.spark.build(spark, features, tmp_path / "files", ids=meta, hnsw=False)
    assert from_files.ids == uids
    df = spark.createDataFrame([(x[i].tolist(), int(labels[i]), uids[i]) for i in range(1000)],
                               ["embedding", "label", "uid"]).repartition(3)
    from_df = ptsel.spark.build(spark, df, tmp_path / "df", label_column="label", hnsw=False)
    assert from_df.shards == 3
    order = [uids.index(u) for u in from_df.ids]
    assert sorted(order) == list(range(1000))
    np.testing.assert_array_equal(from_df.class_counts, np.bincount(labels, minlength=12))
    # DataComp's selection format from the corpus ids.
    sel = ptsel.spark.select(spark, tmp_path / "df", x[:20], method="knn", exact=True,
                             per_target=5, budget=50)
    sel.save(tmp_path / "uids.npy", format="uids")
    got = np.load(tmp_path / "uids.npy")
    assert got.dtype == np.dtype("u8,u8")
    want = sorted({(int(u[:16], 16), int(u[16:], 16)) for u in (from_df.ids[r] for r in sel.rows)})
    assert [tuple(map(int, g)) for g in got] == want
