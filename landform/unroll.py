"""Differentiable inversion: ``invert``'s descent written as a function of its inputs, for attacks and
meta-gradients that must differentiate THROUGH the inference (e.g. an adaptive attack on a test-time defense).

``unroll`` runs the same Adam steps as ``landform.inference.invert`` in the paper's pure mode (Eq. 1 without
a mapping, Eq. 3 with one): the same starting point, the same per-step random state (``seed``), the same
update, and returns x after ``steps`` steps, keeping the graph (``create_graph``) so that x is a
differentiable function of the observations ``y``, of ``base`` and of the models' parameters, second-order
terms included. ``adam_step`` is torch.optim.Adam's update (no weight decay, no AMSGrad) as a pure function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from landform.errors import LandformError
from landform.inference import Init, initial_variable
from landform.mapping import Mapping


@dataclass
class AdamState:
    """Adam's moments and step count, as tensors that may carry a graph."""

    m: torch.Tensor
    v: torch.Tensor
    step: int = 0


def adam_step(param: torch.Tensor, grad: torch.Tensor, state: AdamState, *, lr: float,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> tuple[torch.Tensor, AdamState]:
    """One step of torch.optim.Adam on ``param`` with gradient ``grad``, out of place (differentiable)."""
    beta1, beta2 = betas
    step = state.step + 1
    m = beta1 * state.m + (1 - beta1) * grad
    v = beta2 * state.v + (1 - beta2) * grad * grad
    bias1, bias2 = 1 - beta1**step, 1 - beta2**step
    # (v / bias2).sqrt() has an infinite derivative at v = 0; torch's denominator is sqrt(v)/sqrt(bias2) + eps.
    denom = _safe_sqrt(v) / bias2**0.5 + eps
    return param - (lr / bias1) * m / denom, AdamState(m, v, step)


class _SafeSqrt(torch.autograd.Function):
    """sqrt with derivative 0 (not inf or NaN) where the input is 0: a coordinate whose gradient is exactly
    zero does not move, and carries no gradient either."""

    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        root = value.sqrt()
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (root,) = ctx.saved_tensors
        return torch.where(root > 0, grad / (2 * root.clamp_min(1e-30)), torch.zeros_like(grad))


def _safe_sqrt(value: torch.Tensor) -> torch.Tensor:
    return _SafeSqrt.apply(value)


def unroll(forward: Callable[[torch.Tensor], torch.Tensor], loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           y: torch.Tensor, *, mapping: Mapping | None = None, steps: int = 1, lr: float = 0.1, init: Init = "zeros",
           init_scale: float = 1.0, x_shape: tuple[int, ...] | None = None, base: torch.Tensor | None = None,
           seed: int = 0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
           create_graph: bool = True) -> torch.Tensor:
    """x after ``steps`` Adam steps of ``invert(..., mode="pure", optimizer="adam")`` on the same arguments,
    as a differentiable function of ``y`` and ``base`` (which may require grad). Without a mapping the
    variable is x itself (x = base + v with a base); with an additive mapping x = base + Θ(z)."""
    if not isinstance(steps, int) or steps < 0:
        raise LandformError(f"steps must be an integer >= 0, got {steps}")
    batch = y.shape[0]
    if mapping is None:
        shape = tuple(init.shape[1:]) if isinstance(init, torch.Tensor) else tuple(x_shape or base.shape[1:])
        variable = initial_variable(init, (batch, *shape), init_scale=init_scale, seed=seed, device=y.device,
                                    dtype=y.dtype)

        def to_x(v: torch.Tensor) -> torch.Tensor:
            return v if base is None else base + v
    else:
        if mapping.additive and base is None:
            raise LandformError("an additive mapping needs base= (x = base + Θ(z))")
        variable = initial_variable(init, (batch, mapping.z_dim), init_scale=init_scale, seed=seed, device=y.device,
                                    dtype=y.dtype)

        def to_x(v: torch.Tensor) -> torch.Tensor:
            return mapping(v, base) if mapping.additive else mapping(v)

    variable = variable.requires_grad_(True)
    state = AdamState(torch.zeros_like(variable), torch.zeros_like(variable))
    device = y.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for _ in range(steps):
            total = loss(forward(to_x(variable)), y).sum()
            (grad,) = torch.autograd.grad(total, [variable], create_graph=create_graph)
            variable, state = adam_step(variable, grad, state, lr=lr, betas=betas, eps=eps)
            if not create_graph:
                variable = variable.detach().requires_grad_(True)
    return to_x(variable)
