"""Optimization-based inference: Eq. 1 (optimize x), Eq. 3 (optimize z, x = Θ(z)) and the never-worse modes.

Modes with a mapping (the registry ``landform.modes.MODES``, which ``invert`` dispatches to):

- ``"pure"``: the paper's Eq. 3, only z is optimized and x = Θ(z) stays on Θ's image.
- ``"residual"`` (the default of the CLI and the reports): x = Θ(z) + δ, z and δ optimized together, δ from 0.
  Θ gives the fast early descent; δ lets x leave Θ's image, so the end point is not limited by what Θ
  can draw (the paper's Appendix D: Θ need not be surjective).
- ``"handoff"``: Eq. 3 for ``handoff`` steps, then descent on x from there.

``starts`` adds candidate starting points in X (e.g. the baseline's start or an encoder's guess): each is
evaluated once by F (forward only), and every example starts from the best of Θ's start and the candidates;
an example that starts at a candidate is refined by descent on x alone, so it is never behind the
baseline that starts there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import torch

from landform.errors import LandformError
from landform.mapping import Mapping
from landform.modes import MODES, Descent
from landform.progress import progress_bar

Forward = Callable[[torch.Tensor], torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Init = str | torch.Tensor
Start = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
ORIGIN_JITTER = 0.01  # init="origin": the scale (times init_scale) of the nudge off a critical point at 0

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "lbfgs": torch.optim.LBFGS,
}


@dataclass
class InversionResult:
    """What ``invert`` found.

    ``losses[t, i]`` is example i's loss at step t (row 0 before any update), so ``losses.mean(1)``
    is the loss curve the paper plots. ``z`` is None for the baseline. ``snapshots[t]`` is x at step t
    for each step asked for with ``snapshots=``. ``evaluations`` counts F's evaluations per example
    (steps + 1, plus one forward pass per start candidate); ``start`` is each example's chosen start
    (0: Θ's, k: the k-th candidate), None without candidates. ``elapsed[t]`` is the wall-clock seconds from the
    first update to the end of step t (``elapsed[0] = 0``): time-to-quality without assuming equal steps.
    """

    x: torch.Tensor
    z: torch.Tensor | None
    losses: torch.Tensor
    seconds_per_step: float
    y_hat: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    evaluations: int = 0
    start: torch.Tensor | None = None
    elapsed: torch.Tensor | None = None


def resolve_optimizer(optimizer: str | type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """An optimizer class from its name (see ``OPTIMIZERS``) or any ``torch.optim.Optimizer`` class."""
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]
    raise LandformError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)} "
                        "or a torch.optim.Optimizer class")


def initial_variable(init: Init, shape: tuple[int, ...], *, init_scale: float = 1.0, seed: int = 0,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The starting point of the optimized variable: zeros (the paper's z0; also "origin", which ``invert``
    then nudges off a critical point), seeded Gaussian, or a tensor."""
    if isinstance(init, torch.Tensor):
        if tuple(init.shape) != tuple(shape):
            raise LandformError(f"init tensor has shape {tuple(init.shape)}, expected {tuple(shape)}")
        return init.detach().to(device=device, dtype=dtype).clone()
    if init in ("zeros", "origin"):
        return torch.zeros(shape, device=device, dtype=dtype)
    if init == "gaussian":
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * init_scale).to(device, dtype)
    raise LandformError(f"unknown init {init!r}; use 'zeros', 'origin', 'gaussian' or a tensor")


def check_loss_values(values: torch.Tensor, batch: int) -> torch.Tensor:
    """The loss must give one value per example: a tensor of shape [batch]."""
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (batch,):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise LandformError(f"the loss must return one value per example (shape [{batch}]), got {got}")
    return values


def check_forward_output(y_hat: torch.Tensor, y: torch.Tensor) -> None:
    """F's output and the observations must have the same shape."""
    if tuple(y_hat.shape) != tuple(y.shape):
        raise LandformError(f"observations have shape {tuple(y.shape)} but the forward model outputs "
                            f"{tuple(y_hat.shape)}")


