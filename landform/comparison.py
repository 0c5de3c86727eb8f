"""A fair comparison of the learned landscape with the baseline.

Every method (``Method``) gets the same optimizer family and the same number of F evaluations per step;
a method whose step size is a tuple has it chosen by a sweep on held-out observations (the paper's §7.2
protocol). ``compare`` is the one evaluation path of the CLI and of every task; ``summarize_methods``
writes the summary block every report shares (``landform.summary``), with 95% bootstrap intervals over
examples.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from landform.errors import LandformError
from landform.inference import Init, InversionResult, invert
from landform.mapping import Mapping
from landform.modes import DEFAULT_MODE, MODES
from landform.problem import Problem
from landform.summary import ComparisonSummary, Summary, summary_fields

SWEEP_LRS = (0.5, 0.1, 0.05, 0.01, 0.001)
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
    fields = summary_fields(losses, steps=steps, seconds_per_step=seconds_per_step, reference=reference,
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
                 snapshots: tuple[int, ...] | list[int] = (), **kwargs) -> InversionResult:
        """The learned steps from the base, then the method's descent from where they end, as one result
        (``snapshots`` counted from the base: x after k learned steps for k within them)."""
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
            early = {k: (x0 if k == 0 else lead.run(x0, y_dev, problem.forward, loss, count=k)[0]).detach()
                     for k in snapshots if k < count}  # the learned steps are deterministic: rerun to step k
        rest = invert(problem.forward, problem.loss, y, mapping=self.mapping, mode=self.mode, lr=lr, lr_x=lr_x,
                      warmup=self.warmup, init=init, x_shape=problem.x_shape,
                      base=self._continuing_from(x_led.detach(), init),
                      starts=[s(y) for s in self.starts], from_start=self.from_start, steps=steps - count,
                      snapshots=[k - count for k in snapshots if k >= count], **kwargs)
        elapsed = torch.cat([torch.tensor([0.0, *seconds], dtype=torch.float64),
                             seconds[-1] + rest.elapsed[1:]]) if count else rest.elapsed
        total = float(elapsed[-1])
        return replace(rest, losses=torch.cat([led[:-1].detach().cpu().to(rest.losses.dtype), rest.losses]),
                       seconds_per_step=total / max(steps, 1), elapsed=elapsed,
                       evaluations=rest.evaluations + count,
                       snapshots={**early, **{k + count: v for k, v in rest.snapshots.items()}})

    def _continuing_from(self, x_led: torch.Tensor, init) -> torch.Tensor:
        """The base after the learned steps such that descent begins exactly where they end: an anchored Θ adds
        Θ(0) at z = 0 (a correction fitted at the start's guesses, not at the steps' end), so it is taken off
        the base. Without it the images' fifth learned step ended at a mean loss of 0.81 and descent began at
        0.95 (a 17% jump back)."""
        if self.mapping is None or not self.mapping.additive or not (isinstance(init, str) and init == "zeros"):
            return x_led
        mapping = self.mapping.to(x_led.device)
        with torch.no_grad():
            zero = torch.zeros(x_led.shape[0], mapping.z_dim, device=x_led.device, dtype=x_led.dtype)
            return x_led - mapping(zero, torch.zeros_like(x_led))


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
    fields = summary_fields({name: r.losses for name, r in results.items()}, steps=report_steps,
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
