"""The defense: Eq. 7, the baseline and the additive-mapping paths, and the differentiable one-step defense."""

import torch

from landform import Mapping
from landform.tasks.defense.defense import (
    clamp_forward,
    defended_logits_one_step,
    defense_loss,
    reverse,
    sweep_baseline_lr,
)
from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.ssl import ssl_loss


def _model():
    torch.manual_seed(0)
    return RobustModel().eval().requires_grad_(False)


def test_eq7_is_ssl_plus_squared_reversal():
    model = _model()
    a = torch.rand(4, 1, 28, 28)
    r = 0.1 * torch.randn_like(a)
    torch.manual_seed(3)
    total = defense_loss(model, lam=1.0)(a + r, a)
    torch.manual_seed(3)
    expected = ssl_loss(model, a + r) + r.flatten(1).pow(2).sum(1)
    assert torch.allclose(total, expected, atol=1e-5)


def test_baseline_and_additive_paths():
    model = _model()
    a = torch.rand(6, 1, 28, 28)
    base = reverse(model, a, steps=3, lr=0.01, seed=0)
    assert base.z is None and base.x.shape == a.shape and base.losses.shape == (4, 6)
    mapping = Mapping(784, (1, 28, 28), hidden=32, additive=True)
    ours = reverse(model, a, mapping=mapping, steps=3, lr=0.05, seed=0, snapshots=(1, 3))
    assert ours.z.shape == (6, 784)
    # x = a + Θ(z): the defended image is the attacked one plus the mapping's output at the found z.
    assert torch.allclose(ours.x, clamp_forward(a + mapping.net(ours.z).view(6, 1, 28, 28)), atol=1e-5)
    assert set(ours.snapshots) == {1, 3}


def test_one_step_differentiable_defense_matches_reverse():
    model = _model()
    mapping = Mapping(784, (1, 28, 28), hidden=32, additive=True).requires_grad_(False)
    a = torch.rand(5, 1, 28, 28, requires_grad=True)
    logits = defended_logits_one_step(model, mapping, a, lr=0.05, seed=2)
    defended = reverse(model, a.detach(), mapping=mapping, steps=1, lr=0.05, seed=2).x
    assert torch.allclose(logits, model(defended), atol=1e-4)
    (grad,) = torch.autograd.grad(logits.logsumexp(1).sum(), [a])
    assert grad.abs().sum() > 0


def test_sweep_picks_one_of_the_rates():
    model = _model()
    a = torch.rand(8, 1, 28, 28)
    y = torch.randint(10, (8,))
    best, scores = sweep_baseline_lr(model, a, y, lrs=(0.01, 0.1))
    assert best in (0.01, 0.1) and set(scores) == {"0.01", "0.1"}
