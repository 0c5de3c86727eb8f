"""The summary block every report shares: the methods' mean loss curves and each method against the reference.

``method_stats`` compares a method's per-example losses with the reference's (speedups, steps and seconds to
the reference's losses) and ``answer_stats`` its time to the answer (within ``ANSWER_TOLERANCE`` of the
reference's step-200 loss), with 95% bootstrap intervals over examples; ``summary_fields`` computes them for
every method, and ``Summary`` (``ComparisonSummary`` for ``compare``, which adds the step sizes it used) holds
them typed, read and saved as the flat JSON block reports have always written.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

import torch

from landform.metrics import (
    as_curve,
    bootstrap_ci,
    improvement_at,
    loss_at,
    max_rise,
    seconds_at,
    seconds_to_reach,
    speedup_at,
    speedup_to_answer,
    step_reached,
    steps_to_reach,
    wallclock_speedup,
)

ANSWER_TOLERANCE = 0.01  # "within 1% of the answer": of the baseline's step-200 loss


def _time_curve(elapsed: torch.Tensor | None, seconds_per_step: float | None, length: int) -> torch.Tensor | None:
    """A method's cumulative seconds per step: as measured, or ``seconds_per_step`` times the step."""
    if elapsed is not None and len(elapsed) == length:
        return torch.as_tensor(elapsed, dtype=torch.float64)
    if seconds_per_step is None:
        return None
    return torch.arange(length, dtype=torch.float64) * seconds_per_step


def answer_stats(reference: torch.Tensor, losses: torch.Tensor, *, reference_elapsed: torch.Tensor | None,
                 elapsed: torch.Tensor | None, start_seconds: float = 0.0, bootstrap: int = 1000,
                 seed: int = 0) -> dict:
    """Time to the answer (the reference's loss at its last step, at most 200): steps to it and to within
    ANSWER_TOLERANCE of it, the seconds they take (the start's pass and learned steps included), the uncapped
    wall-clock speedup to within ANSWER_TOLERANCE of it against the reference's own time to it, and the
    largest step-over-step rise; with 95% bootstrap intervals over examples."""
    ref, own = torch.as_tensor(reference, dtype=torch.float64), torch.as_tensor(losses, dtype=torch.float64)
    last = min(200, ref.shape[0] - 1, own.shape[0] - 1)
    ref, own = ref[: last + 1], own[: last + 1]
    ref_curve, own_curve = as_curve(ref), as_curve(own)
    target = float(ref_curve[last])
    stats: dict = {"steps_to_answer": step_reached(own_curve, target),
                   "steps_to_answer_1pct": step_reached(own_curve, target * (1 + ANSWER_TOLERANCE)),
                   "max_rise": max_rise(own_curve)}
    if elapsed is None or reference_elapsed is None:
        return stats
    mine, theirs = elapsed[: last + 1], reference_elapsed[: last + 1]
    for key, goal in (("seconds_to_answer", target), ("seconds_to_answer_1pct", target * (1 + ANSWER_TOLERANCE))):
        value = seconds_at(mine, steps_to_reach(own_curve, goal), start_seconds)
        stats[key] = None if value == float("inf") else value
    speedup = functools.partial(speedup_to_answer, baseline_elapsed=theirs, ours_elapsed=mine, start=start_seconds,
                                tolerance=ANSWER_TOLERANCE)
    stats["speedup_to_answer"] = speedup(ref_curve, own_curve)
    if bootstrap and own.dim() == 2 and own.shape[1] > 1:
        stats["steps_to_answer_1pct_ci95"] = bootstrap_ci(
            lambda b, o: steps_to_reach(o, float(b[-1]) * (1 + ANSWER_TOLERANCE)), ref, own, resamples=bootstrap,
            seed=seed)
        stats["speedup_to_answer_ci95"] = bootstrap_ci(speedup, ref, own, resamples=bootstrap, seed=seed)
        stats["max_rise_ci95"] = bootstrap_ci(lambda b, o: max_rise(o), ref, own, resamples=bootstrap, seed=seed)
    return stats


