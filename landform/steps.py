"""Learned update steps: a few unrolled steps x_{k+1} = x_k + U(x_k, ∇ₓL, F(x_k) − y, y, k) after the start.

Beyond the paper: learned gradient descent (Andrychowicz et al. 2016; Adler & Öktem's learned primal-dual;
Song et al. 2020 for body-model fitting) and recurrent error feedback (HMR, ReFit). U is one small MLP shared
across the K ≤ 5 steps; it sees where x is, the loss gradient there (its direction, and the log of its norm), the
log loss, the residual F(x) − y, the observation and a one-hot step index, and it returns a move in x whose last
layer starts at zero, so untrained steps leave the start where it is. It is trained through the frozen F on
training observations by backpropagating through the whole unroll. Each step costs one forward and backward
pass of F, as a descent step does; ordinary descent then continues from where the steps end, so a landscape with
learned steps is never stuck on them. Under torchrun ``train_steps`` is data-parallel (``landform.distributed``).
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
from landform.inference import Forward, Loss, check_forward_output, check_loss_values
from landform.progress import progress_bar
from landform.stopping import EarlyStopping

MAX_STEPS = 5
RANK = 64  # the preconditioner's low-rank part: full rank up to 64 numbers in x (on the 32-d colour probe decoder,
# 300 s of training ended 1.053x the answer after step 5 at rank 32 against 1.085x at 16)
SAVED_RANK = 16  # ... as it was before the rank was saved in the config (landscapes saved then load as they were)
PRECONDITIONER_OUTPUTS = 4096  # ... at most this many numbers per example
MOVE_BOUND = 3.0  # a step moves each coordinate by at most this many of the starts' spreads (tanh-bounded)
BLOWUP = 2.0  # a held-out loss this many times the best one restores the best weights
RATE_TRIES = 8  # the untrained step's size is shortened tenfold at most this many times
SMALLEST_BATCH = 32  # a time budget too short for the iterations asked for halves the minibatch down to this
# ... but only where the steps have at least this long: with 13-15 s (the README's one-minute fit of the example
# decoder) minibatches of 32 and 64 trained them worse than 256 did (0.000142 and 0.000179 after step 5 against
# 0.000120), where with 150 s on the conv probe decoder 64 beat 256 (1.002x the answer against 1.010x).
SHORTEST_SIZED = 60.0
TIMED_ITERATIONS = (2, 4)  # the iterations between these two are timed to size the minibatch
SCHEDULES = {  # Adam's step size for the steps, a factor of the share of their budget spent
    "constant": lambda spent: 1.0,
    "cosine": lambda spent: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * spent)),  # down to a fiftieth
}
BATCH = 256  # the minibatch asked for ...
CHECK_EVERY = 100  # ... and the iterations between held-out checks at it (more at a smaller minibatch)


def preconditioner_rank(x_dim: int, most: int = RANK) -> int:
    """The preconditioner's rank for x of ``x_dim`` numbers: full up to ``most``, and at most
    PRECONDITIONER_OUTPUTS numbers of its factor per example."""
    return max(1, min(x_dim, most, PRECONDITIONER_OUTPUTS // max(x_dim, 1)))


def check_every_for(batch_size: int, every: int = CHECK_EVERY, at: int = BATCH) -> int:
    """Iterations between held-out checks at ``batch_size``: ``every`` at minibatch ``at``, as many examples
    between checks at any other, so that a plateau's patience means the same amount of training."""
    return max(1, int(every) * int(at) // max(1, int(batch_size)))


class LearnedSteps(nn.Module):
    """K learned update steps for observations of ``y_shape`` and inputs of ``x_shape`` (see the module doc)."""

    def __init__(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...], *, count: int = MAX_STEPS,
                 hidden: int = 256, layers: int = 2, rank: int | None = None, shared_rank: int = 0) -> None:
        super().__init__()
        if not 1 <= int(count) <= MAX_STEPS:
            raise LandformError(f"learned steps: 1 to {MAX_STEPS} steps, got {count}")
        if not 1 <= int(layers) <= 8 or not 1 <= int(hidden) <= 2**16:
            raise LandformError(f"learned steps: 1-8 layers of 1-65536 units, got {layers} x {hidden}")
        self.x_shape, self.y_shape = tuple(int(s) for s in x_shape), tuple(int(s) for s in y_shape)
        self.count, self.hidden, self.layers = int(count), int(hidden), int(layers)
        x_dim, y_dim = math.prod(self.x_shape), math.prod(self.y_shape)
        width = 2 * x_dim + 2 + 2 * y_dim + self.count
        self.rank = preconditioner_rank(x_dim) if rank is None else int(rank)
        if not 1 <= self.rank <= max(1, min(x_dim, PRECONDITIONER_OUTPUTS)):
            raise LandformError(f"learned steps: a preconditioner of rank 1 to {min(x_dim, PRECONDITIONER_OUTPUTS)}, "
                                f"got {rank}")
        self.shared_rank = int(shared_rank)
        if not 0 <= self.shared_rank <= x_dim:
            raise LandformError(f"learned steps: a shared preconditioner of rank 0 to {x_dim}, got {shared_rank}")
        blocks: list[nn.Module] = []
        for size in [width] + [self.hidden] * (self.layers - 1):
            blocks += [nn.Linear(size, self.hidden), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*blocks)
        # The move: an additive correction plus a preconditioned gradient step -s_k (diag(e^d) + L Lᵀ) g, the
        # form of a Newton step, whose size follows the gradient's down to the answer; all heads start at zero,
        # so untrained steps are plain gradient steps of size s_k.
        self.head = nn.Linear(self.hidden, x_dim * (2 + self.rank))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():  # L Lᵀ has no gradient at L = 0: its part of the bias starts small instead
            self.head.bias[2 * x_dim:].normal_(0.0, 0.1 / self.rank ** 0.5, generator=torch.Generator().manual_seed(0))
        if self.shared_rank:  # S Sᵀ, one metric for every example (a fixed F's curvature): starts small, as L
            self.shared_factor = nn.Parameter(torch.randn(x_dim, self.shared_rank, generator=torch.Generator(
            ).manual_seed(1)) * (0.1 / self.shared_rank ** 0.5))
        self.log_rate = nn.Parameter(torch.zeros(self.count))
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_scale", torch.ones(width))
        self.register_buffer("move_scale", torch.ones(x_dim))
        self.register_buffer("rate_scale", torch.ones(()))

    def _features(self, x: torch.Tensor, y: torch.Tensor, forward: Forward, loss: Loss, k: int,
                  create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """U's input at x (and the per-example loss and its flattened gradient there): x, the gradient's direction
        and log norm, the log loss, the residual, y and the step's one-hot index. While training, the loss keeps
        its graph (the objective); the gradient and residual keep theirs only with ``create_graph``."""
        keep = create_graph or self.training
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        y_hat = forward(x)
        check_forward_output(y_hat, y)
        values = check_loss_values(loss(y_hat, y), y.shape[0])
        (grad,) = torch.autograd.grad(values.sum(), x, create_graph=create_graph, retain_graph=keep)
        batch = y.shape[0]
        grad = grad.reshape(batch, -1)
        norm = grad.norm(dim=1, keepdim=True)
        if not create_graph:
            y_hat = y_hat.detach()
        if not keep:
            values = values.detach()
        index = torch.zeros(batch, self.count, device=y.device, dtype=y.dtype)
        index[:, k] = 1
        parts = [x.reshape(batch, -1), grad / norm.clamp_min(1e-30), norm.clamp_min(1e-30).log(),
                 values.detach().clamp_min(1e-30).log().unsqueeze(1) if not create_graph else
                 values.clamp_min(1e-30).log().unsqueeze(1), (y_hat - y).reshape(batch, -1), y.reshape(batch, -1)]
        features = torch.cat([*parts, index], dim=1)
        return features, values, grad

    def step(self, x: torch.Tensor, y: torch.Tensor, forward: Forward, loss: Loss, k: int, *,
             create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """x_{k+1} and the per-example loss at x_k."""
        features, values, grad = self._features(x, y, forward, loss, k, create_graph)
        out = self.head(self.body((features - self.feature_mean) / self.feature_scale))
        x_dim = grad.shape[1]
        additive, log_diag = out[:, :x_dim], out[:, x_dim:2 * x_dim]
        factor = out[:, 2 * x_dim:].reshape(-1, x_dim, self.rank)
        scaled = grad * self.move_scale  # the gradient in units of x's spread
        low_rank = (factor @ (factor.transpose(1, 2) @ scaled.unsqueeze(2))).squeeze(2)
        if self.shared_rank:
            low_rank = low_rank + (scaled @ self.shared_factor) @ self.shared_factor.T
        preconditioned = log_diag.clamp(-8.0, 8.0).exp() * scaled + low_rank
        rate = self.rate_scale * self.log_rate[k].exp()
        move = MOVE_BOUND * torch.tanh((additive - rate * preconditioned) / MOVE_BOUND) * self.move_scale
        x_next = x.reshape(x.shape[0], -1) + move
        return x_next.reshape(x.shape), values

    def run(self, x0: torch.Tensor, y: torch.Tensor, forward: Forward, loss: Loss, *, count: int | None = None,
            create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """x after ``count`` (default all K) steps from ``x0``, the per-example losses [count + 1, B] (row k at x_k)
        and the wall-clock seconds after each step (the last loss costs one more forward pass of F, timed apart)."""
        count = self.count if count is None else min(int(count), self.count)
        x, rows, seconds = x0, [], []
        began = time.perf_counter()
        for k in range(count):
            x, values = self.step(x, y, forward, loss, k, create_graph=create_graph)
            if not (create_graph or self.training):
                x = x.detach()
            rows.append(values)
            seconds.append(time.perf_counter() - began)
        with torch.set_grad_enabled(create_graph or self.training):
            final = check_loss_values(loss(forward(x), y), y.shape[0])
        rows.append(final)
        return x, torch.stack(rows), seconds

    @torch.no_grad()
    def standardize_with(self, x0: torch.Tensor, y: torch.Tensor, forward: Forward, loss: Loss) -> None:
        """Feature statistics from a sample of starts and observations; the move's scale from the starts' spread
        (x in physical units moves in those units). Direction and step index are left as they are."""
        with torch.enable_grad():
            pairs = [self._features(xa, ya, forward, loss, 0, False)
                     for xa, ya in zip(x0[:2048].split(512), y[:2048].split(512), strict=True)]
        features, grads = torch.cat([p[0] for p in pairs]), torch.cat([p[2] for p in pairs])
        x_dim = math.prod(self.x_shape)
        mean, scale = features.mean(0), features.std(0).clamp_min(1e-6)
        fixed = torch.zeros_like(mean, dtype=torch.bool)
        fixed[x_dim:2 * x_dim] = True  # the gradient's direction
        fixed[-self.count:] = True  # the step index
        spread = x0.reshape(x0.shape[0], -1).std(0)
        if float(spread.max()) < 1e-8:  # every start the same (x = 0): x's units are unknown, take 1
            spread = torch.ones_like(spread)
        self.move_scale.copy_(spread.clamp_min(1e-3 * float(spread.max())))
        scale[:x_dim] = self.move_scale  # x in units of the starts' spread (steps move x beyond where it starts)
        self.feature_mean.copy_(torch.where(fixed, torch.zeros_like(mean), mean))
        self.feature_scale.copy_(torch.where(fixed, torch.ones_like(scale), scale))
        # The untrained step: a gradient step that moves a typical start by a tenth of x's spread, shortened
        # tenfold until it lowers the mean loss of a sample (on an ill-conditioned F a tenth of the spread can
        # multiply the loss a hundredfold, and training from there does not recover).
        scaled = (grads * self.move_scale).norm(dim=1)
        typical = float(scaled[scaled > 0].median()) if bool((scaled > 0).any()) else 1.0
        rate = 0.1 * math.sqrt(x0[0].numel()) / typical
        sample_x, sample_y = x0[:512], y[:512]
        before = float(loss(forward(sample_x), sample_y).mean())
        for _ in range(RATE_TRIES):
            self.rate_scale.fill_(rate)
            with torch.enable_grad():
                moved, _ = self.step(sample_x, sample_y, forward, loss, 0)
            after = float(loss(forward(moved.detach()), sample_y).mean())
            if after <= before:
                break
            rate *= 0.1

    def config(self) -> dict[str, Any]:
        return {"kind": "landform.LearnedSteps", "x_shape": list(self.x_shape), "y_shape": list(self.y_shape),
                "count": self.count, "hidden": self.hidden, "layers": self.layers, "rank": self.rank,
                "shared_rank": self.shared_rank}

    @classmethod
    def from_config(cls, config: Any, source: str) -> LearnedSteps:
        """Rebuild (untrained) from ``config``; one-line errors for a bad one."""
        if not isinstance(config, dict) or config.get("kind") != "landform.LearnedSteps":
            raise LandformError(f"{source} holds no landform LearnedSteps config")
        try:
            shapes = [tuple(int(s) for s in config[key]) for key in ("x_shape", "y_shape")]
            sizes = {key: int(config[key]) for key in ("count", "hidden", "layers")}
            rank = int(config.get("rank", preconditioner_rank(math.prod(shapes[0]), SAVED_RANK)))
            shared_rank = int(config.get("shared_rank", 0))  # saved before it existed: none
        except (KeyError, TypeError, ValueError):
            raise LandformError(f"{source}: learned steps need x_shape, y_shape, count, hidden, layers") from None
        if any(not 1 <= len(s) <= 8 or min(s) < 1 or math.prod(s) > 2**24 for s in shapes):
            raise LandformError(f"{source}: the learned steps' shapes are out of range ({config})")
        return cls(shapes[0], shapes[1], rank=rank, shared_rank=shared_rank, **sizes)

    def describe(self) -> str:
        shared = f", shared rank {self.shared_rank}" if self.shared_rank else ""
        return (f"{self.count} learned steps (mlp {self.hidden} x {self.layers}, preconditioner rank {self.rank}"
                f"{shared})")


@dataclass
class StepsTraining:
    """How the learned steps were trained: iterations, seconds, why they stopped, the validation curve (mean
    loss after the last step), the held-out mean loss after each step at the best check, the seconds from the
    start of training to each check (time to a held-out loss) and the number of processes."""

    iterations: int
    seconds: float
    stopped: str
    validation: list[tuple[int, float]]
    per_step: list[float]
    validation_seconds: list[float] = field(default_factory=list)
    world_size: int = 1
    batch_size: int = 256

    def as_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "seconds": round(self.seconds, 2), "stopped": self.stopped,
                "validation": [[i, v] for i, v in self.validation], "held_out_per_step": self.per_step,
                "validation_seconds": [round(t, 3) for t in self.validation_seconds], "world_size": self.world_size,
                "batch_size": self.batch_size}


def starts_of(start: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, device: torch.device,
              chunk: int = 512) -> torch.Tensor:
    """The start's guesses for every observation (no gradient), computed in chunks."""
    with torch.no_grad():
        return torch.cat([start(part.to(device)).detach() for part in y.split(chunk)])


def held_out_losses(steps: LearnedSteps, forward: Forward, loss: Loss, x0: torch.Tensor, y: torch.Tensor, *,
                    context: distributed.Context | None = None) -> torch.Tensor:
    """The mean loss at x_0 ... x_K on held-out starts and observations (with an active ``context``, each rank
    runs its share of them and the mean is over all: the same on every rank)."""
    ctx = context or distributed.Context()
    x0, y = ctx.shard(x0), ctx.shard(y)
    rows = [steps.run(xa, ya, forward, loss)[1] for xa, ya in zip(x0.split(512), y.split(512), strict=True)]
    return ctx.gather(torch.cat(rows, dim=1), dim=1).mean(1)


def train_steps(steps: LearnedSteps, forward: Forward, loss: Loss, x_train: torch.Tensor, y_train: torch.Tensor,
                x_val: torch.Tensor, y_val: torch.Tensor, *, seconds: float, max_iterations: int = 20000,
                batch_size: int = BATCH, lr: float = 1e-3, check_every: int = CHECK_EVERY, patience: int = 10,
                create_graph: bool = False, iterations_wanted: int | None = None, seed: int = 0,
                device: torch.device | str = "cpu", progress: bool = True, standardize: bool = True,
                schedule: str = "constant",
                context: distributed.Context | None = None) -> StepsTraining:
    """Train ``steps`` (in place) from the starts ``x_train`` of ``y_train``: Adam on the mean over examples of
    Σ_k (k / K) L(F(x_k), y) through the unroll (first order by default, as the recipe trains them: the gradients
    the steps are fed are not differentiated; ``create_graph`` includes those second-order terms where F and the
    loss allow it), for at most ``seconds`` or ``max_iterations``, Adam's step size scaled over them by
    ``schedule`` (``SCHEDULES``), stopping when the held-out loss after the last step has not improved for
    ``patience`` checks (the step size halves at every second stall); ends with the
    weights of its best check. ``standardize=False`` trains on from the steps' present weights and statistics
    (steps trained before, given more time).
    With ``iterations_wanted`` and a finite ``seconds`` of at least ``SHORTEST_SIZED``, a few timed iterations
    decide the minibatch: halved
    (down to ``SMALLEST_BATCH``) until that many iterations fit in the time left, the checks spaced to see as
    many examples between them (on a costly F, more and smaller steps of Adam train the steps further in the
    same time: experiments/results/learned_steps_training.jsonl).

    With an active ``context`` (K processes under torchrun, every rank holding the same starts and
    observations) it is data-parallel: rank 0's weights to begin with, minibatches of ``batch_size / K`` from
    each rank's own random stream, gradients averaged over the ranks, the held-out losses over every rank's
    share, and the time budget read on rank 0's clock; every rank ends with the same weights."""
    ctx = context or distributed.Context()
    device = torch.device(device)
    steps.to(device).train().requires_grad_(True)
    if standardize:
        steps.standardize_with(x_train[:2048].to(device), y_train[:2048].to(device), forward, loss)
    ctx.broadcast_module(steps)
    if create_graph:
        create_graph = second_order_works(steps, forward, loss, x_train[:8].to(device), y_train[:8].to(device))
    optimizer = torch.optim.Adam(steps.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(distributed.rank_seed(seed, ctx.rank))
    x_val, y_val = x_val.to(device), y_val.to(device)
    weights = torch.arange(1, steps.count + 1, dtype=torch.float32, device=device) / steps.count
    if schedule not in SCHEDULES:
        raise LandformError(f"learned steps: schedule is one of {', '.join(SCHEDULES)}, got {schedule!r}")
    factor = 1.0
    if ctx.active:  # the global minibatch is split over the ranks
        batch_size = math.ceil(batch_size / ctx.world)

    def check() -> torch.Tensor:
        steps.eval()
        curve = held_out_losses(steps, forward, loss, x_val, y_val, context=ctx)
        steps.train()
        return curve

    per_step = check()
    stopping = EarlyStopping(steps, float(per_step[-1]), tolerance=1e-4, patience=patience, halve_every=2)
    curve: list[tuple[int, float]] = [(0, stopping.best)]
    began, stopped, iteration, diverged = time.perf_counter(), "max_iterations", 0, 0
    times, timed = [0.0], began
    sized = not (iterations_wanted and SHORTEST_SIZED <= seconds < math.inf)
    bar = progress_bar(total=max_iterations, desc="learned steps", enabled=progress and ctx.leader)
    for iteration in range(1, max_iterations + 1):
        if not sized and iteration in TIMED_ITERATIONS:
            if iteration == TIMED_ITERATIONS[0]:
                timed = time.perf_counter()
            else:
                per_iteration = (time.perf_counter() - timed) / (TIMED_ITERATIONS[1] - TIMED_ITERATIONS[0])
                left = seconds - (time.perf_counter() - began)
                chosen = affordable_batch(batch_size, per_iteration, left, int(iterations_wanted or 0))
                chosen = int(ctx.from_leader(torch.tensor([chosen]))[0])  # rank 0's clock decides
                check_every = check_every_for(chosen, check_every, batch_size)
                batch_size, sized = chosen, True
        pick = torch.randint(x_train.shape[0], (batch_size,), generator=generator)
        x0, y = x_train[pick].to(device), y_train[pick].to(device)
        _, losses, _ = steps.run(x0, y, forward, loss, create_graph=create_graph)
        objective = (losses[1:].mean(1) * weights).sum() / weights.sum()
        if ctx.active:  # the all-reduce of the gradients tells every rank whether any rank's loss was finite
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(objective):
                objective.backward()
            finite = math.isfinite(ctx.average_gradients(steps.parameters(), objective))
        else:
            finite = bool(torch.isfinite(objective))
        if not finite:  # a step too far: back to the best weights, with a smaller step size
            diverged += 1
            if diverged > patience:
                raise LandformError(f"the loss kept turning non-finite while training the learned steps "
                                    f"(iteration {iteration}); the forward model may be undefined away from its data")
            optimizer = back_to_best(stopping, optimizer)
            continue
        if not ctx.active:
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
        torch.nn.utils.clip_grad_norm_(steps.parameters(), 1.0)
        optimizer.step()
        bar.update(1)
        if schedule != "constant":  # Adam's step size scaled by the share of the budget spent (time or
            # iterations, on rank 0's clock); the halvings on a plateau multiply into it
            spent = max(iteration / max_iterations, (time.perf_counter() - began) / seconds)
            now = SCHEDULES[schedule](min(1.0, float(ctx.from_leader(torch.tensor([spent]))[0])))
            for group in optimizer.param_groups:
                group["lr"] *= now / factor
            factor = now
        # The budget is checked every iteration (on an expensive F a hundred unrolled iterations take minutes);
        # running out, the steps are checked once more before they stop.
        out_of_time = ctx.leader_says(time.perf_counter() - began > seconds)
        if iteration % check_every == 0 or out_of_time:
            values = check()
            curve.append((iteration, float(values[-1])))
            times.append(time.perf_counter() - began)
            if float(values[-1]) > BLOWUP * stopping.best:  # thrown far off (seen once a few thousand iterations
                optimizer = back_to_best(stopping, optimizer)  # in, on the example decoder)
            if stopping.check(float(values[-1]), optimizer):
                per_step = values
            bar.set_postfix(val=f"{stopping.best:.4g}", refresh=False)
            if (reason := stopping.reason_to_stop(out_of_time)) is not None:
                stopped = reason
                break
    bar.close()
    stopping.restore()
    steps.eval().requires_grad_(False)
    return StepsTraining(iterations=iteration, seconds=time.perf_counter() - began, stopped=stopped,
                         validation=curve, per_step=[float(v) for v in per_step], validation_seconds=times,
                         world_size=ctx.world, batch_size=batch_size * ctx.world)


def affordable_batch(batch_size: int, iteration_seconds: float, seconds: float, iterations: int) -> int:
    """The minibatch for ``iterations`` iterations in ``seconds``, where one of ``batch_size`` takes
    ``iteration_seconds``: halved until they fit (an iteration's time taken to scale with its minibatch), never
    below ``SMALLEST_BATCH``."""
    size = batch_size
    while size // 2 >= SMALLEST_BATCH and iterations * iteration_seconds * size / batch_size > seconds:
        size //= 2
    return size


def back_to_best(stopping: EarlyStopping, optimizer: torch.optim.Optimizer) -> torch.optim.Adam:
    """After a step too far (a non-finite or blown-up loss): the best weights back, and a fresh Adam at half the
    step size (the old one's moments describe where the weights were thrown)."""
    stopping.restore()
    return torch.optim.Adam(stopping.module.parameters(), lr=optimizer.param_groups[0]["lr"] * 0.5)


def second_order_works(steps: LearnedSteps, forward: Forward, loss: Loss, x0: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether F and the loss can be differentiated twice (a custom autograd function may not be): where they
    cannot, the steps are trained without the derivatives of the gradients they are fed."""
    try:
        _, losses, _ = steps.run(x0, y, forward, loss, create_graph=True)
        torch.autograd.grad(losses[1:].sum(), list(steps.parameters()), allow_unused=True)
    except RuntimeError:
        return False
    return True
