"""unroll: the same x as invert (pure mode, Adam), differentiable with respect to the observations."""

import pytest
import torch

from landform import Mapping, invert
from landform.errors import LandformError
from landform.unroll import AdamState, adam_step, unroll


def _problem():
    torch.manual_seed(0)
    weight = torch.randn(6, 6)

    def forward(x):
        return torch.tanh(x @ weight)

    def loss(y_hat, y):  # random like an augmentation: the RNG stream must match invert's
        return (y_hat - y + 0.01 * torch.randn_like(y)).pow(2).sum(1)

    return forward, loss


def test_adam_step_matches_torch():
    torch.manual_seed(1)
    p = torch.randn(5, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.05)
    q, state = p.detach().clone(), AdamState(torch.zeros(5), torch.zeros(5))
    for _ in range(4):
        grad = torch.randn(5)
        p.grad = grad.clone()
        opt.step()
        q, state = adam_step(q, grad, state, lr=0.05)
    assert torch.allclose(p.detach(), q, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 3])
def test_matches_invert_baseline_and_additive(steps):
    forward, loss = _problem()
    y = torch.rand(4, 6)
    base = torch.rand(4, 6)
    ours = unroll(forward, loss, y, steps=steps, lr=0.05, init="gaussian", init_scale=0.1, base=base, seed=3)
    ref = invert(forward, loss, y, steps=steps, lr=0.05, init="gaussian", init_scale=0.1, base=base, seed=3)
    assert torch.allclose(ours, ref.x, atol=1e-5)
    torch.manual_seed(0)
    mapping = Mapping(5, (6,), hidden=16, additive=True).requires_grad_(False)
    ours = unroll(forward, loss, y, mapping=mapping, steps=steps, lr=0.1, init="gaussian", base=base, seed=2)
    ref = invert(forward, loss, y, mapping=mapping, steps=steps, lr=0.1, init="gaussian", base=base, seed=2)
    assert torch.allclose(ours, ref.x, atol=1e-5)


def test_differentiable_with_respect_to_the_observations():
    forward, loss = _problem()
    y = torch.rand(3, 6, requires_grad=True)
    mapping = Mapping(5, (6,), hidden=16, additive=True).requires_grad_(False)
    x = unroll(forward, loss, y, mapping=mapping, steps=2, lr=0.1, init="gaussian", base=y, seed=0)
    (grad,) = torch.autograd.grad(x.pow(2).sum(), [y])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(LandformError):
        unroll(forward, loss, y, mapping=mapping, steps=1)  # additive without a base
