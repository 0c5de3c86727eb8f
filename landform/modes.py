"""The inference modes with a mapping Θ, in one registry that ``landform.invert`` dispatches to.

Every list of modes (``invert``'s check, the command line's ``--mode`` choices, the documentation's test)
reads ``MODES``, so a mode added here is offered everywhere. This module does not import torch, so the
command line can list the modes while it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_MODE = "residual"  # the command line's and the reports' mode; ``invert`` itself defaults to "pure"


@dataclass
class Descent:
    """What a mode may change between steps: the optimizer (group 0 moves z, group 1 moves δ, if any), δ, and
    the settings that schedule them (δ's step size ``lr_x``, its ``warmup`` steps, the ``handoff`` step)."""

    optimizer: torch.optim.Optimizer
    delta: torch.Tensor | None
    lr_x: float
    warmup: int
    handoff: int


@dataclass(frozen=True)
class Mode:
    """One inference mode. ``offset``: x = Θ(z) + δ on every example (without it, δ exists only for the examples
    that start at a candidate). ``before_step(step, descent)`` applies the mode's schedule before a step and
    says whether δ then moves on every example (else only on those that start at a candidate). ``help`` is the
    one-line description the command line shows."""

    offset: bool
    before_step: Callable[[int, Descent], bool]
    help: str


def _pure(step: int, descent: Descent) -> bool:
    """The paper's Eq. 3: z alone moves."""
    return False


def _residual(step: int, descent: Descent) -> bool:
    """z and δ move together, δ's step size ramped up linearly over ``warmup`` steps."""
    if descent.warmup and descent.delta is not None:
        descent.optimizer.param_groups[1]["lr"] = descent.lr_x * min(1.0, step / descent.warmup)
    return True


def _handoff(step: int, descent: Descent) -> bool:
    """Eq. 3 for ``handoff`` steps; from then on z stops and x = Θ(z_k) + δ continues with a fresh optimizer."""
    if step == descent.handoff and descent.handoff > 0:
        descent.optimizer.param_groups[0]["lr"] = 0.0
        descent.optimizer.state[descent.delta] = {}
    return step >= descent.handoff


MODES: dict[str, Mode] = {
    "pure": Mode(offset=False, before_step=_pure, help="the paper's Eq. 3: x = Θ(z), z alone moves"),
    "residual": Mode(offset=True, before_step=_residual,
                     help="x = Θ(z) + δ, z and δ together: never stuck on Θ's image"),
    "handoff": Mode(offset=True, before_step=_handoff, help="Eq. 3 for a few steps, then descent on x"),
}
