"""A fair comparison of the learned landscape with the baseline.

The baseline gets the same optimizer family, its learning rate chosen by a sweep on held-out
observations (the paper's §7.2 protocol), and the same number of F evaluations (steps + 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from landform.inference import InversionResult, invert
from landform.mapping import Mapping
from landform.metrics import as_curve, improvement_at, loss_at, speedup_at, step_reached
from landform.problem import Problem

SWEEP_LRS = (0.5, 0.1, 0.05, 0.01, 0.001)
REPORT_STEPS = (0, 1, 2, 5, 10, 20, 50, 200)


def sweep_lr(forward, loss, y_val: torch.Tensor, *, lrs: Sequence[float] = SWEEP_LRS, steps: int = 200,
             **invert_kwargs) -> tuple[float, dict[float, dict[str, float]]]:
    """The baseline learning rate with the lowest mean loss after ``steps`` on ``y_val``.

    Returns the best rate and, for every rate, its mean loss at step 20 and at the last step, so a
    report can show the whole sweep.
    """
    results: dict[float, dict[str, float]] = {}
    for lr in lrs:
        curve = invert(forward, loss, y_val, lr=lr, steps=steps, **invert_kwargs).losses.mean(dim=1)
        finite = torch.nan_to_num(curve, nan=float("inf"))
        results[lr] = {"step_20": float(finite[min(20, steps)]), "final": float(finite[-1])}
    best = min(results, key=lambda lr: results[lr]["final"])
    return best, results


def summarize(baseline: torch.Tensor, landscape: torch.Tensor, *, steps: Sequence[int] = REPORT_STEPS,
              seconds_per_step: dict[str, float] | None = None, extra: dict | None = None) -> dict:
    """The summary block every report shares: losses at ``steps``, speedup at 20, improvement at the end.

    ``baseline`` and ``landscape`` are [steps + 1, batch] per-example losses or 1-D mean curves.
    """
    b, lnd = as_curve(baseline), as_curve(landscape)
    last = len(b) - 1
    shown = [s for s in steps if s <= last]
    block = {
        "steps": shown,
        "baseline": loss_at(b, shown),
        "landscape": loss_at(lnd, shown),
        "speedup_at_20": speedup_at(b, lnd, min(20, last)),
        "improvement_at_200": improvement_at(b, lnd, min(200, last)),
        "final_step": min(200, last),
        "landscape_steps_to_baseline_final": step_reached(lnd, float(b[last])),
        "seconds_per_step": seconds_per_step or {},
        "count": int(baseline.shape[1]) if torch.as_tensor(baseline).dim() == 2 else None,
    }
    block.update(extra or {})
    return block


@dataclass
class Comparison:
    """Both inversions of the same observations, and their summary."""

    baseline: InversionResult
    landscape: InversionResult
    summary: dict


def compare(problem: Problem, mapping: Mapping, y: torch.Tensor, *, y_val: torch.Tensor | None = None,
            steps: int = 200, optimizer: str = "adam", lr_z: float = 0.1, lrs: Sequence[float] = SWEEP_LRS,
            baseline_init: str = "zeros", landscape_init: str = "zeros", seed: int = 0,
            device: str | None = None, progress: bool = False) -> Comparison:
    """Invert ``y`` in X (baseline, learning rate swept on ``y_val``) and in Z with ``mapping``."""
    common = {"optimizer": optimizer, "x_shape": problem.x_shape, "base": problem.base, "seed": seed,
              "device": device}
    if y_val is not None and len(lrs) > 1:
        best_lr, sweep = sweep_lr(problem.forward, problem.loss, y_val, lrs=lrs, steps=steps,
                                  init=baseline_init, **common)
    else:
        best_lr, sweep = lrs[0], {}
    baseline = invert(problem.forward, problem.loss, y, steps=steps, lr=best_lr, init=baseline_init,
                      progress=progress, **common)
    landscape = invert(problem.forward, problem.loss, y, mapping=mapping, steps=steps, lr=lr_z,
                       init=landscape_init, progress=progress, **common)
    summary = summarize(baseline.losses, landscape.losses,
                        seconds_per_step={"baseline": baseline.seconds_per_step,
                                          "landscape": landscape.seconds_per_step},
                        extra={"baseline_lr": best_lr, "landscape_lr": lr_z, "optimizer": optimizer,
                               "lr_sweep": {str(k): v for k, v in sweep.items()}})
    return Comparison(baseline=baseline, landscape=landscape, summary=summary)
