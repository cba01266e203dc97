"""Mixing target samples with selected pre-training samples, without torch.

:class:`Mixture` is a map-style dataset (``__len__``/``__getitem__``) over both sources and
:class:`MixSampler` the order of one epoch: every target sample once and ``ratio`` selected
pre-training samples per target sample, spread evenly so that every batch holds the same mix.
:mod:`ptsel.torch` gives both the torch base classes; the logic lives here so that it can be
used and tested with any indexable dataset.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

TARGET = 0
"""Domain tag of a target sample."""
PRETRAINING = 1
"""Domain tag of a selected pre-training sample."""


def selected_rows(selection: Any) -> np.ndarray:
    """The corpus rows of ``selection``: a :class:`ptsel.Selection`, or row numbers."""
    rows = getattr(selection, "rows", selection)
    return np.asarray(rows, dtype=np.int64).reshape(-1)


class Mixture:
    """The target dataset followed by the selected samples of the pre-training dataset.

    Index ``i < len(target)`` is ``target[i]``; index ``len(target) + j`` is
    ``pretraining[rows[j]]``. With ``tag=True`` an item is ``(item, domain)``, domain
    :data:`TARGET` (0) or :data:`PRETRAINING` (1), so that a training step can send each sample
    to its head (target labels or source labels).
    """

    def __init__(self, target: Sequence, pretraining: Sequence, selection: Any, tag: bool = True):
        self.target = target
        self.pretraining = pretraining
        self.rows = selected_rows(selection)
        self.tag = tag
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(pretraining)):
            raise ValueError(
                f"selection: rows must index the pre-training dataset of {len(pretraining)} "
                f"samples (got {self.rows.min()}..{self.rows.max()}): build the index from "
                "that dataset's features in its order"
            )

    def __len__(self) -> int:
        return len(self.target) + len(self.rows)

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        n = len(self.target)
        if i < 0 or i >= len(self):
            raise IndexError(f"index {i} out of range for a mixture of {len(self)} samples")
        if i < n:
            item, domain = self.target[i], TARGET
        else:
            item, domain = self.pretraining[int(self.rows[i - n])], PRETRAINING
        return (item, domain) if self.tag else item


class MixSampler:
    """Indices into a :class:`Mixture` for one epoch.

    Every target sample once, plus ``round(ratio * n_target)`` selected pre-training samples
    (each used once before any repeats, drawn afresh every epoch), both shuffled with ``seed``
    and the epoch, then interleaved so that any run of consecutive indices has the ratio up to
    one sample. Call :meth:`set_epoch` before each epoch for a new order.
    """

    def __init__(self, n_target: int, n_selected: int, ratio: float = 1.0, seed: int = 0):
        if n_target < 1:
            raise ValueError("target: the target dataset is empty")
        if not ratio >= 0:
            raise ValueError(f"ratio: must be >= 0 (got {ratio})")
        if n_selected < 1 and ratio > 0:
            raise ValueError("selection: no pre-training samples were selected")
        self.n_target = n_target
        self.n_selected = n_selected
        self.ratio = float(ratio)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` on the next iteration."""
        self.epoch = epoch

    @property
    def n_pretraining(self) -> int:
        """Pre-training samples per epoch."""
        return round(self.ratio * self.n_target)

    def __len__(self) -> int:
        return self.n_target + self.n_pretraining

    def order(self) -> np.ndarray:
        """The indices of the current epoch, int64."""
        rng = np.random.default_rng([self.seed, self.epoch])
        target = rng.permutation(self.n_target)
        m = self.n_pretraining
        laps = -(-m // self.n_selected) if m else 0
        picks = np.concatenate([rng.permutation(self.n_selected) for _ in range(laps)] or [[]])
        pretraining = self.n_target + picks[:m].astype(np.int64)
        # Position of each sample within its stream, scaled to [0, 1): merging by that key
        # spreads each stream evenly over the epoch (ties: target first).
        keys = np.concatenate([(np.arange(self.n_target) + 0.5) / self.n_target,
                               (np.arange(m) + 0.5) / max(m, 1)])
        both = np.concatenate([target, pretraining])
        return both[np.argsort(keys, kind="stable")]

    def __iter__(self):
        return iter(self.order().tolist())
