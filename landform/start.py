"""A learned start: an encoder y -> x trained through the frozen forward model (amortized inversion).

``StartEncoder`` picks its architecture from the observations' shape (a small conv net for images
``[C, H, W]``, an MLP for anything else, flattened) and is trained by ``train_start`` to minimize the
Problem's own loss ``L(F(E(y)), y)`` on training observations: no ground-truth x is needed, only F. Its
last layer starts at zero, so an untrained start is the baseline's start (x = 0), unless 0 is a critical
point of the loss (then it starts with small random weights, or it would never learn). The recipe
(``landform.recipe``) anchors Θ at its guess: x = E(y) + Θ(z). Under torchrun ``train_start`` is data-parallel
(``landform.distributed``): each rank draws its share of every minibatch from its own random stream, the
gradients are averaged over the ranks, and the held-out loss is computed on each rank's share of the
validation observations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from landform import distributed
from landform.errors import LandformError
from landform.inference import ORIGIN_JITTER, Forward, Loss, check_forward_output, check_loss_values
from landform.progress import progress_bar
from landform.stopping import EarlyStopping

ARCHITECTURES = ("mlp", "conv")
MAX_POOL_BYTES = 256 * 2**20  # training observations kept in memory at once
POOL_CHUNK = 8192  # ... drawn this many at a time


class StartEncoder(nn.Module):
    """y [B, *y_shape] -> x [B, *x_shape]; observations are standardized with statistics of the training set."""

    def __init__(self, y_shape: tuple[int, ...], x_shape: tuple[int, ...], *, architecture: str | None = None,
                 hidden: int = 256, channels: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.y_shape, self.x_shape = tuple(int(s) for s in y_shape), tuple(int(s) for s in x_shape)
        self.architecture = architecture or ("conv" if len(self.y_shape) == 3 and min(self.y_shape[1:]) >= 8
                                             else "mlp")
        if self.architecture not in ARCHITECTURES:
            raise LandformError(f"unknown start architecture {self.architecture!r}; use one of "
                                f"{', '.join(ARCHITECTURES)}")
        if self.architecture == "conv" and len(self.y_shape) != 3:
            raise LandformError(f"a conv start needs image observations [C, H, W], got {list(self.y_shape)}")
        self.hidden, self.channels, self.layers = int(hidden), int(channels), int(layers)
        if not 1 <= self.layers <= 8:
            raise LandformError(f"a start has 1 to 8 hidden layers, got {layers}")
        x_dim, y_dim = math.prod(self.x_shape), math.prod(self.y_shape)
        if self.architecture == "conv":
            c = self.channels
            self.body = nn.Sequential(
                nn.Conv2d(self.y_shape[0], c, 3, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(c, 2 * c, 3, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(4 * c * 16, self.hidden), nn.LeakyReLU(0.2))
            stats_shape: tuple[int, ...] = (1,)
        else:
            blocks: list[nn.Module] = [nn.Flatten()]
            for width in [y_dim] + [self.hidden] * (self.layers - 1):
                blocks += [nn.Linear(width, self.hidden), nn.LeakyReLU(0.2)]
            self.body = nn.Sequential(*blocks)
            stats_shape = self.y_shape
        self.head = nn.Linear(self.hidden, x_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("y_mean", torch.zeros(stats_shape))
        self.register_buffer("y_scale", torch.ones(stats_shape))

    def standardize_with(self, y: torch.Tensor) -> None:
        """Set the input statistics from a sample of training observations (per entry for an MLP)."""
        y = y.detach().float()
        if self.architecture == "conv":
            mean, scale = y.mean().reshape(1), y.std().reshape(1)
        else:
            mean, scale = y.mean(dim=0), y.std(dim=0)
        self.y_mean.copy_(mean)
        self.y_scale.copy_(scale.clamp_min(1e-6 * max(float(scale.max()), 1e-12)).clamp_min(1e-12))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.y_shape:
            raise LandformError(f"the learned start takes observations of shape {list(self.y_shape)}, got "
                                f"{list(y.shape[1:])}")
        h = self.body((y - self.y_mean) / self.y_scale)
        return self.head(h).reshape(y.shape[0], *self.x_shape)

    def describe(self) -> str:
        """Its architecture in a few words."""
        if self.architecture == "conv":
            return f"conv, {self.channels} channels"
        return f"mlp, hidden {self.hidden}" + (f" x {self.layers}" if self.layers != 2 else "")

    def config(self) -> dict[str, Any]:
        """What ``from_config`` needs to rebuild this module."""
        return {"kind": "landform.StartEncoder", "y_shape": list(self.y_shape), "x_shape": list(self.x_shape),
                "architecture": self.architecture, "hidden": self.hidden, "channels": self.channels,
                "layers": self.layers}

    @classmethod
    def from_config(cls, config: Any, source: str) -> StartEncoder:
        """Rebuild an (untrained) encoder from a validated config; one-line errors for a bad one."""
        if not isinstance(config, dict) or config.get("kind") != "landform.StartEncoder":
            raise LandformError(f"{source} holds no landform StartEncoder config")
        try:
            shapes = [tuple(int(s) for s in config[key]) for key in ("y_shape", "x_shape")]
            sizes = [int(config[key]) for key in ("hidden", "channels")]
            layers = int(config.get("layers", 2))
        except (KeyError, TypeError, ValueError):
            raise LandformError(f"{source}: the start's config needs y_shape, x_shape, hidden and channels") from None
        if any(not 1 <= len(s) <= 8 or min(s) < 1 or math.prod(s) > 2**24 for s in shapes) or \
                any(not 1 <= s <= 2**16 for s in sizes) or not 1 <= layers <= 8:
            raise LandformError(f"{source}: the start's sizes are out of range ({config})")
        return cls(shapes[0], shapes[1], architecture=config.get("architecture"), hidden=sizes[0], channels=sizes[1],
                   layers=layers)


class RefinedStart(nn.Module):
    """The start plus one learned error-feedback step (HMR's iterative error feedback, SPIN's regress-then-fit):
    x1 = x0 + R([y, F(x0) - y, x0]) with x0 = E(y). R is an MLP ``StartEncoder`` on the flattened features whose
    head starts at zero (so an untrained R keeps E's guess); it sees how far F(x0) is from y, a local correction
    that generalizes to held-out observations better than E's guess alone. It costs one forward pass of F.
    E and F stay frozen: F is held outside the module's state, so it is neither trained nor saved."""

    def __init__(self, start: StartEncoder, forward: Forward, refiner: StartEncoder | None = None, *,
                 hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.start = start.requires_grad_(False)
        self._forward = (forward,)  # a tuple: an nn.Module F would otherwise become a trained submodule
        width = 2 * math.prod(start.y_shape) + math.prod(start.x_shape)
        self.refiner = refiner if refiner is not None else StartEncoder((width,), start.x_shape, architecture="mlp",
                                                                        hidden=hidden, layers=layers)
        if self.refiner.y_shape != (width,) or self.refiner.x_shape != start.x_shape:
            raise LandformError(f"a refiner for this start takes {width} features to x of shape "
                                f"{list(start.x_shape)}, got {list(self.refiner.y_shape)} -> "
                                f"{list(self.refiner.x_shape)}")
        self.y_shape, self.x_shape, self.architecture = start.y_shape, start.x_shape, start.architecture

    def features(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E's guess x0 and R's input [y, F(x0) - y, x0] (flattened), computed without gradients."""
        with torch.no_grad():
            x0 = self.start(y)
            y0 = self._forward[0](x0)
            check_forward_output(y0, y)
            flat = [t.reshape(y.shape[0], -1) for t in (y, y0 - y, x0)]
        return x0, torch.cat(flat, dim=1)

    @property
    def head(self) -> nn.Linear:
        return self.refiner.head

    @property
    def hidden(self) -> int:
        return self.refiner.hidden

    def standardize_with(self, y: torch.Tensor) -> None:
        """R's input statistics from a sample of training observations (E keeps its own)."""
        device = self.refiner.y_mean.device
        self.refiner.standardize_with(torch.cat([self.features(chunk.to(device))[1]
                                                 for chunk in y[:4096].split(512)]))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x0, features = self.features(y)
        return x0 + self.refiner(features)

    def describe(self) -> str:
        return f"{self.start.describe()} + one error-feedback step ({self.refiner.describe()})"


@dataclass
class StartTraining:
    """How the start was trained: steps, seconds, why it stopped, its validation loss curve, the seconds from
    the start of training to each of its checks (time to a held-out loss), and the number of processes."""

    steps: int
    seconds: float
    stopped: str
    validation: list[tuple[int, float]]
    validation_seconds: list[float] = field(default_factory=list)
    world_size: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": round(self.seconds, 2), "stopped": self.stopped,
                "validation": [[s, v] for s, v in self.validation],
                "validation_seconds": [round(t, 3) for t in self.validation_seconds], "world_size": self.world_size}


def observation_pool(draw: Callable[[int, torch.Generator], torch.Tensor], generator: torch.Generator,
                     wanted: int, *, seconds: float = math.inf) -> torch.Tensor:
    """Up to ``wanted`` training observations, drawn POOL_CHUNK at a time: fewer when they would take more than
    MAX_POOL_BYTES, or when drawing them has taken more than ``seconds`` (checked after the first chunk, so a
    fast sampler always gives the same pool for a seed, a slow one at least POOL_CHUNK)."""
    began = time.perf_counter()
    parts = [draw(1, generator)]
    count = max(64, min(wanted, MAX_POOL_BYTES // max(1, parts[0].numel() * parts[0].element_size())))
    have = 1
    while have < count and (have < POOL_CHUNK or time.perf_counter() - began <= seconds):
        size = min(POOL_CHUNK - have % POOL_CHUNK, count - have)
        parts.append(draw(size, generator))
        have += size
    return torch.cat(parts)


def train_start(encoder: StartEncoder, forward: Forward, loss: Loss, train: torch.Tensor, val: torch.Tensor, *,
                seconds: float, max_steps: int = 20000, batch_size: int = 128, lr: float = 1e-3,
                check_every: int = 200, patience: int = 6, seed: int = 0, device: torch.device | str = "cpu",
                progress: bool = True, prior: Callable[[int, torch.Generator], torch.Tensor] | None = None,
                prior_weight: float = 0.0, prior_batch: int = 128,
                context: distributed.Context | None = None) -> StartTraining:
    """Train ``encoder`` (in place) to minimize mean ``loss(F(E(y)), y)`` on ``train``, for at most ``seconds``
    or ``max_steps``, and stop early when the validation loss has not improved for ``patience`` checks; the
    encoder ends with the weights of its best check. Adam, its step size halved at every stall.

    Where x has a known distribution, ``prior`` (a sampler ``(n, generator) -> x``) adds pSp's latent term
    ``prior_weight`` x mean |E(F(x)) - x|^2 on ``prior_batch`` draws a step: it keeps the start's guesses
    where F was trained (a GAN's or VAE's latent prior).

    With an active ``context`` (K processes under torchrun, every rank holding the same ``train`` and ``val``)
    the training is data-parallel: rank 0's weights to begin with, minibatches of ``batch_size / K`` (and
    ``prior_batch / K``) drawn by each rank from its own random stream, gradients averaged over the ranks, the
    held-out loss over every rank's share of ``val``, and the time budget read on rank 0's clock, so every
    rank takes the same steps and ends with the same weights."""
    ctx = context or distributed.Context()
    device = torch.device(device)
    encoder.to(device).train()
    encoder.standardize_with(train)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(distributed.rank_seed(seed, ctx.rank))
    own_val = ctx.shard(val).to(device)
    if ctx.active:  # the global minibatch is split over the ranks
        batch_size, prior_batch = math.ceil(batch_size / ctx.world), math.ceil(prior_batch / ctx.world)

    def validation_loss() -> float:
        encoder.eval()
        with torch.no_grad():
            values = torch.cat([loss(forward(encoder(chunk)), chunk) for chunk in own_val.split(512)])
        encoder.train()
        return float(ctx.gather(values).mean())

    _leave_critical_point(encoder, forward, loss, train[:batch_size].to(device), generator)
    ctx.broadcast_module(encoder)
    trained = [p for p in encoder.parameters() if p.requires_grad]
    stopping = EarlyStopping(encoder, validation_loss(), tolerance=1e-3, patience=patience)
    curve: list[tuple[int, float]] = [(0, stopping.best)]
    began, stopped, step = time.perf_counter(), "max_steps", 0
    times = [0.0]
    bar = progress_bar(total=max_steps, desc="learned start", enabled=ctx.leader)
    for step in range(1, max_steps + 1):
        y = train[torch.randint(train.shape[0], (batch_size,), generator=generator)].to(device)
        y_hat = forward(encoder(y))
        check_forward_output(y_hat, y)
        objective = check_loss_values(loss(y_hat, y), y.shape[0]).mean()
        if prior is not None and prior_weight > 0:
            x = prior(prior_batch, generator).to(device)
            with torch.no_grad():
                drawn = forward(x)
            objective = objective + prior_weight * (encoder(drawn) - x).pow(2).mean()
        if ctx.active:  # every rank learns that one rank's loss turned non-finite, in the gradients' all-reduce
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(objective):
                objective.backward()
            finite = math.isfinite(ctx.average_gradients(trained, objective))
        else:
            finite = bool(torch.isfinite(objective))
        if not finite:
            raise LandformError(f"the loss turned non-finite while training the learned start (step {step})")
        if not ctx.active:
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
        optimizer.step()
        bar.update(1)
        out_of_time = ctx.leader_says(time.perf_counter() - began > seconds)  # checked every step: F may be slow
        if step % check_every == 0 or out_of_time:
            value = validation_loss()
            curve.append((step, value))
            times.append(time.perf_counter() - began)
            stopping.check(value, optimizer)
            bar.set_postfix(val=f"{stopping.best:.4g}", refresh=False)
            if (reason := stopping.reason_to_stop(out_of_time)) is not None:
                stopped = reason
                break
    bar.close()
    stopping.restore()
    encoder.eval().requires_grad_(False)
    return StartTraining(steps=step, seconds=time.perf_counter() - began, stopped=stopped, validation=curve,
                         validation_seconds=times, world_size=ctx.world)


def _leave_critical_point(encoder: StartEncoder, forward: Forward, loss: Loss, y: torch.Tensor,
                          generator: torch.Generator) -> None:
    """The untrained start guesses x = 0 for every y; where F's loss has exactly zero gradient there (|Ax|², a
    bias-free ReLU net) its zero head would never learn, so the head gets small random weights instead."""
    x = encoder(y).detach().requires_grad_(True)
    y_hat = forward(x)
    check_forward_output(y_hat, y)
    (grad,) = torch.autograd.grad(check_loss_values(loss(y_hat, y), y.shape[0]).sum(), x, allow_unused=True)
    if grad is not None and bool((grad != 0).any()):
        return
    with torch.no_grad():
        weight = torch.randn(encoder.head.weight.shape, generator=generator) * (ORIGIN_JITTER / encoder.hidden ** 0.5)
        encoder.head.weight.copy_(weight.to(encoder.head.weight))