def check_mapping_output(mapping: Mapping, x_shape: tuple[int, ...] | None) -> None:
    """Θ's output shape must be F's input shape."""
    if x_shape is not None and tuple(mapping.x_shape) != tuple(x_shape):
        raise LandformError(f"the mapping outputs x of shape {tuple(mapping.x_shape)} but the forward model "
                            f"takes {tuple(x_shape)}")


def resolve_base(base: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None, y: torch.Tensor,
                 device: torch.device) -> torch.Tensor | None:
    """``base`` as a tensor on ``device``: given directly, or computed from the observations."""
    if base is None:
        return None
    value = base(y) if callable(base) else base
    return value.detach().to(device)


def objective(forward: Forward, loss: Loss, x: torch.Tensor, y: torch.Tensor,
              mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example L(F(x), y) and F(x). Masked-out entries take the observation's value, so they add
    neither loss nor gradient."""
    try:
        y_hat = forward(x)
    except RuntimeError as error:
        raise LandformError(f"the forward model failed on x of shape {tuple(x.shape)} (does the mapping's "
                            f"output match F's input?): {str(error).splitlines()[0]}") from None
    check_forward_output(y_hat, y)
    compared = y_hat if mask is None else torch.where(mask, y_hat, y)
    return check_loss_values(loss(compared, y), y.shape[0]), y_hat


def _check_rate(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise LandformError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


class _Inputs(NamedTuple):
    """``invert``'s arguments as checked: the step sizes on z and on x, the optimizer class, the device, and the
    observations and the mask (broadcast to them) on it."""

    lr: float
    lr_x: float
    optimizer_class: type[torch.optim.Optimizer]
    device: torch.device
    y: torch.Tensor
    mask: torch.Tensor | None


def _check_inputs(y: torch.Tensor, mask: torch.Tensor | None, *, mode: str, steps: int, from_start: str,
                  mapping: Mapping | None, starts: Sequence[Start], lr: float, lr_x: float | None, warmup: int,
                  handoff: int, optimizer: str | type[torch.optim.Optimizer],
                  device: str | torch.device | None) -> _Inputs:
    """``invert``'s arguments, checked in one place with one-line errors, in the order the errors are reported."""
    if not isinstance(steps, int) or steps < 0:
        raise LandformError(f"steps must be an integer >= 0, got {steps}")
    if mode not in MODES:
        raise LandformError(f"unknown inference mode {mode!r}; use one of {', '.join(MODES)}")
    if from_start not in ("x", "both"):
        raise LandformError(f"from_start must be 'x' or 'both', got {from_start!r}")
    if mapping is None and (mode != "pure" or len(starts)):
        raise LandformError(f"mode {mode!r} and starts= need a mapping (Θ); without one invert is plain descent")
    lr = _check_rate("lr", lr)
    lr_x = lr if lr_x is None else _check_rate("lr_x", lr_x)
    if not (isinstance(warmup, int) and warmup >= 0):
        raise LandformError(f"warmup must be an integer >= 0, got {warmup}")
    if mode == "handoff" and not (isinstance(handoff, int) and handoff >= 0):
        raise LandformError(f"handoff must be an integer >= 0, got {handoff}")
    optimizer_class = resolve_optimizer(optimizer)
    device = torch.device(device) if device is not None else y.device
    y = y.detach().to(device)
    if y.dim() == 0 or y.shape[0] == 0:
        raise LandformError(f"no observations to invert (shape {tuple(y.shape)})")
    if not torch.isfinite(y).all():
        raise LandformError("the observations contain NaN or Inf")
    if mask is not None:
        try:
            mask = torch.broadcast_to(mask.to(device=device, dtype=torch.bool), y.shape)
        except RuntimeError:
            raise LandformError(f"a mask of shape {tuple(mask.shape)} does not fit observations of shape "
                                f"{tuple(y.shape)}") from None
        if not mask.reshape(y.shape[0], -1).any(dim=1).all():
            raise LandformError("the mask hides every entry of at least one observation")
    return _Inputs(lr, lr_x, optimizer_class, device, y, mask)


def _variable(mapping: Mapping | None, init: Init, *, batch: int, init_scale: float, seed: int,
              x_shape: tuple[int, ...] | None, base_value: torch.Tensor | None, device: torch.device,
              dtype: torch.dtype) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The optimized variable's starting point and the map from it to x: x itself (plus the base, if any)
    without a mapping, z and x = Θ(z) (or base + Θ(z)) with one."""
    if mapping is None:
        shape = _baseline_shape(init, x_shape, base_value)
        variable = initial_variable(init, (batch, *shape), init_scale=init_scale, seed=seed, device=device,
                                    dtype=dtype)
        return variable, (lambda v: v) if base_value is None else (lambda v: base_value + v)
    check_mapping_output(mapping, x_shape)
    mapping = mapping.to(device).eval()
    variable = initial_variable(init, (batch, mapping.z_dim), init_scale=init_scale, seed=seed, device=device,
                                dtype=dtype)
    if mapping.additive and base_value is None:
        raise LandformError("an additive mapping needs base= (x = base + Θ(z))")
    return variable, (lambda v: mapping(v, base_value)) if mapping.additive else mapping


@dataclass(frozen=True)
class DescentSettings:
    """How ``invert`` descends: ``mode`` (with a mapping, which variables move: ``landform.modes``), ``steps``,
    the ``optimizer`` (a name in ``OPTIMIZERS`` or a class, with ``optimizer_kwargs``) and its step size ``lr``
    on the variable (z with a mapping, else x) and ``lr_x`` on δ (default ``lr``), δ's ``warmup`` and the
    ``handoff`` step, what an example that starts at a candidate moves (``from_start``) and where the variable
    starts (``init``, scaled by ``init_scale``). Keep one and vary it with ``dataclasses.replace``."""

    mode: str = "pure"
    steps: int = 200
    optimizer: str | type[torch.optim.Optimizer] = "adam"
    lr: float = 0.1
    lr_x: float | None = None
    handoff: int = 10
    warmup: int = 0
    from_start: str = "x"
    init: Init = "zeros"
    init_scale: float = 1.0
    optimizer_kwargs: dict | None = None


def descent_settings(settings: DescentSettings | None, changes: dict[str, Any]) -> DescentSettings:
    """``settings`` (default ``DescentSettings()``) with the fields named in ``changes`` replaced; a name that
    is not a field is refused as Python refuses an unknown keyword."""
    unknown = sorted(set(changes) - {f.name for f in fields(DescentSettings)})
    if unknown:
        raise TypeError(f"invert() got unexpected keyword argument(s): {', '.join(unknown)}")
    return replace(settings or DescentSettings(), **changes)


def invert(forward: Forward, loss: Loss, y: torch.Tensor, settings: DescentSettings | None = None, *,
           mapping: Mapping | None = None, starts: Sequence[Start] = (), x_shape: tuple[int, ...] | None = None,
           base: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
           mask: torch.Tensor | None = None, seed: int = 0, device: str | torch.device | None = None,
           progress: bool = False, snapshots: tuple[int, ...] | list[int] = (), allow_nonfinite: bool = False,
           **changes: Any) -> InversionResult:
    """Invert ``forward`` for the batch of observations ``y`` by gradient descent, as ``settings`` says
    (``DescentSettings``; any of its fields may also be given as a keyword, ``invert(F, L, y, lr=0.05)``,
    which replaces that field). With a mapping the default mode is the paper's Eq. 3 (``"pure"``), while
    ``landform invert --mapping`` defaults to ``"residual"``; a ``Landscape`` inverts with its own tuned
    settings (``Landscape.invert``).

    Without ``mapping`` the variable is x itself (Eq. 1, the baseline; ``x = base + v`` when a base is
    given). With one, it is z and ``x = mapping(z)`` (Eq. 3, ``mode="pure"``), or one of the never-worse
    modes of the module docstring (``lr_x`` is the step size on x, default ``lr``). The loss is summed over
    the batch, so with an element-wise optimizer (Adam, SGD, ...) every example takes its own steps and its
    result does not depend on the rest of the batch. ``seed`` fixes the Gaussian init and any randomness
    inside the forward model or the loss. ``snapshots`` lists steps at which to keep x. An example that
    starts at one of ``starts`` is refined by descent on x alone (``from_start="x"``) or keeps moving z
    too (``"both"``, for candidates near Θ's own start). A loss that turns non-finite is an error unless
    ``allow_nonfinite`` (learning-rate sweeps). ``init="origin"`` starts at 0 like ``"zeros"``, except for
    examples whose gradient there is exactly zero (0 is a critical point: |Ax|², a bias-free ReLU net), where
    descent would never move: those start from a seeded Gaussian of scale ``ORIGIN_JITTER * init_scale``
    (one more F evaluation, counted). The baselines of ``compare`` and the recipe start there.
    """
    settings = descent_settings(settings, changes)
    mode, steps, lr, lr_x, handoff, warmup = (settings.mode, settings.steps, settings.lr, settings.lr_x,
                                              settings.handoff, settings.warmup)
    from_start, init, init_scale = settings.from_start, settings.init, settings.init_scale
    lr, lr_x, optimizer_class, device, y, mask = _check_inputs(
        y, mask, mode=mode, steps=steps, from_start=from_start, mapping=mapping, starts=starts, lr=lr, lr_x=lr_x,
        warmup=warmup, handoff=handoff, optimizer=settings.optimizer, device=device)
    batch = y.shape[0]
    if isinstance(forward, torch.nn.Module):
        forward = forward.to(device)
    base_value = resolve_base(base, y, device)
    variable, on_manifold = _variable(mapping, init, batch=batch, init_scale=init_scale, seed=seed, x_shape=x_shape,
                                      base_value=base_value, device=device, dtype=y.dtype)

    chosen, evaluations = None, steps + 1
    if isinstance(init, str) and init == "origin":
        variable = _off_critical_point(forward, loss, y, mask, on_manifold, variable,
                                       ORIGIN_JITTER * init_scale, seed)
        evaluations += 1
    with torch.no_grad():
        start_x = on_manifold(variable)
    delta = torch.zeros_like(start_x) if MODES[mode].offset or len(starts) > 0 else None
    z_frozen = torch.zeros(batch, dtype=torch.bool, device=device)
    if len(starts):
        chosen = _choose_starts(forward, loss, y, mask, start_x, starts)
        evaluations += len(starts)
        with torch.no_grad():
            for k, candidate in enumerate(starts, start=1):
                picked = chosen == k
                delta[picked] = _start_value(candidate, y, start_x)[picked] - start_x[picked]
        z_frozen = (chosen > 0) if from_start == "x" else torch.zeros_like(chosen, dtype=torch.bool)

    def to_x(v: torch.Tensor) -> torch.Tensor:
        return on_manifold(v) if delta is None else on_manifold(v) + delta

    variable.requires_grad_(True)
    groups = [{"params": [variable], "lr": lr}]
    if delta is not None:
        delta.requires_grad_(True)
        groups.append({"params": [delta], "lr": lr_x})
    opt = optimizer_class(groups, **(settings.optimizer_kwargs or {}))
    descent = Descent(optimizer=opt, delta=delta, lr_x=lr_x, warmup=warmup, handoff=handoff)
    before_step = MODES[mode].before_step
    losses = torch.empty(steps + 1, batch, dtype=y.dtype)
    elapsed_at = torch.zeros(steps + 1, dtype=torch.float64)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        state: dict[str, torch.Tensor] = {}
        kept: dict[int, torch.Tensor] = {}
        # Which examples move δ at this step: all of them where the mode says so, else only those that start
        # at a candidate.
        delta_moves = {"all": False}

        def closure() -> torch.Tensor:
            values, _ = objective(forward, loss, to_x(variable), y, mask)
            state.setdefault("values", values.detach())
            total = values.sum()
            # Only the variables' gradients: Θ's and F's parameters get no .grad and cost no work.
            grads = torch.autograd.grad(total, [variable] if delta is None else [variable, delta])
            variable.grad = grads[0].masked_fill(z_frozen.view(-1, *[1] * (variable.dim() - 1)), 0)
            if delta is not None:
                still = torch.zeros_like(z_frozen) if delta_moves["all"] else ~z_frozen
                delta.grad = grads[1].masked_fill(still.view(-1, *[1] * (delta.dim() - 1)), 0)
            return total

        start = time.perf_counter()
        for step in progress_bar(range(steps), enabled=progress, desc="invert", leave=False):
            delta_moves["all"] = before_step(step, descent)
            state.clear()
            if step in snapshots:
                with torch.no_grad():
                    kept[step] = to_x(variable).detach().clone()
            opt.step(closure)
            losses[step] = state["values"].cpu()
            elapsed_at[step + 1] = time.perf_counter() - start
            if not allow_nonfinite and not torch.isfinite(losses[step]).all():
                raise LandformError(f"the loss became non-finite at step {step} (NaN or Inf from the forward "
                                    f"model or the loss; try a smaller learning rate)")
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            x = to_x(variable)
            final, y_hat = objective(forward, loss, x, y, mask)
        losses[steps] = final.cpu()
        if not allow_nonfinite and not torch.isfinite(losses[steps]).all():
            raise LandformError(f"the loss became non-finite at step {steps} (try a smaller learning rate)")
        if steps in snapshots:
            kept[steps] = x.detach().clone()
    return InversionResult(x=x.detach(), z=None if mapping is None else variable.detach(), losses=losses,
                           seconds_per_step=elapsed / max(steps, 1), y_hat=y_hat.detach(), snapshots=kept,
                           evaluations=evaluations, start=None if chosen is None else chosen.cpu(),
                           elapsed=elapsed_at)


def _start_value(candidate: Start, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    value = candidate(y) if callable(candidate) else candidate
    value = torch.as_tensor(value).detach().to(device=like.device, dtype=like.dtype)
    try:
        return torch.broadcast_to(value, like.shape)
    except RuntimeError:
        raise LandformError(f"a start candidate of shape {tuple(value.shape)} does not fit x of shape "
                            f"{tuple(like.shape)}") from None


def _choose_starts(forward: Forward, loss: Loss, y: torch.Tensor, mask: torch.Tensor | None,
                   landscape_start: torch.Tensor, starts: Sequence[Start]) -> torch.Tensor:
    """Per example, the index of the best start (0: Θ's own, k: the k-th candidate), one F pass each."""
    with torch.no_grad():
        values = [objective(forward, loss, landscape_start, y, mask)[0]]
        values += [objective(forward, loss, _start_value(c, y, landscape_start), y, mask)[0] for c in starts]
    table = torch.nan_to_num(torch.stack(values), nan=float("inf"))
    return table.argmin(dim=0)


def _off_critical_point(forward: Forward, loss: Loss, y: torch.Tensor, mask: torch.Tensor | None,
                        to_x: Callable[[torch.Tensor], torch.Tensor], variable: torch.Tensor, scale: float,
                        seed: int) -> torch.Tensor:
    """``variable``, with the rows whose loss gradient is exactly zero moved to a seeded Gaussian of ``scale``."""
    probe = variable.detach().clone().requires_grad_(True)
    with torch.random.fork_rng(devices=[probe.device] if probe.device.type == "cuda" else []):
        torch.manual_seed(seed)  # a random F (dropout, noise) leaves the caller's random state as it was
        values, _ = objective(forward, loss, to_x(probe), y, mask)
        (grad,) = torch.autograd.grad(values.sum(), probe, allow_unused=True)
    stuck = torch.ones(probe.shape[0], dtype=torch.bool, device=probe.device) if grad is None \
        else grad.flatten(1).abs().amax(dim=1) == 0
    if not stuck.any():
        return variable
    generator = torch.Generator().manual_seed(seed)
    jitter = (torch.randn(variable.shape, generator=generator, dtype=torch.float64) * scale).to(variable)
    return torch.where(stuck.view(-1, *[1] * (variable.dim() - 1)), variable + jitter, variable).detach()


def _baseline_shape(init: Init, x_shape: tuple[int, ...] | None,
                    base_value: torch.Tensor | None) -> tuple[int, ...]:
    if isinstance(init, torch.Tensor):
        return tuple(init.shape[1:])
    if x_shape is not None:
        return tuple(x_shape)
    if base_value is not None:
        return tuple(base_value.shape[1:])
    raise LandformError("the baseline needs x_shape= (or an init tensor) to know the shape of x")
