"""Mixing target and selected pre-training samples: the ratio logic without torch, then the
torch classes when torch is installed."""

import os

import numpy as np
import pytest

from ptsel.mix import PRETRAINING, TARGET, Mixture, MixSampler


def test_an_epoch_has_every_target_sample_once_and_the_ratio():
    s = MixSampler(n_target=100, n_selected=30, ratio=0.5, seed=1)
    order = s.order()
    assert len(order) == len(s) == 150
    target, pre = order[order < 100], order[order >= 100]
    assert sorted(target) == list(range(100))
    assert len(pre) == 50
    # 30 selected samples, 50 draws: each used once before any is used a second time.
    assert np.bincount(pre - 100, minlength=30).min() == 1
    assert np.bincount(pre - 100, minlength=30).max() == 2


@pytest.mark.parametrize("ratio", [0.25, 1.0, 3.0])
def test_every_batch_holds_the_mix(ratio):
    s = MixSampler(n_target=200, n_selected=1000, ratio=ratio)
    order = s.order()
    share = ratio / (1 + ratio)
    for b in range(0, len(order) - 32, 32):
        batch = order[b:b + 32]
        assert abs(np.sum(batch >= 200) - 32 * share) <= 1.01


def test_epochs_differ_and_repeat():
    s = MixSampler(50, 50, seed=3)
    first = s.order()
    s.set_epoch(1)
    assert not np.array_equal(first, s.order())
    s.set_epoch(0)
    assert np.array_equal(first, list(s))


def test_ratio_zero_is_the_target_alone():
    assert sorted(MixSampler(10, 0, ratio=0)) == list(range(10))


def test_bad_mixing_arguments():
    with pytest.raises(ValueError, match="ratio"):
        MixSampler(10, 10, ratio=-1)
    with pytest.raises(ValueError, match="selection"):
        MixSampler(10, 0, ratio=1)
    with pytest.raises(ValueError, match="target"):
        MixSampler(0, 10)
    with pytest.raises(ValueError, match="rows must index the pre-training dataset of 5"):
        Mixture(["t"], ["p"] * 5, [1, 5])


def test_mixture_items():
    target = [("t0", 0), ("t1", 1)]
    pretraining = [(f"p{i}", i % 3) for i in range(10)]
    m = Mixture(target, pretraining, np.array([7, 2]))
    assert len(m) == 4
    assert [m[i] for i in range(4)] == [(target[0], TARGET), (target[1], TARGET),
                                        (pretraining[7], PRETRAINING), (pretraining[2], PRETRAINING)]
    assert Mixture(target, pretraining, [7, 2], tag=False)[2] == pretraining[7]
    with pytest.raises(IndexError):
        m[4]


def real_torch():
    """torch, which CI installs and requires (PTSEL_REQUIRE_TORCH=1); elsewhere the test is
    skipped where it is not installed."""
    if os.environ.get("PTSEL_REQUIRE_TORCH") == "1":
        import torch
        return torch
    return pytest.importorskip("torch")


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_loader(index, corpus, workers):
    torch = real_torch()
    from ptsel.torch import MixedSampler, mixed, subset

    sel = index.select(corpus.target, labels=corpus.target_labels, classes=5)
    pre = torch.utils.data.TensorDataset(torch.from_numpy(corpus.x), torch.from_numpy(corpus.labels))
    tgt = torch.utils.data.TensorDataset(torch.from_numpy(corpus.target),
                                         torch.from_numpy(corpus.target_labels))
    sub = subset(pre, sel)
    assert len(sub) == len(sel) and torch.equal(sub[0][0], pre[int(sel.rows[0])][0])
    dataset, sampler = mixed(tgt, pre, sel, ratio=0.5)
    assert isinstance(sampler, MixedSampler) and isinstance(sampler, torch.utils.data.Sampler)
    loader = torch.utils.data.DataLoader(dataset, batch_size=30, sampler=sampler,
                                         num_workers=workers)
    seen = 0
    for (x, y), domain in loader:
        assert x.shape[1] == 32 and abs(int(domain.sum()) - 10) <= 1
        seen += len(x)
    assert seen == 300 + 150
