"""Shared fixtures: the built-in synthetic problem and a Θ fitted on it once per session."""

from __future__ import annotations

import pytest
import torch

from landform import Mapping, fit
from landform.synthetic import synthetic_problem


@pytest.fixture(scope="session")
def problem():
    return synthetic_problem()


@pytest.fixture(scope="session")
def test_observations(problem):
    return problem.test_observations(64, torch.Generator().manual_seed(11))


@pytest.fixture(scope="session")
def fitted(problem):
    """Θ fitted with Algorithm 1 for a few seconds on the synthetic problem."""
    torch.manual_seed(0)
    mapping = Mapping(16, (16,), hidden=128)
    fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=30, trajectories=128,
        steps=20, lr=1e-3, batch_size=128, seed=0, progress=False)
    return mapping
