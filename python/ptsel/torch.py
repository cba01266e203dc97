"""PyTorch helpers for a :class:`ptsel.Selection` (importing this module imports torch).

- :func:`subset`: the selected samples of the pre-training dataset as a ``Subset``;
- :func:`mixed`: a dataset and a sampler that mix target samples with selected pre-training
  samples in a given ratio, for one ``DataLoader(dataset, batch_size=..., sampler=sampler)``.

The selection's rows index the pre-training dataset in the order its features were built.
"""

from __future__ import annotations

from typing import Any

import torch.utils.data as tud

from ptsel.mix import PRETRAINING, TARGET, Mixture, MixSampler, selected_rows

__all__ = ["MixedDataset", "MixedSampler", "PRETRAINING", "TARGET", "mixed", "subset"]


def subset(dataset: tud.Dataset, selection: Any) -> tud.Subset:
    """The samples of ``dataset`` (the pre-training corpus) that ``selection`` chose, in rank
    order. ``selection`` is a :class:`ptsel.Selection` or row numbers."""
    return tud.Subset(dataset, selected_rows(selection).tolist())


class MixedDataset(Mixture, tud.Dataset):
    """:class:`ptsel.mix.Mixture` as a torch dataset: items ``(item, domain)``, domain 0 for a
    target sample and 1 for a selected pre-training sample."""


class MixedSampler(MixSampler, tud.Sampler):
    """:class:`ptsel.mix.MixSampler` as a torch sampler (call ``set_epoch`` every epoch)."""


def mixed(
    target_dataset: tud.Dataset,
    pretraining_dataset: tud.Dataset,
    selection: Any,
    ratio: float = 1.0,
    seed: int = 0,
    tag: bool = True,
) -> tuple[MixedDataset, MixedSampler]:
    """A dataset and a sampler for one DataLoader that mixes the target samples with the
    selected pre-training samples: each epoch has every target sample once and ``ratio``
    pre-training samples per target sample, spread evenly over the batches.

    >>> dataset, sampler = mixed(target, pretraining, sel, ratio=0.5)
    >>> loader = torch.utils.data.DataLoader(dataset, batch_size=64, sampler=sampler)
    """
    dataset = MixedDataset(target_dataset, pretraining_dataset, selection, tag=tag)
    sampler = MixedSampler(len(target_dataset), len(dataset.rows), ratio=ratio, seed=seed)
    return dataset, sampler
