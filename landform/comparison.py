"""A fair comparison of the learned landscape with the baseline.

Every method (``Method``) gets the same optimizer family and the same number of F evaluations per step;
a method whose step size is a tuple has it chosen by a sweep on held-out observations (the paper's §7.2
protocol). ``compare`` is the one evaluation path of the CLI and of every task; ``summarize_methods``
writes the summary block every report shares, with 95% bootstrap intervals over examples.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from landform.errors import LandformError
from landform.inference import Init, InversionResult, invert
from landform.mapping import Mapping
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
from landform.modes import DEFAULT_MODE, MODES
from landform.problem import Problem

SWEEP_LRS = (0.5, 0.1, 0.05, 0.01, 0.001)
ANSWER_TOLERANCE = 0.01  # "within 1% of the answer": of the baseline's step-200 loss
REPORT_STEPS = (0, 1, 2, 5, 10, 20, 50, 200)


EDGE_FACTORS = (5.0, 0.1)  # past the grid's largest step size, x5 each time; past its smallest, x0.1
EDGE_TRIES = 2
EDGE_GAIN = 0.9  # a rate past the grid replaces the best only if it ends at most 0.9x its loss


def sweep_rates(rates: Sequence[float], final_of: Callable[[float], float]) -> tuple[float, dict[float, float]]:
    """The best step size and ``final_of(rate)`` (a final loss, non-finite if it diverged) for every rate tried:
    the grid, then past its edge while the best rate lies on it (at most EDGE_TRIES rates each way), so a
    baseline whose best step size is the grid's largest (x in physical units, say) is not held back by the
    grid. A rate past the grid must end clearly lower (EDGE_GAIN): on a deblurring problem lr 2.5 ended 0.8x
    lr 0.5's loss after 200 steps but above its own start at step 20, on a path no user would pick."""
    finals = {float(rate): final_of(rate) for rate in rates}
    best = min(finals, key=lambda rate: (finals[rate], rate))  # all diverged: the smallest, to go lower
    if len(finals) < 2:
        return best, finals
    for edge, factor in zip((max, min), EDGE_FACTORS, strict=True):
        for _ in range(EDGE_TRIES):
            if best != edge(finals):
                break
            rate = float(f"{best * factor:.3g}")
            finals[rate] = final_of(rate)
            if not finals[rate] <= EDGE_GAIN * finals[best]:
                break
            best = rate
    return best, finals


def _sweep_entry(result: InversionResult, steps: int) -> dict[str, float]:
    """A swept run's mean loss at step 20 and at its last step (non-finite as inf: a diverged rate ranks last)."""
    finite = torch.nan_to_num(result.losses.mean(dim=1), nan=float("inf"))
    return {"step_20": float(finite[min(20, steps)]), "final": float(finite[-1])}


def sweep_lr(forward, loss, y_val: torch.Tensor, *, lrs: Sequence[float] = SWEEP_LRS, steps: int = 200,
             **invert_kwargs) -> tuple[float, dict[float, dict[str, float]]]:
    """The baseline learning rate with the lowest mean loss after ``steps`` on ``y_val`` (``lrs``, extended
    past their edge by ``sweep_rates``).

    Returns the best rate and, for every rate, its mean loss at step 20 and at the last step, so a
    report can show the whole sweep.
    """
    results: dict[float, dict[str, float]] = {}

    def final_of(lr: float) -> float:
        results[lr] = _sweep_entry(invert(forward, loss, y_val, lr=lr, steps=steps, **invert_kwargs), steps)
        return results[lr]["final"]

    best, _ = sweep_rates(lrs, final_of)
    return best, results


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


