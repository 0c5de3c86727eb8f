"""``Problem``: where a user's forward model meets the method, and how the CLI loads one."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from landform.errors import LandformError

Sampler = Callable[[int, torch.Generator], torch.Tensor]


@dataclass
class Problem:
    """An inversion problem: find x with ``loss(forward(x), y)`` small for observations y.

    ``loss(y_hat, y)`` returns one value per example. ``train_observations`` and ``test_observations``
    draw ``n`` observations with a ``torch.Generator``. ``base``, for additive mappings, gives the point
    that Θ(z) is added to (x = base(y) + Θ(z)); the baseline then optimizes the offset from it.
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    x_shape: tuple[int, ...]
    train_observations: Sampler
    test_observations: Sampler
    base: Callable[[torch.Tensor], torch.Tensor] | None = None
    name: str = "problem"

    @classmethod
    def from_sampler(cls, forward: Callable[[torch.Tensor], torch.Tensor], sample: Sampler, x_shape: tuple[int, ...],
                     *, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, noise: float = 0.0,
                     name: str = "problem") -> Problem:
        """A Problem whose observations are F(x) for x drawn by ``sample(n, generator)``, plus Gaussian noise of
        scale ``noise``; train and test observations come from disjoint random streams (each draw seeds its own
        stream from the generator it is given, offset by 2**31 for the test split). ``loss`` defaults to ``mse``."""
        def observations(offset: int) -> Sampler:
            def draw(n: int, generator: torch.Generator) -> torch.Tensor:
                stream = torch.Generator().manual_seed(offset + int(torch.randint(2**31, (1,), generator=generator)))
                x = sample(n, stream)
                with torch.no_grad():
                    y = forward(x)
                return y + noise * torch.randn(y.shape, generator=stream) if noise else y
            return draw

        return cls(forward=forward, loss=loss or mse, x_shape=tuple(x_shape), train_observations=observations(0),
                   test_observations=observations(2**31), name=name)


def mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared error over all but the batch dimension (one value per example)."""
    return (y_hat - y).pow(2).flatten(1).mean(dim=1)


def load_problem(spec: str) -> Problem:
    """Build a Problem from ``"package.module:factory"``: the factory is called with no arguments. The
    module is found on the usual import path and, as ``python -m`` would, in the current directory (the
    ``landform`` console script alone would not look there)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise LandformError(f"--problem must look like package.module:factory, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise LandformError(f"cannot import {module_name!r} for --problem: {error}") from None
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        raise LandformError(f"{module_name!r} has no callable {attribute!r}")
    problem = factory()
    if not isinstance(problem, Problem):
        raise LandformError(f"{spec} returned {type(problem).__name__}, not a landform.Problem")
    return problem