def method_stats(reference: torch.Tensor, losses: torch.Tensor, *, seconds_per_step: float | None = None,
                 reference_seconds: float | None = None, start_seconds: float = 0.0, bootstrap: int = 1000,
                 seed: int = 0, elapsed: torch.Tensor | None = None,
                 reference_elapsed: torch.Tensor | None = None) -> dict:
    """How a method's per-example losses compare with the reference's ([steps + 1, n] tables of the same
    examples): speedup at 20, improvement at the end, steps (and seconds) to reach the reference's step-20
    and final loss, and the wall-clock speedup to the reference's step-20 loss, each headline with a 95%
    bootstrap interval over examples. ``start_seconds`` (a learned start's pass) is added to every time."""
    ref, own = torch.as_tensor(reference, dtype=torch.float64), torch.as_tensor(losses, dtype=torch.float64)
    last = min(200, own.shape[0] - 1)
    k = min(20, last)
    ref_curve, own_curve = as_curve(ref), as_curve(own)
    stats = {"speedup_at_20": speedup_at(ref_curve, own_curve, k),
             "improvement_at_200": improvement_at(ref_curve, own_curve, last),
             "steps_to_baseline_20": step_reached(own_curve, float(ref_curve[k])),
             "steps_to_baseline_200": step_reached(own_curve, float(ref_curve[last]))}
    if seconds_per_step is not None:
        for key, target in (("seconds_to_baseline_20", ref_curve[k]), ("seconds_to_baseline_200", ref_curve[last])):
            seconds = seconds_to_reach(own_curve, float(target), seconds_per_step)
            stats[key] = None if seconds is None else seconds + start_seconds
        stats["start_seconds"] = start_seconds
        if reference_seconds is not None:
            pair = (reference_seconds, seconds_per_step)
            stats["wallclock_speedup_at_20"] = wallclock_speedup(ref_curve, own_curve, pair, k, start_seconds)
            stats["baseline_seconds_to_own_20"] = seconds_to_reach(ref_curve, float(ref_curve[k]),
                                                                   reference_seconds)
            stats["baseline_seconds_to_own_200"] = seconds_to_reach(ref_curve, float(ref_curve[last]),
                                                                    reference_seconds)
    if bootstrap and own.dim() == 2 and own.shape[1] > 1:
        stats["speedup_at_20_ci95"] = bootstrap_ci(lambda b, o: speedup_at(b, o, k), ref, own,
                                                   resamples=bootstrap, seed=seed)
        stats["improvement_at_200_ci95"] = bootstrap_ci(lambda b, o: improvement_at(b, o, last), ref, own,
                                                        resamples=bootstrap, seed=seed)
        stats["steps_to_baseline_200_ci95"] = bootstrap_ci(
            lambda b, o: steps_to_reach(o, float(b[last])), ref, own, resamples=bootstrap, seed=seed)
        if "wallclock_speedup_at_20" in stats:
            stats["wallclock_speedup_at_20_ci95"] = bootstrap_ci(
                functools.partial(wallclock_speedup, seconds=pair, k=k, start=start_seconds), ref, own,
                resamples=bootstrap, seed=seed)
    length = torch.as_tensor(losses).shape[0]
    stats.update(answer_stats(ref, own, reference_elapsed=_time_curve(reference_elapsed, reference_seconds,
                                                                      torch.as_tensor(reference).shape[0]),
                              elapsed=_time_curve(elapsed, seconds_per_step, length), start_seconds=start_seconds,
                              bootstrap=bootstrap, seed=seed))
    return stats


Stats = dict[str, Any]  # one method against the reference (``method_stats``): speedups, steps and seconds


