"""A clock-free cost model: the work of a computation counted, not timed.

With a time budget the recipe sizes its models and ranks the tuned settings by measured seconds; without one
(``seconds=inf``) a seed must reproduce the fit, so those decisions use ``work``: the multiply-adds of matrix
products and convolutions (forward and backward, as ``torch.utils.flop_counter`` counts them) plus the elements
of every tensor each operation returns (the elementwise work that FLOP counting leaves out: a renderer may have
no matrix product at all). The same computation always counts the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

COST_MODELS = ("seconds", "work")  # what the recipe's sizing and tuning compare: measured time, or counted work


class _Counter(TorchDispatchMode):
    """Counts, for every operation run under it (backward passes included), its FLOPs and its output's elements.
    (``FlopCounterMode`` itself cannot count a ``torch.autograd.grad``: its module hooks refuse it.)"""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in flop_registry:
            self.total += int(flop_registry[packet](*args, **kwargs, out_val=out))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.total += value.numel()
        return out


def work(call: Callable[[], Any]) -> float:
    """The work of ``call()`` (its FLOPs plus the elements its operations return): a count, the same on every
    machine and under any load."""
    counter = _Counter()
    with counter:
        call()
    return float(counter.total)


def work_per_pass(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, *,
                  backward: bool = True) -> float:
    """The work of one pass of ``function`` over ``inputs``: forward + backward with respect to the input, or the
    forward alone (what ``recipe.seconds_per_pass`` times, counted instead)."""
    x = inputs.detach().clone().requires_grad_(backward)

    def run() -> None:
        if backward:
            torch.autograd.grad(function(x).float().sum(), x)
        else:
            with torch.no_grad():
                function(x)

    return work(run)
