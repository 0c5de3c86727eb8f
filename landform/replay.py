"""One round of Algorithm 1 on one process: trajectories collected into the replay buffer, then Θ trained on it.

``buffer_round`` runs the paper's round: with Θ frozen, N trajectories of T Adam steps on z (one batch), every
visited (z_t, y) appended to the experience replay buffer (z_0 included: Eq. 2 sums t = 0..T); then T·N samples
drawn from the buffer train Θ with its optimizer. ``online_round`` is the ablation of §4.4 without alternation
or buffer. Each returns a ``FitRound``, what ``fit`` keeps in its history. Nothing here saves or restores: ``fit``
owns the buffer, Θ's optimizer and the random streams (``landform.fitting``), and passes them in.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from landform.errors import LandformError
from landform.inference import Forward, Loss, objective
from landform.mapping import Mapping

ROUND_KEYS = ("loss_first", "loss_last", "collect_curve", "train_loss", "theta_updates",
              "trajectory_steps_per_second", "round", "seconds")


@dataclass
class FitRound:
    """What one round of ``fit`` measured, one entry of its history: the mean loss over the trajectories at each
    collection step (``collect_curve``; ``loss_first`` and ``loss_last`` its ends), Θ's mean training loss and
    number of updates, the collection's trajectory steps per second, the round's number (from 1) and seconds, and
    any ``scores`` a ``should_stop`` recorded on held-out observations (the recipe's ``validation_speedup`` and
    ``validation_loss_ratio``: its progress bar shows them)."""

    loss_first: float
    loss_last: float
    collect_curve: list[float]
    train_loss: float
    theta_updates: int
    trajectory_steps_per_second: float
    round: int = 0
    seconds: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the checkpoint's history holds: the fields, then the scores, at the top level."""
        return {"loss_first": self.loss_first, "loss_last": self.loss_last, "collect_curve": self.collect_curve,
                "train_loss": self.train_loss, "theta_updates": self.theta_updates,
                "trajectory_steps_per_second": self.trajectory_steps_per_second, "round": self.round,
                "seconds": self.seconds, **self.scores}

    @classmethod
    def from_dict(cls, record: Any, where: str) -> FitRound:
        """A round from its JSON form (a resumed checkpoint's history); refused in one line if a field is missing."""
        if not isinstance(record, dict) or any(key not in record for key in ROUND_KEYS):
            raise LandformError(f"{where}: a round of its history is incomplete")
        return cls(**{key: record[key] for key in ROUND_KEYS},
                   scores={key: value for key, value in record.items() if key not in ROUND_KEYS})


class NonFinite(Exception):
    """Raised inside a round when a loss is not finite; ``fit`` turns it into a LandformError."""


def _finite(values: torch.Tensor, where: str, faults: list[str] | None = None) -> torch.Tensor:
    """``values``, after checking they are finite: a non-finite one stops the round at once, or, with K
    processes (``faults`` given), is recorded and the round runs on so that all ranks stop together."""
    if not torch.isfinite(values).all():
        if faults is None:
            raise NonFinite(where)
        if not faults:
            faults.append(where)
    return values


def _theta_step(mean: torch.Tensor, parameters: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                distributed_model: bool, divisor: float = 1.0, extra: tuple[torch.Tensor, ...] = ()) -> tuple:
    """Sets the gradients of ``mean`` for Θ's parameters (averaged over processes by DDP when there are
    several; F's parameters get none), divided by ``divisor``; returns the gradients of ``extra``."""
    if distributed_model:
        for parameter in parameters:
            parameter.grad = None
        for tensor in extra:
            tensor.grad = None
        torch.autograd.backward(mean, inputs=[*extra, *parameters])
        extra_grads = tuple(tensor.grad for tensor in extra)
        if divisor != 1.0:
            for parameter in parameters:
                parameter.grad = parameter.grad / divisor
    else:
        grads = torch.autograd.grad(mean, [*extra, *parameters])
        extra_grads = grads[: len(extra)]
        for parameter, grad in zip(parameters, grads[len(extra):], strict=True):
            parameter.grad = grad / divisor if divisor != 1.0 else grad
    return extra_grads


def _apply(module: torch.nn.Module, z: torch.Tensor, base: torch.Tensor | None,
           mapping: Mapping | None = None) -> torch.Tensor:
    """x = Θ(z) (or base + Θ(z)); ``module`` may be Θ wrapped in DistributedDataParallel."""
    return module(z, base) if (mapping or module).additive else module(z)


def _prepared(loss: Loss, y: torch.Tensor) -> tuple[Loss, tuple[torch.Tensor, ...] | None]:
    """``loss`` with what depends on the observations alone computed once: a loss with a ``prepare(y)``
    method (``ImageLoss``: the observations' features) returns per-observation tensors, batch first, and
    takes them back as ``loss(y_hat, y, prepared=...)``; any other loss is used as it is."""
    prepare = getattr(loss, "prepare", None)
    if not callable(prepare):
        return loss, None
    prepared = tuple(prepare(y))
    return functools.partial(loss, prepared=prepared), prepared


