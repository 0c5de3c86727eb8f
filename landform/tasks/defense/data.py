"""Fashion-MNIST for the defense task (read by landform.tasks.common), plus the fixed seeded test subset
every reported accuracy uses."""

from __future__ import annotations

import torch

from landform.tasks.common import FASHION_MNIST_CLASSES as CLASSES
from landform.tasks.common import load_fashion_mnist

__all__ = ["CLASSES", "eval_subset", "load_split"]


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 28, 28] in [0, 1] and labels [N] of train, val or test."""
    return load_fashion_mnist(split)


def eval_subset(size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``size`` images of the test split (the same for a given seed)."""
    x, y = load_fashion_mnist("test")
    index = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(10_000 + seed))[:size]
    return x[index], y[index]