def _summary_fields(losses: dict[str, torch.Tensor], *, steps: Sequence[int], seconds_per_step: dict[str, float] | None,
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


def summarize_methods(losses: dict[str, torch.Tensor], *, steps: Sequence[int] = REPORT_STEPS,
                      seconds_per_step: dict[str, float] | None = None, reference: str = "baseline",
                      headline: str = "landscape", bootstrap: int = 1000, seed: int = 0,
                      extra: dict | None = None, start_seconds: dict[str, float] | None = None,
                      elapsed: dict[str, torch.Tensor] | None = None) -> dict:
    """The summary block every report shares, for any number of methods, as a dict (``Summary.as_dict``).

    ``losses`` maps a method's name to its [steps + 1, n] per-example losses (or a 1-D mean curve). Each
    method's mean loss at ``steps`` is a key of its own; the ``headline`` method's comparison with the
    ``reference`` sits at the top level (``speedup_at_20``, ``improvement_at_200``, ...), every other
    method's under ``methods``.
    """
    fields = _summary_fields(losses, steps=steps, seconds_per_step=seconds_per_step, reference=reference,
                             headline=headline, bootstrap=bootstrap, seed=seed, start_seconds=start_seconds,
                             elapsed=elapsed)
    return Summary(**fields, extra=dict(extra or {})).as_dict()


def summarize(baseline: torch.Tensor, landscape: torch.Tensor, *, steps: Sequence[int] = REPORT_STEPS,
              seconds_per_step: dict[str, float] | None = None, extra: dict | None = None,
              bootstrap: int = 0) -> dict:
    """``summarize_methods`` for the two-method case: ``baseline`` against ``landscape``."""
    return summarize_methods({"baseline": baseline, "landscape": landscape}, steps=steps,
                             seconds_per_step=seconds_per_step, bootstrap=bootstrap, extra=extra)


@dataclass(frozen=True)
class Method:
    """One way to invert in a comparison.

    ``mapping=None`` is descent on x (Eq. 1) from ``init`` (a tensor, a function of the observations, or
    'zeros'); with a mapping it is descent on z in ``mode`` (see ``landform.inference``). ``use_base`` adds
    the Problem's ``base`` (x = base(y) + ...: an encoder's guess, or the defense's attacked image).
    ``lr`` is a step size, or a tuple of them that the comparison sweeps on validation observations
    (lowest mean loss after the last step). ``lr_x`` is the step size on x of the residual and handoff
    modes; ``"baseline"`` takes the reference method's (swept) step size, so the part of the method that
    is descent on x moves as fast as the tuned baseline; a tuple is swept like ``lr``. ``warmup`` ramps it
    up linearly over that many steps. ``starts`` are functions of the observations giving candidate
    starting points in X. ``lead`` (``landform.steps.LearnedSteps``) runs ``lead_count`` learned update steps
    from the base first; the method's other steps continue from where they end, so the step count (and F's
    evaluations) stay the same.
    """

    name: str
    mapping: Mapping | None = None
    mode: str = "pure"
    lr: float | tuple[float, ...] = SWEEP_LRS
    lr_x: float | str | tuple[float, ...] | None = None
    warmup: int = 0
    init: Init | Callable[[torch.Tensor], torch.Tensor] = "zeros"
    use_base: bool = False
    starts: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = ()
    from_start: str = "x"
    lead: Any = None
    lead_count: int = 0

    def run(self, problem: Problem, y: torch.Tensor, lr: float, *, reference_lr: float | None = None,
            **kwargs) -> InversionResult:
        """Invert ``y`` with this method at step size ``lr`` (``reference_lr`` resolves ``lr_x="baseline"``)."""
        if self.use_base and problem.base is None:
            raise LandformError(f"method {self.name!r} needs a Problem with a base")
        lr_x = self.lr_x
        if lr_x == "baseline":
            if reference_lr is None:
                raise LandformError(f"method {self.name!r} takes the baseline's step size: run it through compare")
            lr_x = reference_lr
        init = self.init(y) if callable(self.init) else self.init
        base = problem.base if self.use_base else None
        if self.lead is not None and self.lead_count > 0:
            return self._run_led(problem, y, lr, lr_x, init, base, **kwargs)
        return invert(problem.forward, problem.loss, y, mapping=self.mapping, mode=self.mode, lr=lr,
                      lr_x=lr_x, warmup=self.warmup, init=init, x_shape=problem.x_shape,
                      base=base, starts=[s(y) for s in self.starts],
                      from_start=self.from_start,
                      **kwargs)

    def _run_led(self, problem: Problem, y: torch.Tensor, lr: float, lr_x, init, base, *, steps: int = 200,
                 **kwargs) -> InversionResult:
        """The learned steps from the base, then the method's descent from where they end, as one result."""
        if base is None:
            raise LandformError(f"method {self.name!r} runs learned steps from a start: it needs use_base")
        device = torch.device(kwargs["device"]) if kwargs.get("device") is not None else y.device
        y_dev = y.detach().to(device)
        mask = kwargs.get("mask")
        loss = problem.loss if mask is None else _masked(problem.loss, torch.broadcast_to(
            mask.to(device=device, dtype=torch.bool), y_dev.shape))
        lead = self.lead.to(device).eval()
        count = min(self.lead_count, steps)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(kwargs.get("seed", 0))
            x0 = base(y_dev).detach() if callable(base) else base.detach().to(device)
            x_led, led, seconds = lead.run(x0, y_dev, problem.forward, loss, count=count)
        rest = invert(problem.forward, problem.loss, y, mapping=self.mapping, mode=self.mode, lr=lr, lr_x=lr_x,
                      warmup=self.warmup, init=init, x_shape=problem.x_shape, base=x_led.detach(),
                      starts=[s(y) for s in self.starts], from_start=self.from_start, steps=steps - count, **kwargs)
        elapsed = torch.cat([torch.tensor([0.0, *seconds], dtype=torch.float64),
                             seconds[-1] + rest.elapsed[1:]]) if count else rest.elapsed
        total = float(elapsed[-1])
        return replace(rest, losses=torch.cat([led[:-1].detach().cpu().to(rest.losses.dtype), rest.losses]),
                       seconds_per_step=total / max(steps, 1), elapsed=elapsed,
                       evaluations=rest.evaluations + count,
                       snapshots={k + count: v for k, v in rest.snapshots.items()})


def _masked(loss, mask: torch.Tensor):
    """``loss`` on observations whose masked-out entries take the observation's value (as ``invert`` does)."""
    def masked(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss(torch.where(mask, y_hat, y), y)
    return masked


@dataclass
class Comparison:
    """Every method's inversion of the same observations, the step sizes used, and their summary."""

    results: dict[str, InversionResult]
    lrs: dict[str, float]
    sweeps: dict[str, dict]
    summary: ComparisonSummary
    methods: dict[str, Method] = field(default_factory=dict)

    def tuned(self) -> list[Method]:
        """The methods as run, with every swept step size fixed to the one chosen (to reuse on other data)."""
        return [replace(method, lr=self.lrs[name]) for name, method in self.methods.items()]

    @property
    def baseline(self) -> InversionResult:
        return self.results["baseline"]

    @property
    def landscape(self) -> InversionResult:
        return self.results["landscape"]


DEFAULT_WARMUP = 20  # the paper's trajectory length T: Θ alone leads for the steps it was trained for


def default_methods(problem: Problem, mapping: Mapping, *, mode: str = DEFAULT_MODE, lr_z: float = 0.1,
                    lrs: Sequence[float] = SWEEP_LRS) -> list[Method]:
    """The comparison every report makes: the baseline (descent on x from 0, ``init="origin"``, lr swept), the
    landscape in ``mode`` (δ at the baseline's swept step size, warmed up over ``DEFAULT_WARMUP`` steps) and,
    when that is not already it, the paper's pure Eq. 3 beside it."""
    use_base = problem.base is not None
    methods = [Method("baseline", lr=tuple(lrs), use_base=use_base, init="origin"),
               Method("landscape", mapping=mapping, mode=mode, lr=lr_z, use_base=mapping.additive,
                      lr_x="baseline", warmup=DEFAULT_WARMUP if mode == "residual" else 0)]
    if mode != "pure":
        methods.append(Method("landscape_pure", mapping=mapping, mode="pure", lr=lr_z, use_base=mapping.additive))
    return methods


def start_pass_seconds(base: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, repeats: int = 3) -> float:
    """Seconds of a start's pass over ``y`` (a learned encoder's, or a defense's), the fastest of ``repeats``:
    added to every time-to-quality of the methods that start there."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        with torch.no_grad():
            base(y)
        best = min(best, time.perf_counter() - began)
    return best


def _sweep(problem: Problem, method: Method, y_val: torch.Tensor, rates: Sequence[float], x_rates: Sequence,
           *, steps: int, reference_lr: float | None, **common) -> tuple[dict, dict]:
    """``method``'s mean loss at step 20 and at the end on ``y_val`` for each step size (and δ's, if several),
    and the best entry; one step size alone is swept past the grid's edge too (``sweep_rates``)."""
    sweep: dict = {}

    def final_of(rate: float, x_rate) -> float:
        result = replace(method, lr_x=x_rate).run(problem, y_val, rate, steps=steps, allow_nonfinite=True,
                                                  reference_lr=reference_lr, **common)
        key = rate if len(x_rates) == 1 else f"{rate}/{x_rate}"
        sweep[key] = {**_sweep_entry(result, steps), "lr": rate, "lr_x": x_rate}
        return sweep[key]["final"]

    if len(x_rates) == 1:
        best, _ = sweep_rates(rates, functools.partial(final_of, x_rate=x_rates[0]))
        return sweep[best], sweep
    for rate in rates:
        for x_rate in x_rates:
            final_of(rate, x_rate)
    return min(sweep.values(), key=lambda entry: entry["final"]), sweep


def compare(problem: Problem, y: torch.Tensor, methods: Sequence[Method], *, y_val: torch.Tensor | None = None,
            steps: int = 200, optimizer: str = "adam", mask: torch.Tensor | None = None,
            snapshots: Sequence[int] = (), seed: int = 0, device: str | None = None, progress: bool = False,
            reference: str = "baseline", headline: str = "landscape", bootstrap: int = 1000,
            report_steps: Sequence[int] = REPORT_STEPS) -> Comparison:
    """The one evaluation path: invert ``y`` with every method (same optimizer family, same number of F
    evaluations per step; swept step sizes chosen on ``y_val``) and summarize against ``reference``."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names) or reference not in names:
        raise LandformError(f"methods need distinct names and one named {reference!r}, got {names}")
    methods = sorted(methods, key=lambda m: m.name != reference)  # the reference first: others may take its lr
    common = {"optimizer": optimizer, "seed": seed, "device": device, "mask": mask}
    results, lrs, sweeps, seconds, chosen, starts = {}, {}, {}, {}, {}, {}
    for method in methods:
        rates = method.lr if isinstance(method.lr, tuple) else (method.lr,)
        x_rates = method.lr_x if isinstance(method.lr_x, tuple) else (method.lr_x,)
        grid = [(rate, x_rate) for rate in rates for x_rate in x_rates]
        if len(grid) > 1 and y_val is not None:
            best, sweeps[method.name] = _sweep(problem, method, y_val, rates, x_rates, steps=steps,
                                               reference_lr=lrs.get(reference), **common)
            lrs[method.name], chosen[method.name] = best["lr"], replace(method, lr_x=best["lr_x"])
        else:
            lrs[method.name], chosen[method.name] = grid[0][0], replace(method, lr_x=grid[0][1])
        results[method.name] = chosen[method.name].run(problem, y, lrs[method.name], steps=steps,
                                                       snapshots=tuple(snapshots), progress=progress,
                                                       reference_lr=lrs.get(reference), **common)
        seconds[method.name] = results[method.name].seconds_per_step
        if method.use_base and problem.base is not None:
            starts[method.name] = start_pass_seconds(problem.base, y)
    fields = _summary_fields({name: r.losses for name, r in results.items()}, steps=report_steps,
                             seconds_per_step=seconds, reference=reference, headline=headline, bootstrap=bootstrap,
                             seed=seed, start_seconds=starts, elapsed={name: r.elapsed for name, r in results.items()})
    summary = ComparisonSummary(
        **fields, lr=lrs, optimizer=optimizer,
        lr_x={m.name: (lrs[reference] if m.lr_x == "baseline" else m.lr_x)
              for m in chosen.values() if m.mapping is not None and MODES[m.mode].offset},
        evaluations={name: r.evaluations for name, r in results.items()},
        start_ms={name: round(1e3 * value, 3) for name, value in starts.items()},
        lr_sweep={name: {str(k): v for k, v in sweep.items()} for name, sweep in sweeps.items()},
        baseline_lr=lrs[reference])
    return Comparison(results=results, lrs=lrs, sweeps=sweeps, summary=summary, methods=chosen)