class _Frozen:
    """Θ's parameters need no gradient while trajectories are collected (only z does): autograd then keeps
    nothing for them. Restored on exit, whatever happens."""

    def __init__(self, mapping: Mapping) -> None:
        self.parameters = [p for p in mapping.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for parameter in self.parameters:
            parameter.requires_grad_(False)

    def __exit__(self, *_: object) -> None:
        for parameter in self.parameters:
            parameter.requires_grad_(True)


def buffer_round(mapping: Mapping, forward: Forward, loss: Loss, y: torch.Tensor, base: torch.Tensor | None,
                  z: torch.Tensor, buffer: deque, theta_optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, *, steps: int, lr_z: float, batch_size: int,
                  model: torch.nn.Module | None = None, faults: list[str] | None = None) -> FitRound:
    """Collect N trajectories with Θ frozen into the buffer, then replay T·N samples to train Θ. What the loss
    computes from the observations alone (``_prepared``) is computed once a round, not at every step."""
    z.requires_grad_(True)
    z_optimizer = torch.optim.Adam([z], lr=lr_z)
    visited = [z.detach().clone()]
    collect_losses = []
    collect_start = time.perf_counter()
    round_loss, prepared = _prepared(loss, y)
    with _Frozen(mapping):
        for t in range(steps):
            values, _ = objective(forward, round_loss, _apply(mapping, z, base), y, None)
            collect_losses.append(_finite(values, f"collection step {t + 1}", faults).mean().item())
            (z.grad,) = torch.autograd.grad(values.sum(), [z])  # Θ is frozen while collecting
            z_optimizer.step()
            visited.append(z.detach().clone())
    collect_seconds = time.perf_counter() - collect_start
    n = y.shape[0]
    buffer.append((torch.cat(visited), torch.arange(n, device=y.device).repeat(steps + 1), y, base))
    parameters = list(mapping.parameters())

    pool = [(zs, index, ys, bs) for zs, index, ys, bs in buffer]
    # the current round's observations are ``y`` itself; older rounds' (buffer_rounds > 1) are prepared anew
    # from their stored observations, so a resumed fit computes exactly what an uninterrupted one did
    pool_prepared = None if prepared is None else [_prepared(loss, ys)[1] for ys in (e[2] for e in pool[:-1])] + \
        [prepared]
    sizes = torch.tensor([entry[0].shape[0] for entry in pool])
    offsets = torch.cumsum(sizes, 0) - sizes
    train_losses = []
    updates = math.ceil(steps * n / batch_size)
    for j in range(updates):
        flat = torch.randint(int(sizes.sum()), (batch_size,), generator=generator)
        z_batch, y_batch, base_batch, prepared_batch = _gather(pool, sizes, offsets, flat, pool_prepared)
        batch_loss = loss if prepared_batch is None else functools.partial(loss, prepared=prepared_batch)
        values, _ = objective(forward, batch_loss, _apply(model or mapping, z_batch, base_batch, mapping), y_batch,
                              None)
        mean = _finite(values, f"training step {j + 1}", faults).mean()
        _theta_step(mean, parameters, theta_optimizer, model is not None)
        theta_optimizer.step()
        train_losses.append(mean.item())
    return FitRound(loss_first=collect_losses[0], loss_last=collect_losses[-1], collect_curve=collect_losses,
                    train_loss=sum(train_losses) / len(train_losses), theta_updates=updates,
                    trajectory_steps_per_second=steps * n / collect_seconds)


def _gather(pool: list, sizes: torch.Tensor, offsets: torch.Tensor, flat: torch.Tensor,
            pool_prepared: list[tuple[torch.Tensor, ...]] | None = None) -> tuple:
    """Minibatch (z, y, base, prepared) for flat buffer indices spanning the rounds kept in the buffer
    (``prepared``: the rows of each round's prepared observations, None without them)."""
    z_parts, y_parts, base_parts, prepared_parts = [], [], [], []
    for entry, (zs, index, ys, bs), size, offset in zip(range(len(pool)), pool, sizes.tolist(), offsets.tolist(),
                                                        strict=True):
        local = flat[(flat >= offset) & (flat < offset + size)] - offset
        if local.numel() == 0:
            continue
        local = local.to(zs.device)
        z_parts.append(zs[local])
        rows = index[local]
        y_parts.append(ys[rows])
        if bs is not None:
            base_parts.append(bs[rows])
        if pool_prepared is not None:
            prepared_parts.append([tensor[rows] for tensor in pool_prepared[entry]])
    prepared = None if pool_prepared is None else \
        tuple(torch.cat(parts) for parts in zip(*prepared_parts, strict=True))
    return torch.cat(z_parts), torch.cat(y_parts), (torch.cat(base_parts) if base_parts else None), prepared


def online_round(mapping: Mapping, forward: Forward, loss: Loss, y: torch.Tensor, base: torch.Tensor | None,
                  z: torch.Tensor, theta_optimizer: torch.optim.Optimizer, *, steps: int, lr_z: float,
                  model: torch.nn.Module | None = None, faults: list[str] | None = None) -> FitRound:
    """The ablation without alternation or buffer: one backward per step updates both z and Θ."""
    z.requires_grad_(True)
    z_optimizer = torch.optim.Adam([z], lr=lr_z)
    losses = []
    collect_start = time.perf_counter()
    round_loss, _ = _prepared(loss, y)
    for t in range(steps):
        values, _ = objective(forward, round_loss, _apply(model or mapping, z, base, mapping), y, None)
        losses.append(_finite(values, f"online step {t + 1}", faults).mean().item())
        parameters = list(mapping.parameters())
        # Θ descends the mean loss, each z its own loss
        (z.grad,) = _theta_step(values.sum(), parameters, theta_optimizer, model is not None,
                                divisor=y.shape[0], extra=(z,))
        z_optimizer.step()
        theta_optimizer.step()
    seconds = time.perf_counter() - collect_start
    return FitRound(loss_first=losses[0], loss_last=losses[-1], collect_curve=losses,
                    train_loss=sum(losses) / len(losses), theta_updates=steps,
                    trajectory_steps_per_second=steps * y.shape[0] / seconds)
