"""The README's Python recipe, run exactly as written on small synthetic data (with a minimal
stand-in for torch when torch is not installed)."""

import re
import sys
import types

import numpy as np
import pytest

import ptsel

from conftest import REPO


def readme_snippet():
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def fake_torch():
    """torch.utils.data's DataLoader, Dataset, Sampler and Subset, reduced to what the recipe
    uses: batches of the sampler's indices, collated by transposing tuples."""
    data = types.ModuleType("torch.utils.data")

    class Dataset:
        pass

    class Sampler:
        pass

    class Subset(Dataset):
        def __init__(self, dataset, indices):
            self.dataset, self.indices = dataset, indices

        def __getitem__(self, i):
            return self.dataset[self.indices[i]]

        def __len__(self):
            return len(self.indices)

    def collate(items):
        if isinstance(items[0], tuple):
            return tuple(collate(list(field)) for field in zip(*items))
        return np.asarray(items)

    class DataLoader:
        def __init__(self, dataset, batch_size, sampler):
            self.dataset, self.batch_size, self.sampler = dataset, batch_size, sampler

        def __iter__(self):
            order = list(self.sampler)
            for b in range(0, len(order), self.batch_size):
                yield collate([self.dataset[i] for i in order[b:b + self.batch_size]])

    data.Dataset, data.Sampler, data.Subset, data.DataLoader = Dataset, Sampler, Subset, DataLoader
    torch = types.ModuleType("torch")
    torch.utils = types.ModuleType("torch.utils")
    torch.utils.data = data
    return torch


@pytest.fixture
def torch_or_stand_in(monkeypatch):
    """Real torch when installed; otherwise the stand-in, with ptsel.torch imported over it and
    forgotten afterwards."""
    try:
        import torch  # noqa: F401
    except ImportError:
        torch = fake_torch()
        monkeypatch.setitem(sys.modules, "torch", torch)
        monkeypatch.setitem(sys.modules, "torch.utils", torch.utils)
        monkeypatch.setitem(sys.modules, "torch.utils.data", torch.utils.data)
        yield
        sys.modules.pop("ptsel.torch", None)
        if hasattr(ptsel, "torch"):
            del ptsel.torch
    else:
        yield


def test_readme_python_recipe(tmp_path, monkeypatch, torch_or_stand_in):
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(150, 16))
    labels = np.repeat(np.arange(150), 8)
    features = centres[labels] + 0.5 * rng.normal(size=(len(labels), 16))
    target_labels = rng.integers(0, 3, size=60)
    target = centres[target_labels * 7] + 0.5 * rng.normal(size=(60, 16))
    monkeypatch.chdir(tmp_path)
    for name, array in [("features", features.astype(np.float32)), ("labels", labels),
                        ("target", target.astype(np.float32)), ("target_labels", target_labels)]:
        np.save(f"{name}.npy", array)
    pretraining_dataset = [(features[i].astype(np.float32), labels[i]) for i in range(len(labels))]
    target_dataset = [(target[i].astype(np.float32), target_labels[i]) for i in range(60)]
    scope = {"target_dataset": target_dataset, "pretraining_dataset": pretraining_dataset}
    exec(compile(readme_snippet(), "README.md", "exec"), scope)
    sel, loader = scope["sel"], scope["loader"]
    assert len(sel.classes) == 100 and (tmp_path / "sel.csv").exists()
    assert {0, 7, 14} <= set(sel.classes[:10])
    batches = list(loader)
    assert sum(len(domain) for _, domain in batches) == 120
    assert sum(int(np.sum(np.asarray(domain))) for _, domain in batches) == 60
