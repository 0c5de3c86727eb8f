"""Optimization-based inference: Eq. 1 (optimize x) and Eq. 3 (optimize z, x = Θ(z))."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from landform.errors import LandformError
from landform.mapping import Mapping

Forward = Callable[[torch.Tensor], torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Init = str | torch.Tensor

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
    for each step asked for with ``snapshots=``.
    """

    x: torch.Tensor
    z: torch.Tensor | None
    losses: torch.Tensor
    seconds_per_step: float
    y_hat: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


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
    """The starting point of the optimized variable: zeros (the paper's z0), seeded Gaussian, or a tensor."""
    if isinstance(init, torch.Tensor):
        if tuple(init.shape) != tuple(shape):
            raise LandformError(f"init tensor has shape {tuple(init.shape)}, expected {tuple(shape)}")
        return init.detach().to(device=device, dtype=dtype).clone()
    if init == "zeros":
        return torch.zeros(shape, device=device, dtype=dtype)
    if init == "gaussian":
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(shape, generator=generator, dtype=torch.float64) * init_scale).to(device, dtype)
    raise LandformError(f"unknown init {init!r}; use 'zeros', 'gaussian' or a tensor")


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


def invert(forward: Forward, loss: Loss, y: torch.Tensor, *, mapping: Mapping | None = None,
           steps: int = 200, optimizer: str | type[torch.optim.Optimizer] = "adam", lr: float = 0.1,
           init: Init = "zeros", init_scale: float = 1.0, x_shape: tuple[int, ...] | None = None,
           base: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
           mask: torch.Tensor | None = None, seed: int = 0, device: str | torch.device | None = None,
           progress: bool = False, optimizer_kwargs: dict | None = None,
           snapshots: tuple[int, ...] | list[int] = ()) -> InversionResult:
    """Invert ``forward`` for the batch of observations ``y`` by gradient descent.

    Without ``mapping`` the variable is x itself (Eq. 1, the baseline; ``x = base + v`` when a base is
    given). With one, it is z and ``x = mapping(z)`` (Eq. 3). The loss is summed over the batch, so with
    an element-wise optimizer (Adam, SGD, ...) every example takes its own steps and its result does not
    depend on the rest of the batch. ``seed`` fixes the Gaussian init and any randomness inside the
    forward model or the loss. ``snapshots`` lists steps at which to keep x (to show the optimization).
    """
    if steps < 0:
        raise LandformError(f"steps must be >= 0, got {steps}")
    optimizer_class = resolve_optimizer(optimizer)
    device = torch.device(device) if device is not None else y.device
    y = y.detach().to(device)
    batch = y.shape[0]
    if mask is not None:
        mask = torch.broadcast_to(mask.to(device=device, dtype=torch.bool), y.shape)
        if not mask.reshape(batch, -1).any(dim=1).all():
            raise LandformError("the mask hides every entry of at least one observation")
    if isinstance(forward, torch.nn.Module):
        forward = forward.to(device)
    base_value = resolve_base(base, y, device)

    if mapping is None:
        shape = _baseline_shape(init, x_shape, base_value)
        variable = initial_variable(init, (batch, *shape), init_scale=init_scale, seed=seed, device=device,
                                    dtype=y.dtype)

        def to_x(v: torch.Tensor) -> torch.Tensor:
            return v if base_value is None else base_value + v
    else:
        check_mapping_output(mapping, x_shape)
        mapping = mapping.to(device).eval()
        variable = initial_variable(init, (batch, mapping.z_dim), init_scale=init_scale, seed=seed,
                                    device=device, dtype=y.dtype)
        if mapping.additive and base_value is None:
            raise LandformError("an additive mapping needs base= (x = base + Θ(z))")

        def to_x(v: torch.Tensor) -> torch.Tensor:
            return mapping(v, base_value) if mapping.additive else mapping(v)

    variable.requires_grad_(True)
    opt = optimizer_class([variable], lr=lr, **(optimizer_kwargs or {}))
    losses = torch.empty(steps + 1, batch, dtype=y.dtype)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        state: dict[str, torch.Tensor] = {}
        kept: dict[int, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            values, _ = objective(forward, loss, to_x(variable), y, mask)
            state.setdefault("values", values.detach())
            total = values.sum()
            # Only the variable's gradient: Θ's and F's parameters get no .grad and cost no work.
            (variable.grad,) = torch.autograd.grad(total, [variable])
            return total

        start = time.perf_counter()
        for step in tqdm(range(steps), disable=not progress, desc="invert", leave=False, delay=1.0):
            state.clear()
            if step in snapshots:
                with torch.no_grad():
                    kept[step] = to_x(variable).detach().clone()
            opt.step(closure)
            losses[step] = state["values"].cpu()
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            x = to_x(variable)
            final, y_hat = objective(forward, loss, x, y, mask)
        losses[steps] = final.cpu()
        if steps in snapshots:
            kept[steps] = x.detach().clone()
    return InversionResult(x=x.detach(), z=None if mapping is None else variable.detach(), losses=losses,
                           seconds_per_step=elapsed / max(steps, 1), y_hat=y_hat.detach(), snapshots=kept)


def _baseline_shape(init: Init, x_shape: tuple[int, ...] | None,
                    base_value: torch.Tensor | None) -> tuple[int, ...]:
    if isinstance(init, torch.Tensor):
        return tuple(init.shape[1:])
    if x_shape is not None:
        return tuple(x_shape)
    if base_value is not None:
        return tuple(base_value.shape[1:])
    raise LandformError("the baseline needs x_shape= (or an init tensor) to know the shape of x")
