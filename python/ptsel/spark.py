"""ptsel on Spark: a corpus of shards built by Spark tasks, and selection that fans out over them.

Spark does the scheduling, retries and data movement; each task calls ptsel through this
package. The corpus folder must be at the same path on the driver and on every executor (a
shared or network filesystem, which a local cluster and most clusters have; docs/SCALE.md says
what an object store would change).

- :func:`build`: one task per input file (``.npy`` embeddings, as clip-retrieval writes
  ``img_emb/img_emb_{k}.npy``, with optional labels and ids per file) or per partition of a
  DataFrame with a vector column, each building and verifying one shard. The driver writes the
  corpus file only once every shard is complete, so a failed or retried task never leaves a
  corpus that names a half-written shard; a rerun keeps the shards already complete.
- :func:`select`: the kNN search of the target samples (and the near-duplicate scan of
  ``exclude_near``) as one task per group of shards, each returning its candidates, merged in a
  tree on the executors (the driver receives one list of candidates per target sample); UOT and the other class-level methods run on the driver from the merged class
  statistics. The result is the :class:`ptsel.Selection` that :meth:`ptsel.Index.select` gives
  on the same corpus, and ``Selection.save`` writes the CLI's manifests.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from typing import Any, Optional, Sequence, Union

import numpy as np

import ptsel

__all__ = ["build", "select"]

log = logging.getLogger("ptsel.spark")

CORPUS_FILE = "corpus.json"
"""The corpus file inside a corpus folder."""

_Paths = Sequence[Union[str, "os.PathLike[str]"]]


def _shard_file(k: int) -> str:
    """The file name of shard ``k``, as ``ptsel build --shard-rows`` names it."""
    return f"shard-{k:05d}.ptsel"


def _read_ids(path: Optional[str], id_column: str) -> Union[str, list, None]:
    """The ids of one shard: a text file (one per line) is passed on as a path; a ``.parquet``
    file (clip-retrieval's ``metadata_{k}.parquet``, DataComp's metadata) is read with pyarrow
    and its column ``id_column`` taken."""
    if path is None or not os.fspath(path).endswith(".parquet"):
        return path
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"{path}: reading ids from parquet needs pyarrow") from e
    table = pq.read_table(path)
    if id_column not in table.column_names:
        raise ValueError(f"{path}: no column {id_column!r} (columns: {table.column_names}); "
                         "name the ids with id_column=")
    return [str(v) for v in table.column(id_column).to_pylist()]


def _clock() -> tuple:
    """Wall and CPU seconds (all threads) of this process, for a task's report."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime


