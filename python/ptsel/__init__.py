"""ptsel: select the pre-training data worth re-using when fine-tuning on a new target task.

Build an index of a pre-training corpus's features once (:func:`build`), open it in
microseconds (:func:`open`), then select for each target task (:meth:`Index.select`: the
paper's unbalanced optimal transport between class means, kNN, baselines) or search it
(:meth:`Index.search`); arguments left None take the library's defaults (:func:`defaults`,
the values ``ptsel CMD --help`` shows). The index's arrays are read-only numpy views of the mapped file.
A corpus folder of shards opens like an index; :mod:`ptsel.spark` builds and selects on one
with Spark tasks.
:mod:`ptsel.torch` turns a :class:`Selection` into PyTorch datasets and samplers.
"""

from ptsel._ptsel import (CorruptIndexError, Index, Selection, __version__, assemble, build,
                          defaults, merge_neighbors, open, set_kernel, shard_dir)

__all__ = ["CorruptIndexError", "Index", "Selection", "__version__", "assemble", "build",
           "defaults", "merge_neighbors", "open", "set_kernel", "shard_dir"]
