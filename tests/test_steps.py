"""The learned steps' pieces: the training pool (chunked, capped by time), the bounded move and their second turn."""

import itertools
import math

import pytest
import torch

from landform import LandformError, learned_parts
from landform.learned_parts import Budget, more_steps, step_starts
from landform.start import POOL_CHUNK, observation_pool
from landform.steps import MOVE_BOUND, RANK, SAVED_RANK, LearnedSteps, held_out_losses, train_steps
from landform.synthetic import synthetic_problem


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


def test_the_preconditioners_rank_is_saved_and_a_config_saved_without_it_rebuilds_the_old_rank():
    """Full rank up to RANK numbers in x, saved in the config; configs written before the rank was saved (the
    shipped pose landscapes) rebuild at SAVED_RANK, so their weights still fit."""
    steps = LearnedSteps((32,), (6,), count=2, hidden=8)
    assert steps.rank == 32 == min(32, RANK)
    again = LearnedSteps.from_config(steps.config(), "test")
    assert again.rank == 32 and again.state_dict()["head.weight"].shape == steps.state_dict()["head.weight"].shape
    old = {key: value for key, value in steps.config().items() if key != "rank"}
    assert LearnedSteps.from_config(old, "test").rank == SAVED_RANK < 32
    assert LearnedSteps.from_config({**steps.config(), "rank": 3}, "test").rank == 3
    with pytest.raises(LandformError, match="rank"):
        LearnedSteps((4,), (6,), rank=5)


def test_a_shared_preconditioner_is_saved_adds_to_every_examples_step_and_old_configs_have_none():
    """The shared factor S adds S Sᵀ g to each example's step (one metric for all of them), its rank is saved in
    the config, and configs written before it rebuild without it, so their weights still fit."""
    steps = LearnedSteps((6,), (6,), count=1, hidden=8, shared_rank=3)
    again = LearnedSteps.from_config(steps.config(), "test")
    assert again.shared_rank == 3 and set(again.state_dict()) == set(steps.state_dict())
    old = {key: value for key, value in steps.config().items() if key != "shared_rank"}
    assert LearnedSteps.from_config(old, "test").shared_rank == 0
    assert "shared_factor" not in LearnedSteps.from_config(old, "test").state_dict()
    with pytest.raises(LandformError, match="shared"):
        LearnedSteps((4,), (6,), shared_rank=5)

    def loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y_hat - y).pow(2).sum(1)

    x0, y = torch.zeros(4, 6), torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    plain = LearnedSteps((6,), (6,), count=1, hidden=8)
    # Same weights but S: S = 0 gives the plain step, a larger S a longer one along S.
    steps.load_state_dict({**plain.state_dict(), "shared_factor": torch.zeros(6, 3)})
    moves = [(module.step(x0, y, lambda x: x, loss, 0)[0] - x0).detach() for module in (plain, steps)]
    assert torch.allclose(moves[0], moves[1])
    with torch.no_grad():
        steps.shared_factor.copy_(torch.eye(6)[:, :3])
    longer = (steps.step(x0, y, lambda x: x, loss, 0)[0] - x0).detach()
    assert bool((longer[:, :3].abs() > moves[0][:, :3].abs()).all())
    assert torch.allclose(longer[:, 3:], moves[0][:, 3:])


def test_time_theta_leaves_goes_back_to_the_steps_once_and_never_leaves_them_worse(tmp_path, monkeypatch):
    problem = synthetic_problem()
    g = torch.Generator().manual_seed(0)
    train, val = problem.train_observations(512, g), problem.train_observations(128, g)

    def start(y: torch.Tensor) -> torch.Tensor:
        return torch.zeros(y.shape[0], *problem.x_shape)

    steps = LearnedSteps(problem.x_shape, tuple(train.shape[1:]), count=2, hidden=32)
    starts = step_starts(start, train, val, torch.device("cpu"))
    x_train, x_val = starts()
    assert starts()[0] is x_train  # computed once, for both turns
    first = train_steps(steps, problem.forward, problem.loss, x_train, train, x_val, val, seconds=60,
                        max_iterations=20, batch_size=64, check_every=10, progress=False)
    record = {"batch_size": first.batch_size, "held_out_per_step": first.per_step}
    steps.feature_mean += 1e-3  # statistics no standardization would give: a second turn must keep them
    statistics = steps.feature_mean.clone()
    before = float(held_out_losses(steps, problem.forward, problem.loss, x_val, val)[-1])
    quiet = {"max_iterations": 40, "seed": 0, "device": torch.device("cpu"), "progress": False, "log": lambda _: None}
    assert more_steps(problem, tmp_path, steps, starts, train, val, Budget(math.inf), record, **quiet) is record
    monkeypatch.setattr(learned_parts, "STEPS_AGAIN_SHORTEST", 1.0)
    again = more_steps(problem, tmp_path, steps, starts, train, val, Budget(20.0), record, **quiet)
    assert again["again"]["iterations"] > 0 and torch.equal(steps.feature_mean, statistics)  # trained on, not anew
    after = float(held_out_losses(steps, problem.forward, problem.loss, x_val, val)[-1])
    assert after <= before * (1 + 1e-5) and math.isclose(again["held_out_per_step"][-1], after, rel_tol=1e-4)
    assert (tmp_path / "steps.safetensors").exists() and (tmp_path / "steps.json").exists()
    assert more_steps(problem, tmp_path, steps, starts, train, val, Budget(20.0), again, **quiet) is again  # once


def test_a_cosine_schedule_lowers_adams_step_size_to_a_fiftieth_and_constant_keeps_it(monkeypatch):
    problem = synthetic_problem()
    g = torch.Generator().manual_seed(0)
    train, val = problem.train_observations(256, g), problem.train_observations(64, g)
    x_train, x_val = torch.zeros(256, *problem.x_shape), torch.zeros(64, *problem.x_shape)
    rates: list[float] = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    steps = LearnedSteps(problem.x_shape, tuple(train.shape[1:]), count=2, hidden=16)
    quiet = {"seconds": math.inf, "max_iterations": 20, "batch_size": 32, "check_every": 1000, "lr": 1e-3,
             "progress": False}
    train_steps(steps, problem.forward, problem.loss, x_train, train, x_val, val, schedule="constant", **quiet)
    assert len(rates) == 20 and set(rates) == {1e-3}
    rates.clear()
    train_steps(steps, problem.forward, problem.loss, x_train, train, x_val, val, schedule="cosine", **quiet)
    assert rates[0] == 1e-3 and all(b <= a for a, b in itertools.pairwise(rates)) and rates[-1] < rates[10] < 1e-3
    assert 0.02e-3 <= rates[-1] < 0.05e-3
    with pytest.raises(LandformError, match="schedule is one of"):
        train_steps(steps, problem.forward, problem.loss, x_train, train, x_val, val, seconds=10,
                    max_iterations=1, progress=False, schedule="warm")
