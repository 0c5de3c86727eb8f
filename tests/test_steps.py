"""The learned steps' pieces: the training pool (chunked, capped by time) and the bounded move."""

import math

import torch

from landform.start import POOL_CHUNK, observation_pool
from landform.steps import MOVE_BOUND, LearnedSteps


def _draw(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 3, generator=generator)


def test_the_pool_is_the_same_for_a_seed_and_a_slow_sampler_stops_after_its_first_chunk():
    wanted = POOL_CHUNK * 2 + 100
    first = observation_pool(_draw, torch.Generator().manual_seed(3), wanted)
    again = observation_pool(_draw, torch.Generator().manual_seed(3), wanted)
    assert first.shape == (wanted, 3) and torch.equal(first, again)
    capped = observation_pool(_draw, torch.Generator().manual_seed(3), wanted, seconds=0.0)
    assert capped.shape[0] == POOL_CHUNK and torch.equal(capped, first[:POOL_CHUNK])


def test_a_learned_step_moves_no_coordinate_further_than_its_bound():
    steps = LearnedSteps((4,), (6,), count=2)
    weight = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return x @ weight

    def loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y_hat - y).pow(2).mean(1)

    x0, y = torch.zeros(8, 4), 100.0 * torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    steps.move_scale.fill_(0.5)
    steps.rate_scale.fill_(1e6)  # an untrained step far too long: without the bound it would move x by ~1e8
    x1 = steps.step(x0, y, forward, loss, 0)[0].detach()
    assert math.isclose(float(x1.abs().max()), MOVE_BOUND * 0.5, rel_tol=1e-3)
    assert bool((x1.abs() <= MOVE_BOUND * 0.5 + 1e-6).all())