def _built(k: int, index: "ptsel.Index", start: tuple) -> dict:
    """What a build task reports: the shard verified, its rows, wall and CPU seconds, and the
    peak resident memory of the executor's Python worker (MiB)."""
    index.verify()
    wall, cpu = _clock()
    return {"shard": k, "file": _shard_file(k), "rows": len(index), "seconds": wall - start[0],
            "cpu_seconds": cpu - start[1],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _build_files(spark, out, features, labels, ids, id_column, options):
    """One task per features file; shard ``k`` is ``features[k]``'s rows."""
    n = len(features)
    for name, given in (("labels", labels), ("ids", ids)):
        if given is not None and len(given) != n:
            raise ValueError(f"{name}: {len(given)} files for {n} features files")
    jobs = [(k, os.path.abspath(os.fspath(features[k])),
             None if labels is None else os.path.abspath(os.fspath(labels[k])),
             None if ids is None else os.path.abspath(os.fspath(ids[k]))) for k in range(n)]

    def task(job):
        k, f, lab, idf = job
        start = _clock()
        index = ptsel.build(f, os.path.join(out, _shard_file(k)), labels=lab,
                            ids=_read_ids(idf, id_column), force=True, **options)
        return _built(k, index, start)

    return spark.sparkContext.parallelize(jobs, n).map(task).collect()


def _build_dataframe(df, out, vector_column, label_column, id_column, options):
    """One task per partition of ``df``; shard ``k`` is partition ``k``'s rows (empty
    partitions make no shard). Ids are the column ``id_column`` when ``df`` has it."""
    if options.get("resume"):
        raise ValueError("resume: a DataFrame's partitions are rebuilt (their rows cannot be "
                         "compared with a shard built from them)")
    if id_column not in df.columns:
        id_column = None
    columns = [c for c in (vector_column, label_column, id_column) if c is not None]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"no column {missing[0]!r} in the DataFrame (columns: {df.columns})")

    def task(k, rows):
        start = _clock()
        vectors, classes, ids = [], [], []
        for row in rows:
            v = row[vector_column]
            vectors.append(v.toArray() if hasattr(v, "toArray") else v)
            if label_column is not None:
                classes.append(row[label_column])
            if id_column is not None:
                ids.append(str(row[id_column]))
        if not vectors:
            return
        index = ptsel.build(np.asarray(vectors, dtype=np.float32),
                            os.path.join(out, _shard_file(k)),
                            labels=np.asarray(classes) if label_column is not None else None,
                            ids=ids if id_column is not None else None, force=True, **options)
        yield _built(k, index, start)

    return df.select(*columns).rdd.mapPartitionsWithIndex(task).collect()


def build(spark, features, out, labels: Optional[_Paths] = None, ids: Optional[_Paths] = None,
          *, class_names: Union[Sequence[str], str, "os.PathLike[str]", None] = None,
          vector_column: str = "embedding", label_column: Optional[str] = None,
          id_column: str = "uid", force: bool = False, **build_options: Any) -> "ptsel.Index":
    """Build the corpus folder ``out`` with one Spark task per shard and return it opened.

    ``features`` is a list of ``.npy`` files (one shard each, in order) with, optionally, a
    list of label ``.npy`` files and a list of id files (text, one per line, or ``.parquet``
    with the column ``id_column``) aligned with it; or a DataFrame whose ``vector_column``
    holds the vectors (arrays or ML vectors), with an optional ``label_column`` and the ids in
    ``id_column`` when it has that column, one shard per partition. ``build_options`` are :func:`ptsel.build`'s (dtype, metric, hnsw,
    m, ef_construction, seed, graph_layout, progress): every shard gets the same. ``class_names`` (a list or a
    text file) go into the corpus file.

    Each task builds its shard in ``out`` and verifies every checksum of it; only after all
    tasks succeeded does the driver write the corpus file (a retried task replaces its partial
    shard). A folder that already holds a corpus is refused unless ``force``, which builds the
    new shards in a staging folder and replaces the corpus only once all of them are built (a
    failed rebuild leaves the old corpus whole); without it, a rerun after a failure keeps the
    shards of input files that are complete and verify.
    """
    if build_options.get("kmeans") is not None:
        raise ValueError("kmeans: k-means pseudo-classes are per shard and not comparable "
                         "across shards; a corpus takes labels, or none")
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(os.path.join(out, CORPUS_FILE)) and not force:
        raise FileExistsError(f"{out}: holds a corpus already (replacing it needs force=True)")
    # A forced rebuild builds in a staging folder: the corpus stays whole until assemble.
    shards_at = os.fspath(ptsel.shard_dir(out, force))
    options = {"progress": False, **build_options}
    params = {"built_by": "ptsel.spark.build"}
    try:
        if isinstance(features, (list, tuple)):
            options.setdefault("resume", not force)
            shards = _build_files(spark, shards_at, features, labels, ids, id_column, options)
            params["features"] = ",".join(os.fspath(f) for f in features)
        else:
            shards = _build_dataframe(features, shards_at, vector_column, label_column,
                                      id_column, options)
            params["features"] = f"DataFrame column {vector_column}"
    except BaseException:
        if shards_at != out:
            shutil.rmtree(shards_at, ignore_errors=True)
        raise
    shards = sorted(shards, key=lambda s: s["shard"])
    for s in shards:
        log.info("shard %s: %d rows in %.2f s (%.2f CPU s), worker peak RSS %.0f MiB",
                 s["file"], s["rows"], s["seconds"], s["cpu_seconds"], s["peak_rss_mib"])
    if isinstance(class_names, (str, os.PathLike)):
        with open(class_names, encoding="utf-8") as f:
            class_names = f.read().splitlines()
    return ptsel.assemble(out, [s["file"] for s in shards],
                          class_names=None if class_names is None else list(class_names),
                          params=params)


