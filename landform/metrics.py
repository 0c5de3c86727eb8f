"""Numbers that compare loss curves (the paper's Tables 2, 4-6 and Fig. 3).

A curve is a 1-D tensor (or sequence) of mean loss per step, index 0 before any update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Curve = torch.Tensor | Sequence[float]


def as_curve(curve: Curve) -> torch.Tensor:
    values = torch.as_tensor(curve, dtype=torch.float64)
    return values.mean(dim=1) if values.dim() == 2 else values


def loss_at(curve: Curve, steps: Sequence[int]) -> list[float]:
    """The curve's value at each of ``steps`` (steps past the end are an error, not a guess)."""
    values = as_curve(curve)
    if max(steps) >= len(values):
        raise ValueError(f"step {max(steps)} is past the curve's last step {len(values) - 1}")
    return [float(values[s]) for s in steps]


def steps_to_reach(curve: Curve, target: float) -> float:
    """The first step whose loss is at most ``target``; ``inf`` if the curve never gets there."""
    values = as_curve(curve)
    reached = torch.nonzero(values <= target)
    return float(reached[0, 0]) if len(reached) else math.inf


def step_reached(curve: Curve, target: float) -> int | None:
    """``steps_to_reach`` for reports: the step as an int, or None (JSON null) if never reached."""
    step = steps_to_reach(curve, target)
    return None if math.isinf(step) else int(step)


def speedup_at(baseline: Curve, landscape: Curve, k: int) -> float:
    """(steps the baseline needs to reach its own loss at step k) / (steps the landscape needs).

    Either curve already there at step 0 counts as one step (a baseline whose step-k loss lies above its
    start, as a large step size's can, gives 1 to a landscape there at once, not 0), so the speedup is at
    most k; ``0.0`` means the landscape never reaches the baseline's step-k loss within its curve.
    """
    target = loss_at(baseline, [k])[0]
    baseline_steps = steps_to_reach(baseline, target)
    landscape_steps = steps_to_reach(landscape, target)
    if math.isinf(landscape_steps):
        return 0.0
    return max(baseline_steps, 1.0) / max(landscape_steps, 1.0)


def improvement_at(baseline: Curve, landscape: Curve, k: int) -> float:
    """Relative improvement at step k: 1 - landscape / baseline (Tables 4-6)."""
    b, lnd = loss_at(baseline, [k])[0], loss_at(landscape, [k])[0]
    return 1.0 - lnd / b if b != 0 else 0.0


def bootstrap_ci(statistic, *per_example: torch.Tensor, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float | None]:
    """A percentile bootstrap interval over examples for ``statistic(*mean_curves)``.

    Each of ``per_example`` is a [steps + 1, n] loss table over the same n examples; every resample draws
    n example indices with replacement and applies the statistic to the resampled mean curves. Resamples
    where the statistic is not finite (never reached) count as +inf, so an interval may be open above
    (``None``).
    """
    n = per_example[0].shape[1]
    rng = torch.Generator().manual_seed(seed)
    index = torch.randint(n, (resamples, n), generator=rng)
    tables = [torch.as_tensor(t, dtype=torch.float64) for t in per_example]
    means = [t[:, index].mean(dim=2).T for t in tables]  # [resamples, steps + 1] each
    values = torch.tensor([statistic(*(m[r] for m in means)) for r in range(resamples)], dtype=torch.float64)
    # Never reached (inf or NaN) becomes the largest float: torch.quantile turns inf into NaN when it
    # interpolates. An end at, or interpolated toward, that value is open (None).
    values = torch.nan_to_num(values, nan=_NEVER, posinf=_NEVER)
    alpha = (1 - level) / 2
    low, high = torch.quantile(values, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return [None if not math.isfinite(v) or v > _NEVER / 1e8 else v for v in (low, high)]


_NEVER = torch.finfo(torch.float64).max


def wallclock_speedup(baseline: Curve, ours: Curve, seconds: tuple[float, float], k: int = 20,
                      start: float = 0.0) -> float:
    """(seconds the baseline needs to reach its own step-k loss) / (seconds ours needs to reach it: its
    ``start`` (a learned start's pass) plus its steps, at least one), at ``seconds`` = (baseline's, ours) per
    step; 0 if ours never gets there. The baseline's steps count at least one, as in ``speedup_at``."""
    b, o = as_curve(baseline), as_curve(ours)
    target = float(b[k])
    own = steps_to_reach(o, target)
    if math.isinf(own):
        return 0.0
    return max(steps_to_reach(b, target), 1.0) * seconds[0] / (max(own, 1.0) * seconds[1] + start)


def seconds_to_reach(curve: Curve, target: float, seconds_per_step: float) -> float | None:
    """Wall-clock time-to-quality: steps to reach ``target`` times the seconds one step costs (None: never)."""
    step = steps_to_reach(curve, target)
    return None if math.isinf(step) else step * seconds_per_step


def max_rise(curve: Curve) -> float:
    """The largest step-over-step relative rise of the mean loss (0 for a curve that never rises): an
    overshoot, such as a first step that doubles the loss from a good start."""
    values = as_curve(curve)
    if len(values) < 2:
        return 0.0
    ratios = values[1:] / values[:-1].clamp_min(1e-300)
    return max(0.0, float(torch.nan_to_num(ratios, nan=math.inf).max()) - 1.0)


def seconds_at(elapsed: Curve, step: float, start: float = 0.0) -> float:
    """Wall-clock seconds to ``step`` on a cumulative time curve (``elapsed[0] = 0``), plus a start's pass;
    ``inf`` for a step never reached."""
    if math.isinf(step):
        return math.inf
    return start + float(as_curve(elapsed)[int(step)])


def speedup_to_answer(baseline: Curve, ours: Curve, baseline_elapsed: Curve, ours_elapsed: Curve, *,
                      start: float = 0.0, tolerance: float = 0.01) -> float:
    """(the baseline's seconds to within ``tolerance`` of its own last loss) / (ours to the same loss, its start's
    pass and any learned steps included), uncapped; 0 if ours never gets there. The baseline's time counts at
    least its first step."""
    b = as_curve(baseline)
    target = float(b[-1]) * (1 + tolerance)
    mine = seconds_at(ours_elapsed, steps_to_reach(ours, target), start)
    if math.isinf(mine):
        return 0.0
    theirs = seconds_at(baseline_elapsed, max(steps_to_reach(b, target), 1.0))
    return theirs / max(mine, 1e-12)
