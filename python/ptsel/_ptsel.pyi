"""Type stubs of the Rust extension module ``ptsel._ptsel`` (re-exported by ``ptsel``)."""

import os
import pathlib
from typing import Any, Callable, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, os.PathLike[str]]
_Floats = Union[npt.NDArray[np.float16], npt.NDArray[np.float32], npt.NDArray[np.float64]]
_Device = Literal["auto", "cpu", "cuda"]

class CorruptIndexError(ValueError):
    """A damaged, truncated or unsupported index file (a subclass of ValueError)."""

class Index:
    """An open index: memory-mapped and validated, O(1) to open. The array properties are
    read-only numpy views into the mapping (no copy); each keeps the index alive."""

    def __len__(self) -> int: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def shards(self) -> int:
        """1 for an index file; the number of shards of a corpus folder."""
    @property
    def has_graph(self) -> bool:
        """Whether every shard has an HNSW graph."""
    @property
    def has_partitions(self) -> bool:
        """Whether every shard has partitions (``search(probes=...)``)."""
    @property
    def dim(self) -> int: ...
    @property
    def dtype(self) -> Literal["f16", "f32"]: ...
    @property
    def metric(self) -> Literal["cos", "ip", "l2"]: ...
    @property
    def classes(self) -> int:
        """Number of classes (0 when the corpus has no labels)."""
    @property
    def class_names(self) -> Optional[list[str]]: ...
    @property
    def vectors(self) -> Union[npt.NDArray[np.float16], npt.NDArray[np.float32]]:
        """``[rows, dim]`` stored vectors (unit-normalised for metric "cos"), read-only view
        (index files only: ValueError for a corpus)."""
    @property
    def norms(self) -> npt.NDArray[np.float32]:
        """``[rows]`` L2 norms of the raw input vectors, read-only view (index files only)."""
    @property
    def labels(self) -> Optional[npt.NDArray[np.uint32]]:
        """``[rows]`` class of every row, read-only view (index files only); None when
        unlabelled."""
    @property
    def class_counts(self) -> Optional[npt.NDArray[np.uint64]]:
        """``[classes]`` samples per class (merged over a corpus's shards), read-only view;
        None when unlabelled."""
    @property
    def class_means(self) -> Optional[npt.NDArray[np.float64]]:
        """``[classes, dim]`` means of the raw features (merged over a corpus's shards),
        read-only view; None when unlabelled."""
    @property
    def ids(self) -> list[str]:
        """The id of every row (global row numbers as strings where none are stored)."""
    def info(self) -> dict[str, Any]:
        """What ``ptsel info --json`` prints."""
    def verify(self) -> int:
        """Recompute every checksum of every shard (CorruptIndexError naming the file at
        fault); returns the bytes checked."""
    # Every argument that defaults to None takes the library's default (``defaults()``, the
    # same values ``ptsel CMD --help`` shows).
    def search(
        self,
        queries: _Floats,
        k: Optional[int] = None,
        *,
        ef: Optional[int] = None,
        exact: Optional[bool] = None,
        threads: Optional[int] = None,
        device: Optional[_Device] = None,
        shards: Optional[tuple[int, int]] = None,
        probes: Optional[int] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids, scores)``, ``[n, k]`` int64 and float32, best first (global rows; only the
        shards ``(start, stop)`` when given, padded with -1); ``probes`` searches the
        partitions instead of the graph; the GIL is released."""
    def near_duplicates(
        self,
        test: Union[_Floats, _Path],
        threshold: Optional[float] = None,
        *,
        shards: Optional[tuple[int, int]] = None,
    ) -> npt.NDArray[np.int64]:
        """Rows whose cosine to some test row reaches ``threshold``, ascending."""
    def knn_search(self, **select_options: Any) -> Optional[dict[str, Any]]:
        """The ``search`` keyword arguments (k, ef, probes, exact, device) of a kNN-based
        selection ("knn", "uot-knn") with these ``select`` options, as the library resolves
        them; None for a method that searches nothing. Options that do not change the search
        are ignored; a name that is no argument of ``select`` is a TypeError."""
    def select(
        self,
        target: Union[_Floats, _Path],
        labels: Union[npt.NDArray[np.integer], _Path, None] = None,
        *,
        target_weights: Union[npt.NDArray[np.floating], _Path, None] = None,
        means: bool = False,
        method: Optional[Literal["uot", "uot-knn", "knn", "similarity", "random"]] = None,
        classes: Optional[int] = None,
        budget: Optional[int] = None,
        exclude_near: Union[_Floats, _Path, None] = None,
        exclude_threshold: Optional[float] = None,
        per_target: Optional[int] = None,
        exact: Optional[bool] = None,
        ef: Optional[int] = None,
        seed: Optional[int] = None,
        p_m: Optional[float] = None,
        eps: Optional[float] = None,
        tau_source: Optional[float] = None,
        tau_target: Optional[float] = None,
        max_iter: Optional[int] = None,
        tol: Optional[float] = None,
        uot_domain: Optional[Literal["auto", "plain", "log"]] = None,
        pseudo_classes: Optional[bool] = None,
        device: Optional[_Device] = None,
        neighbors: Optional[Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]] = None,
        excluded: Optional[Sequence[npt.NDArray[np.int64]]] = None,
        probes: Optional[int] = None,
        graph_k: Optional[int] = None,
        reverse_k: Optional[int] = None,
        draw: Optional[Literal["top", "sample"]] = None,
        dedup_kde: Optional[float] = None,
        dedup_greedy: Optional[float] = None,
    ) -> Selection:
        """The pre-training samples worth re-using for ``target`` (``ptsel select``); options
        left None take the library's defaults for ``method`` (``defaults("select",
        method=...)``)."""

class Selection:
    """The pre-training samples chosen for a target task, best first."""

    def __len__(self) -> int: ...
    @property
    def rows(self) -> npt.NDArray[np.int64]:
        """Selected corpus rows in manifest (rank) order."""
    @property
    def classes(self) -> list[int]:
        """Selected source classes in order of importance (class-level methods)."""
    @property
    def importance(self) -> Optional[npt.NDArray[np.float64]]:
        """Importance of every source class (uot, similarity), or None."""
    @property
    def summary(self) -> dict[str, Any]:
        """The summary ``ptsel select --summary`` writes."""
    def save(
        self, path: _Path, format: Optional[Literal["csv", "jsonl", "npy", "uids"]] = None
    ) -> None:
        """Write the manifest as ``ptsel select --out`` does."""

def set_kernel(kernel: str) -> str:
    """Make ``kernel`` ("auto", "f32", "bf16", "amx", "int8") the unit exact scoring multiplies on;
    returns the products now in use. Every kernel gives the same exact top-k."""

def open(path: _Path) -> Index:
    """Open an index file or corpus folder (FileNotFoundError, CorruptIndexError)."""

def build(
    features: Union[_Floats, _Path],
    out: _Path,
    *,
    labels: Union[npt.NDArray[np.integer], _Path, None] = None,
    ids: Union[Sequence[str], _Path, None] = None,
    class_names: Union[Sequence[str], _Path, None] = None,
    dtype: Optional[Literal["f16", "f32"]] = None,
    metric: Optional[Literal["cos", "ip", "l2"]] = None,
    hnsw: Optional[bool] = None,
    m: Optional[int] = None,
    ef_construction: Optional[int] = None,
    kmeans: Optional[int] = None,
    kmeans_iters: Optional[int] = None,
    seed: Optional[int] = None,
    progress: Union[bool, Callable[[str, int, int], Any], None] = None,
    force: bool = False,
    resume: bool = False,
    graph_layout: Optional[Literal["blocks", "compact"]] = None,
    partitions: Union[int, Literal["auto"], None] = None,
    partition_codes: Optional[Literal["sq8", "pq4"]] = None,
) -> Index:
    """Build an index of ``features`` at ``out`` and return it opened (``ptsel build``);
    options left None take the library's defaults (``defaults("build")``); ``partitions``
    None builds none, ``"auto"`` 2 sqrt(rows), 0 is a ValueError. ``progress`` None or True:
    a bar per stage where a person watches (tqdm when installed, ``ptsel[progress]``; else a
    line on a terminal's stderr; else nothing), False: nothing, or a callable
    ``(stage, done, total)``."""

def defaults(kind: Optional[str] = None, *, method: Optional[str] = None) -> dict[str, Any]:
    """The library's defaults of the arguments that are None by default: ``{"select": ...,
    "search": ..., "near_duplicates": ..., "build": ...}`` or one kind of them."""

def merge_neighbors(
    parts: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    k: int,
    metric: Literal["cos", "ip", "l2"],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Per query the ``k`` best global rows of searches over different shards, ties to the
    lower row (exact, in any order)."""

def shard_dir(out: _Path, force: bool = False) -> str:
    """Where the shards of a build of the corpus folder ``out`` go: ``out``, or, when it holds
    a corpus and ``force``, its staging folder, moved over the corpus by :func:`assemble` only
    once every shard is built. Without ``force`` an existing corpus is an error."""

def assemble(
    out: _Path,
    files: Sequence[str],
    class_names: Optional[Sequence[str]] = None,
    classes: Optional[int] = None,
    params: Optional[dict[str, str]] = None,
) -> Index:
    """Write the corpus file of the folder ``out`` for its shard ``files`` and open it."""