_OPENED: dict = {}
"""Corpora opened by tasks in this worker process, by path and corpus-file identity."""


def _open(path: str) -> "ptsel.Index":
    """The corpus at ``path``, opened once per worker process (again when rewritten)."""
    st = os.stat(os.path.join(path, CORPUS_FILE))
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    if key not in _OPENED:
        _OPENED.clear()
        _OPENED[key] = ptsel.open(path)
    return _OPENED[key]


def _matrix(value) -> np.ndarray:
    """A float matrix argument: an array, or a ``.npy`` path read on the driver."""
    if isinstance(value, (str, os.PathLike)):
        return np.load(value)
    return np.asarray(value)


def select(spark, path, target, labels=None, *, shards_per_task: int = 1,
           **select_options: Any) -> "ptsel.Selection":
    """:meth:`ptsel.Index.select` on the corpus folder ``path``, its corpus-wide scans run as
    Spark tasks.

    With ``method="knn"`` or ``"uot-knn"`` each task searches ``shards_per_task`` shards for every target
    sample's ``per_target`` neighbours (through the shards' graphs, their partitions with
    ``probes``, or exactly), and with ``exclude_near`` it lists their near-duplicates of the
    test set; the candidates merge per query (by score, ties to the lower global row) in a tree
    over the executors, and the driver ranks them. UOT and the other class-level methods need
    no scan: the driver solves on the merged class means.
    Returns the same :class:`ptsel.Selection` as ``ptsel.open(path).select(target, labels,
    **select_options)``.
    """
    path = os.path.abspath(os.fspath(path))
    index = ptsel.open(path)
    exclude = select_options.get("exclude_near")
    # The search each task runs, as Index.select would (the library resolves ef, probes and
    # the exact fallback for a shard without a graph; None for a method that searches nothing).
    search = index.knn_search(**select_options)
    knn = search is not None
    if not knn and exclude is None:
        return index.select(target, labels, **select_options)
    if shards_per_task < 1:
        raise ValueError("shards_per_task must be at least 1")
    per_target = search["k"] if knn else None
    threshold = select_options.get("exclude_threshold")
    sc = spark.sparkContext
    queries = sc.broadcast(np.ascontiguousarray(_matrix(target), dtype=np.float32))
    test = sc.broadcast(None if exclude is None else _matrix(exclude))
    metric = index.metric

    def task(shards):
        corpus = _open(path)
        found = corpus.search(queries.value, shards=shards, **search) if knn else None
        near = (None if test.value is None
                else corpus.near_duplicates(test.value, threshold, shards=shards))
        return found, near

    def combine(a, b):
        # Exact top-k merges and unions of rows: any order gives the same result, so the
        # executors merge in a tree and the driver receives one part.
        found = ptsel.merge_neighbors([a[0], b[0]], per_target, metric) if knn else None
        near = None if a[1] is None else np.concatenate([a[1], b[1]])
        return found, near

    n = index.shards
    groups = [(a, min(a + shards_per_task, n)) for a in range(0, n, shards_per_task)]
    found, near = sc.parallelize(groups, len(groups)).map(task).treeReduce(combine)
    return index.select(target, labels, neighbors=[found] if knn else None,
                        excluded=None if exclude is None else [near], **select_options)
