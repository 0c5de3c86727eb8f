import math

import pytest
import torch

from landform import metrics
from landform.comparison import summarize


def test_loss_at_and_steps_to_reach():
    curve = [4.0, 3.0, 2.0, 1.0]
    assert metrics.loss_at(curve, [0, 3]) == [4.0, 1.0]
    assert metrics.steps_to_reach(curve, 2.5) == 2
    assert math.isinf(metrics.steps_to_reach(curve, 0.5))
    assert metrics.step_reached(curve, 2.5) == 2 and metrics.step_reached(curve, 0.5) is None
    with pytest.raises(ValueError):
        metrics.loss_at(curve, [4])


def test_speedup_and_improvement():
    baseline = torch.linspace(10, 0, 21)  # reaches its step-20 loss (0) at step 20
    landscape = torch.tensor([10.0, 5.0, 0.0] + [0.0] * 18)
    assert metrics.speedup_at(baseline, landscape, 20) == pytest.approx(10.0)
    assert metrics.improvement_at(baseline, landscape, 10) == pytest.approx(1.0)
    assert metrics.improvement_at([2.0], [1.5], 0) == pytest.approx(0.25)
    never = torch.full((21,), 20.0)
    assert metrics.speedup_at(baseline, never, 20) == 0.0
    climbs = torch.tensor([1.0, 3.0] + [2.0] * 19)  # a large step size: its step-20 loss lies above its start
    there = torch.full((21,), 0.5)
    assert metrics.speedup_at(climbs, there, 20) == 1.0
    assert metrics.wallclock_speedup(climbs, there, (1.0, 1.0), 20) == 1.0


def test_per_example_losses_are_averaged():
    losses = torch.tensor([[2.0, 4.0], [1.0, 3.0]])
    assert metrics.loss_at(losses, [1]) == [2.0]
    block = summarize(losses, losses / 2, steps=(0, 1))
    assert block["improvement_at_200"] == pytest.approx(0.5) and block["count"] == 2
