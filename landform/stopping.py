"""Early stopping on a held-out loss, shared by the learned start's and the learned steps' training."""

from __future__ import annotations

import torch
from torch import nn


class EarlyStopping:
    """Keeps ``module``'s best weights on a held-out loss. A check that does not improve on the best by
    ``tolerance`` (relative) is a stall: the optimizer's step size halves every ``halve_every`` stalls, and after
    ``patience`` stalls the training should stop (``exhausted``); ``restore`` puts the best weights back."""

    def __init__(self, module: nn.Module, value: float, *, tolerance: float, patience: int,
                 halve_every: int = 1) -> None:
        self.module, self.tolerance, self.patience, self.halve_every = module, tolerance, patience, halve_every
        self.best, self.state, self.stalls = value, copy_state(module), 0

    def check(self, value: float, optimizer: torch.optim.Optimizer) -> bool:
        """Record a held-out value; True where it is the new best."""
        if value < self.best * (1 - self.tolerance):
            self.best, self.state, self.stalls = value, copy_state(self.module), 0
            return True
        self.stalls += 1
        if self.stalls % self.halve_every == 0:
            for group in optimizer.param_groups:
                group["lr"] *= 0.5
        return False

    @property
    def exhausted(self) -> bool:
        return self.stalls >= self.patience

    def reason_to_stop(self, out_of_time: bool) -> str | None:
        """"plateau" after ``patience`` stalls, "time" when the budget is spent, else None (go on)."""
        return "plateau" if self.exhausted else "time" if out_of_time else None

    def restore(self) -> None:
        self.module.load_state_dict(self.state)


def copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state."""
    return {key: value.detach().clone() for key, value in module.state_dict().items()}
