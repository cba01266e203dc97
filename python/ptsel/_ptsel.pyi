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
    def search(
        self,
        queries: _Floats,
        k: int = 10,
        ef: Optional[int] = None,
        exact: bool = False,
        threads: Optional[int] = None,
        device: _Device = "auto",
        shards: Optional[tuple[int, int]] = None,
        probes: Optional[int] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids, scores)``, ``[n, k]`` int64 and float32, best first (global rows; only the
        shards ``(start, stop)`` when given, padded with -1); ``probes`` searches the
        partitions instead of the graph; the GIL is released."""
    def near_duplicates(
        self,
        test: Union[_Floats, _Path],
        threshold: float = 0.95,
        shards: Optional[tuple[int, int]] = None,
    ) -> npt.NDArray[np.int64]:
        """Rows whose cosine to some test row reaches ``threshold``, ascending."""
    def select(
        self,
        target: Union[_Floats, _Path],
        labels: Union[npt.NDArray[np.integer], _Path, None] = None,
        means: bool = False,
        method: Literal["uot", "knn", "similarity", "random"] = "uot",
        classes: Optional[int] = None,
        budget: Optional[int] = None,
        exclude_near: Union[_Floats, _Path, None] = None,
        exclude_threshold: float = 0.95,
        per_target: int = 50,
        exact: bool = False,
        ef: Optional[int] = None,
        seed: int = 0,
        p_m: float = 0.1,
        eps: float = 1.0,
        tau_source: float = 1.0,
        tau_target: float = 100.0,
        max_iter: int = 1000,
        tol: float = 1e-6,
        uot_domain: Literal["auto", "plain", "log"] = "auto",
        pseudo_classes: bool = False,
        device: _Device = "auto",
        neighbors: Optional[Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]] = None,
        excluded: Optional[Sequence[npt.NDArray[np.int64]]] = None,
        probes: Optional[int] = None,
    ) -> Selection:
        """The pre-training samples worth re-using for ``target`` (``ptsel select``)."""

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

def open(path: _Path) -> Index:
    """Open an index file or corpus folder (FileNotFoundError, CorruptIndexError)."""

def build(
    features: Union[_Floats, _Path],
    out: _Path,
    labels: Union[npt.NDArray[np.integer], _Path, None] = None,
    ids: Union[Sequence[str], _Path, None] = None,
    class_names: Union[Sequence[str], _Path, None] = None,
    dtype: Literal["f16", "f32"] = "f16",
    metric: Literal["cos", "ip", "l2"] = "cos",
    hnsw: bool = True,
    m: int = 16,
    ef_construction: int = 200,
    kmeans: Optional[int] = None,
    kmeans_iters: int = 20,
    seed: int = 0,
    progress: Union[bool, Callable[[str, int, int], Any]] = True,
    force: bool = False,
    resume: bool = False,
    graph_layout: Literal["blocks", "compact"] = "blocks",
    partitions: Optional[int] = None,
    partition_codes: Literal["sq8", "pq4"] = "sq8",
) -> Index:
    """Build an index of ``features`` at ``out`` and return it opened (``ptsel build``)."""

def merge_neighbors(
    parts: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    k: int,
    metric: Literal["cos", "ip", "l2"],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Per query the ``k`` best global rows of searches over different shards, ties to the
    lower row (exact, in any order)."""

def assemble(
    out: _Path,
    files: Sequence[str],
    class_names: Optional[Sequence[str]] = None,
    classes: Optional[int] = None,
    params: Optional[dict[str, str]] = None,
) -> Index:
    """Write the corpus file of the folder ``out`` for its shard ``files`` and open it."""