@dataclass(kw_only=True, eq=False)
class Summary(MappingABC[str, Any]):
    """The summary block every report shares, typed (``summarize_methods`` builds it).

    ``curves`` holds each method's mean loss at ``steps``; ``headline_stats`` the ``headline`` method against the
    ``reference``, ``methods`` every other one's; ``extra`` the caller's keys. Its JSON form (``as_dict``) is the
    flat block reports have always saved: each curve under its method's name, the headline's stats at the top.
    It reads as that block too (``summary["speedup_at_20"]``, ``dict(summary)``), because reports, tasks and
    tests index it by key, method names included.
    """

    steps: list[int]
    curves: dict[str, list[float]]
    reference: str
    headline: str
    headline_stats: Stats
    methods: dict[str, Stats]
    final_step: int
    seconds_per_step: dict[str, float]
    count: int | None
    headline_steps_to_reference_final: int | None  # saved only when the headline method was run
    baseline_steps_to_answer_1pct: int | None
    baseline_seconds_to_answer_1pct: float | None  # None if never reached; saved only when ``timed``
    timed: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, keys in the order the block has always had (the order a report's file keeps)."""
        block: dict[str, Any] = {"steps": self.steps, **self.curves}
        for name in self.curves:
            if name == self.headline and name != self.reference:
                block.update(self.headline_stats)
            elif name != self.reference:
                block.setdefault("methods", self.methods)
        block.update({"final_step": self.final_step, "seconds_per_step": self.seconds_per_step, "count": self.count})
        if self.headline in self.curves:
            block["landscape_steps_to_baseline_final"] = self.headline_steps_to_reference_final
        block["baseline_steps_to_answer_1pct"] = self.baseline_steps_to_answer_1pct
        if self.timed:
            block["baseline_seconds_to_answer_1pct"] = self.baseline_seconds_to_answer_1pct
        block.update(self.extra)
        return block

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


@dataclass(kw_only=True, eq=False)
class ComparisonSummary(Summary):
    """``compare``'s summary: the shared block, then the step sizes it used (``lr``, δ's ``lr_x`` for the modes
    with δ, ``baseline_lr``), the optimizer, each method's F evaluations per example, the learned starts' pass in
    ms and every sweep's mean losses (``lr_sweep``, by step size as text)."""

    lr: dict[str, float]
    optimizer: str
    lr_x: dict[str, Any]
    evaluations: dict[str, int]
    start_ms: dict[str, float]
    lr_sweep: dict[str, dict[str, dict]]
    baseline_lr: float

    def as_dict(self) -> dict[str, Any]:
        block = super().as_dict()
        block.update({"lr": self.lr, "optimizer": self.optimizer, "lr_x": self.lr_x, "evaluations": self.evaluations,
                      "start_ms": self.start_ms, "lr_sweep": self.lr_sweep, "baseline_lr": self.baseline_lr})
        return block


def summary_fields(losses: dict[str, torch.Tensor], *, steps: Sequence[int], seconds_per_step: dict[str, float] | None,
                   reference: str, headline: str, bootstrap: int, seed: int, start_seconds: dict[str, float] | None,
                   elapsed: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    """Every field of a ``Summary`` but ``extra``: the curves, and each method's stats against the reference."""
    seconds = seconds_per_step or {}
    ref = torch.as_tensor(losses[reference], dtype=torch.float64)
    last = ref.shape[0] - 1
    shown = [s for s in steps if s <= last]
    curves = {name: loss_at(as_curve(table), shown) for name, table in losses.items()}
    headline_stats: Stats = {}
    methods: dict[str, Stats] = {}
    for name, table in losses.items():
        if name == reference:
            continue
        times = elapsed or {}
        stats = method_stats(ref, table, seconds_per_step=seconds.get(name), reference_seconds=seconds.get(reference),
                             start_seconds=(start_seconds or {}).get(name, 0.0), bootstrap=bootstrap, seed=seed,
                             elapsed=times.get(name), reference_elapsed=times.get(reference))
        if name == headline:
            headline_stats = stats
        else:
            methods[name] = stats
    reached = None
    if headline in losses:
        reached = step_reached(as_curve(losses[headline]), float(as_curve(ref)[last]))
    reference_time = _time_curve((elapsed or {}).get(reference), seconds.get(reference), ref.shape[0])
    answer = float(as_curve(ref)[min(200, last)]) * (1 + ANSWER_TOLERANCE)
    baseline_seconds = None
    if reference_time is not None:
        value = seconds_at(reference_time, steps_to_reach(as_curve(ref), answer))
        baseline_seconds = None if value == float("inf") else value
    return {"steps": shown, "curves": curves, "reference": reference, "headline": headline,
            "headline_stats": headline_stats, "methods": methods, "final_step": min(200, last),
            "seconds_per_step": seconds, "count": int(ref.shape[1]) if ref.dim() == 2 else None,
            "headline_steps_to_reference_final": reached,
            "baseline_steps_to_answer_1pct": step_reached(as_curve(ref), answer),
            "baseline_seconds_to_answer_1pct": baseline_seconds, "timed": reference_time is not None}
