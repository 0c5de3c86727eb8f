"""What the recipe decides on held-out observations: the baseline's step size, whether the learned start traps
descent, and the tuned inference settings.

``baseline_sweep`` runs the baseline (descent on x from 0) at every swept step size; ``check_start`` drops a
start from which descent ends more than ``START_TRAP`` above it; ``tune`` chooses the inference settings that
reach the answer (within ``ANSWER_TOLERANCE`` of the swept baseline's step-``REPORT_HORIZON`` loss) soonest in
wall-clock time, settings that overshoot (``MAX_RISE``) or go above the baseline (``TIE``) ranking last
(``settings_rank``). Every run here is a validation run (``run_over_ranks``): under torchrun each rank runs its
share of the observations and every rank gets the losses of all of them with rank 0's timings, so every rank
takes the same decisions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace

import torch

from landform.comparison import SWEEP_LRS, start_pass_seconds, sweep_rates
from landform.distributed import Context
from landform.inference import InversionResult, invert
from landform.landscape import InferenceSettings, Landscape
from landform.metrics import max_rise, step_reached, steps_to_reach
from landform.problem import Problem
from landform.start import StartEncoder
from landform.steps import LearnedSteps
from landform.work import work

HORIZON = 20  # T: Θ is fitted, and judged, over the first 20 steps
REPORT_HORIZON = 200  # the baseline, the start's check and every tuned candidate run this many steps


# --------------------------------------------------------------------------------------- validation runs

START_TRAP = 1.05  # a start from which descent ends this far above the baseline's loss is dropped


def run_over_ranks(ctx: Context, run: Callable[..., InversionResult], *tensors: torch.Tensor) -> InversionResult:
    """``run(*tensors)``, a validation run; with an active ``ctx`` each rank runs its share of the observations
    (``tensors`` are split alike, along their first dimension), and every rank gets the per-example losses of
    all of them (in order) with rank 0's timings (``seconds_per_step``, ``elapsed``): the same result on every
    rank, so every rank takes the same decisions. The other fields (x, y_hat, ...) are this rank's share."""
    if not ctx.active:
        return run(*tensors)
    result = run(*(ctx.shard(tensor) for tensor in tensors))
    elapsed = result.elapsed if result.elapsed is not None else torch.zeros(0, dtype=torch.float64)
    timing = ctx.from_leader(torch.cat([torch.tensor([result.seconds_per_step], dtype=torch.float64),
                                        elapsed.to(torch.float64)]))
    return replace(result, losses=ctx.gather(result.losses, dim=1), seconds_per_step=float(timing[0]),
                   elapsed=timing[1:] if result.elapsed is not None else None)


def baseline_sweep(problem: Problem, y_val: torch.Tensor, *, seed: int, device: torch.device | str | None,
                   context: Context | None = None) -> dict[float, InversionResult]:
    """The baseline (descent on x from 0, ``init="origin"``) at every swept step size (``compare.sweep_rates``:
    SWEEP_LRS, and past their edge while the best lies there; a rate past the grid that did not end clearly
    lower is left out, so the lowest final loss is the chosen rate's), REPORT_HORIZON steps (``run_over_ranks``
    over the processes of ``context``)."""
    ctx = context or Context()
    runs: dict[float, InversionResult] = {}

    def final_of(lr: float) -> float:
        runs[lr] = run_over_ranks(ctx, lambda y: invert(problem.forward, problem.loss, y, lr=lr,
                                                        x_shape=problem.x_shape, init="origin", steps=REPORT_HORIZON,
                                                        seed=seed, device=device, allow_nonfinite=True), y_val)
        return final_loss(runs[lr])

    best, finals = sweep_rates(SWEEP_LRS, final_of)
    return {lr: run for lr, run in runs.items() if lr == best or not finals[lr] < finals[best]}


def final_loss(result: InversionResult) -> float:
    """A run's mean loss at its last step, non-finite as inf (a diverged run ranks last)."""
    return float(torch.nan_to_num(result.losses.mean(1), nan=math.inf)[-1])


def check_start(problem: Problem, start: StartEncoder, y_val: torch.Tensor,
                baseline_runs: dict[float, InversionResult], *, seed: int, device: torch.device,
                context: Context | None = None) -> dict:
    """Whether descent from the learned start ends near the baseline's loss on held-out observations. A start
    trained through F can settle where F's gradient vanishes (a renderer's shapes switched off: a blank image
    is a fair guess and a dead end); if descent from it ends more than START_TRAP above the baseline's, its
    head is zeroed, so it guesses x = 0 like the baseline and Θ is anchored there. Descent from the start is
    swept like the baseline's step size (``run_over_ranks`` over the processes of ``context``)."""
    ctx = context or Context()
    baseline = min(final_loss(run) for run in baseline_runs.values())
    with torch.no_grad():
        guess = start(y_val.to(device))

    def final_of(lr: float) -> float:
        return final_loss(run_over_ranks(ctx, lambda y, base: invert(
            problem.forward, problem.loss, y, lr=lr, steps=REPORT_HORIZON, base=base, x_shape=problem.x_shape,
            init="origin", seed=seed, device=device, allow_nonfinite=True), y_val, guess))

    _, finals = sweep_rates(SWEEP_LRS, final_of)
    from_start = min(finals.values())
    ratio = from_start / max(baseline, 1e-30)
    dropped = not ratio <= START_TRAP
    if dropped:
        with torch.no_grad():
            start.head.weight.zero_()
            start.head.bias.zero_()
    return {"baseline_final": baseline, "start_final": from_start, "ratio": ratio, "dropped": dropped}


# δ's step sizes tried from the start, times the baseline's: low enough that a good start's first step does not
# overshoot
START_LR_FACTORS = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005)
# ... and on down, for a start (with or without the learned steps) from which every one of those overshoots: learned
# steps that end far below the answer (compressed sensing: 1e-8 against 3e-10 from 1e-4) are thrown back by
# Adam's first step, whose size is the step size's whatever the gradient
LOWER_START_LR_FACTORS = (0.002, 0.001, 0.0005, 0.0002, 0.0001)


# ---------------------------------------------------------------------------------------------- tuning

def tune(problem: Problem, landscape: Landscape, y_val: torch.Tensor, *, warmup: int = HORIZON, seed: int = 0,
         device: torch.device | str | None = None, deadline: float = math.inf,
         baseline_runs: dict[float, InversionResult] | None = None, context: Context | None = None,
         cost_model: str = "seconds") -> tuple[InferenceSettings, dict]:
    """The inference settings that reach the answer (within ANSWER_TOLERANCE of the swept baseline's step-200
    loss on ``y_val``) soonest in wall-clock time, then end lowest (``settings_rank``): start + δ, Θ + δ and Eq. 3
    around the start, each with step sizes swept low enough that a good start's first step does not overshoot,
    with and without the landscape's learned steps (``problem.base`` is the landscape's start). Past ``deadline``
    (``time.perf_counter()``) the candidates not yet run are skipped, and listed, once at least three have run
    and one of them reaches the answer without overshooting (until then the start's smaller step sizes still
    run). ``baseline_runs`` are ``baseline_sweep`` on ``y_val``, if already run.

    With an active ``context`` every candidate runs ``run_over_ranks`` over the processes (each its share of
    ``y_val``, judged on all of them with rank 0's timings), the deadline is rank 0's, and the chosen settings
    and the record are rank 0's, broadcast: every rank returns the same. ``cost_model="work"`` (the recipe's
    without a budget) ranks by counted work instead of seconds (``landform.work``: each kind of step's work
    counted once), so that a seed reproduces the choice."""
    ctx = context or Context()
    common = {"steps": REPORT_HORIZON, "seed": seed, "device": device, "allow_nonfinite": True}
    runs = baseline_runs or baseline_sweep(problem, y_val, seed=seed, device=device, context=ctx)
    finals = {lr: final_loss(r) for lr, r in runs.items()}
    baseline_lr = min(finals, key=finals.get)
    baseline = runs[baseline_lr]
    reference = baseline.losses.mean(1).double()
    counted = _StepWork(problem, landscape, y_val, baseline_lr, common) if cost_model == "work" else None
    if counted is not None:  # counted on all of y_val on every rank: the same count everywhere
        start_seconds = counted.start()
    else:
        start_seconds = start_pass_seconds(problem.base, y_val) if not ctx.active else \
            float(ctx.from_leader(torch.tensor([start_pass_seconds(problem.base, ctx.shard(y_val))],
                                               dtype=torch.float64))[0])
    candidates: list[tuple[InferenceSettings, InversionResult]] = []
    skipped: list[str] = []
    target = float(reference[-1]) * (1 + ANSWER_TOLERANCE)

    def run(settings: InferenceSettings) -> None:
        # Out of budget: the candidates run so far stay, but the start's step sizes go on down (the largest come
        # first) until one reaches the answer without overshooting, so a late tuning never keeps only settings
        # that overshoot. Every rank holds the same losses, so every rank skips the same candidates.
        if ctx.leader_says(time.perf_counter() > deadline) and len(candidates) >= 3 and (
                settings.mode != "start" or any(steady(result) for _, result in candidates)):
            skipped.append(_key(settings))
            return
        method = landscape.with_(settings=settings).method()
        candidates.append((settings, run_over_ranks(ctx, lambda y: method.run(problem, y, method.lr, **common),
                                                    y_val)))

    def steady(result: InversionResult) -> bool:
        curve = _mean_curve(result)
        return math.isfinite(steps_to_reach(curve, target)) and max_rise(curve) <= MAX_RISE

    costs: dict[tuple[str, int], float] = {}  # the least seconds per step seen, per kind of step

    def judged(settings: InferenceSettings, result: InversionResult) -> dict:
        if counted is not None:
            lead, descent = counted.steps(settings)
            return _judge(reference, result, settings.learned_steps, lead, descent, counted.baseline(),
                          start_seconds)
        lead, descent = _step_seconds(result, settings.learned_steps)
        kind = (settings.mode, settings.learned_steps)
        costs[kind] = min(costs.get(kind, math.inf), descent)
        if settings.learned_steps:
            costs[("learned", settings.learned_steps)] = min(costs.get(("learned", settings.learned_steps), math.inf),
                                                             lead)
        return _judge(reference, result, settings.learned_steps, costs[("learned", settings.learned_steps)]
                      if settings.learned_steps else 0.0, costs[kind], baseline.seconds_per_step, start_seconds)

    leads = [0] + ([best_lead(landscape.steps, problem, y_val, device)] if landscape.steps is not None else [])
    for factor in START_LR_FACTORS:  # with and without the learned steps in turn: both are tried by a deadline
        for lead in leads:
            run(InferenceSettings("start", 0.1, baseline_lr * factor, 0, REPORT_HORIZON, lead))
    for lead in leads:
        for factor in LOWER_START_LR_FACTORS:
            if any(s.mode == "start" and s.learned_steps == lead and max_rise(_mean_curve(r)) <= MAX_RISE
                   for s, r in candidates):
                break
            run(InferenceSettings("start", 0.1, baseline_lr * factor, 0, REPORT_HORIZON, lead))
    for lead in leads:
        # δ's step size from a good start is often far below the baseline's from 0: the best start-mode rate
        # joins the residual mode's choices.
        tried = [(s, r) for s, r in candidates if s.mode == "start" and s.learned_steps == lead]
        best_start = min(tried, key=lambda c: settings_rank(judged(*c)))[0] if tried else None
        rates = (baseline_lr * 0.5, baseline_lr) + ((best_start.lr_x,) if best_start is not None else ())
        for lr_z in (0.03, 0.1, 0.3):
            for lr_x in dict.fromkeys(rates):
                run(InferenceSettings("residual", lr_z, lr_x, warmup, REPORT_HORIZON, lead))
        for lr_z in (0.01, 0.03, 0.1, 0.3):
            run(InferenceSettings("pure", lr_z, baseline_lr, 0, REPORT_HORIZON, lead))
    for s, r in candidates:  # every kind's least cost first: a busy machine's slow run does not decide
        judged(s, r)
    table = {_key(s): judged(s, r) for s, r in candidates}
    best = min(candidates, key=lambda c: settings_rank(table[_key(c[0])]))[0]
    if best.mode == "residual" and not ctx.leader_says(time.perf_counter() > deadline):  # the warm-up: Θ alone
        run(replace(best, warmup=0))  # for T steps, or not
        table[_key(candidates[-1][0])] = judged(*candidates[-1])
        best = min((best, candidates[-1][0]), key=lambda s: settings_rank(table[_key(s)]))
    curve = dict((_key(s), r) for s, r in candidates)[_key(best)].losses.mean(1).double()
    enough = _steps_that_pay(curve)
    settings = replace(best, steps=enough)
    record = {"baseline_lr": baseline_lr, "baseline_final": {str(k): v for k, v in finals.items()},
              "baseline_steps_to_answer_1pct": step_reached(reference, target),
              "count": int(y_val.shape[0]), "cost_model": cost_model,
              **({"start_work": start_seconds} if counted else {"start_ms": round(1e3 * start_seconds, 3)}),
              "candidates": table, "chosen": _key(best), "steps_that_pay": enough, "skipped": skipped}
    if ctx.active:  # rank 0's decision on every rank (timings never differ between ranks' decisions)
        decided = json.loads(ctx.share(json.dumps({"settings": asdict(settings), "record": record})) or "{}")
        settings, record = InferenceSettings(**decided["settings"]), decided["record"]
    return settings, record


def best_lead(steps: LearnedSteps, problem: Problem, y_val: torch.Tensor,
              device: torch.device | str | None = None) -> int:
    """How many of the learned steps to run: the count after which the mean loss on ``y_val`` is lowest, from the
    start (``problem.base``). A last step that raises it is left out (on the compressed-sensing probe the fifth
    step rose 24%; Adam after four steps got within 1% of the answer in 19 steps with no rise over 5%, after five
    never without one: experiments/results/learned_steps_count.json). The same on every rank: every rank runs
    all of ``y_val``."""
    y = y_val.to(device) if device is not None else y_val
    with torch.no_grad():
        x0 = problem.base(y)
    _, losses, _ = steps.run(x0, y, problem.forward, problem.loss)
    means = torch.nan_to_num(losses.detach().double().mean(1), nan=math.inf)
    return 1 + int(torch.argmin(means[1:]))


class _StepWork:
    """The counted work (``landform.work``) of the start's pass and of one step of each kind, each counted once:
    what ``tune`` ranks by with ``cost_model="work"`` in place of the seconds it measures otherwise."""

    def __init__(self, problem: Problem, landscape: Landscape, y: torch.Tensor, baseline_lr: float,
                 common: dict) -> None:
        self.problem, self.landscape, self.baseline_lr, self.common = problem, landscape, baseline_lr, common
        self.y = y.to(common["device"] or y.device)
        self.cache: dict[tuple, float] = {}

    def _once(self, key: tuple, call: Callable[[], object]) -> float:
        if key not in self.cache:
            self.cache[key] = work(call)
        return self.cache[key]

    def start(self) -> float:
        def run() -> None:
            with torch.no_grad():
                self.problem.base(self.y)
        return self._once(("start",), run)

    def _descent(self, key: tuple, run: Callable[[int], object], before: int) -> float:
        """One descent step's work: a run of ``before + 2`` steps less one of ``before + 1``."""
        return self._once((*key, before + 2), lambda: run(before + 2)) - \
            self._once((*key, before + 1), lambda: run(before + 1))

    def baseline(self) -> float:
        common = {**self.common, "x_shape": self.problem.x_shape, "init": "origin"}
        return self._descent(("baseline",), lambda n: invert(self.problem.forward, self.problem.loss, self.y,
                                                              lr=self.baseline_lr, **{**common, "steps": n}), 0)

    def steps(self, settings: InferenceSettings) -> tuple[float, float]:
        """One learned step's work (0 without) and one descent step's in ``settings``' mode after them."""
        lead = settings.learned_steps
        method = self.landscape.with_(settings=replace(settings, warmup=0)).method()
        descent = self._descent((settings.mode, lead), lambda n: method.run(self.problem, self.y, method.lr,
                                                                            **{**self.common, "steps": n}), lead)
        if not lead:
            return 0.0, descent
        module = self.landscape.steps
        with torch.no_grad():
            x0 = self.problem.base(self.y)
        counts = [self._once(("learned", count), lambda c=count: module.run(x0, self.y, self.problem.forward,
                                                                            self.problem.loss, count=c))
                  for count in (0, lead)]
        return (counts[1] - counts[0]) / lead, descent


def _mean_curve(result: InversionResult) -> torch.Tensor:
    """A run's mean loss per step, in double, non-finite as inf."""
    return torch.nan_to_num(result.losses.mean(1).double(), nan=math.inf)


def _key(settings: InferenceSettings) -> str:
    lead = f" after {settings.learned_steps} learned steps" if settings.learned_steps else ""
    if settings.mode == "start":
        return f"start lr_x={settings.lr_x:g}{lead}"
    if settings.mode == "pure":
        return f"pure lr_z={settings.lr_z:g}{lead}"
    return f"residual lr_z={settings.lr_z:g} lr_x={settings.lr_x:g} warmup={settings.warmup}{lead}"


ANSWER_TOLERANCE = 0.01  # "the answer": within 1% of the baseline's step-200 loss
MAX_RISE = 0.05  # a setting whose mean loss rises more than 5% from one step to the next overshoots
TIE = 1.01  # at most 1% above the baseline at any step (converged curves tie within a sample's noise)


def _step_seconds(result: InversionResult, lead: int) -> tuple[float, float]:
    """A run's seconds per learned step and per descent step (from its cumulative times)."""
    steps = result.losses.shape[0] - 1
    if result.elapsed is None or steps <= lead:
        return result.seconds_per_step, result.seconds_per_step
    elapsed = result.elapsed.double()
    return float(elapsed[lead]) / max(lead, 1), float(elapsed[-1] - elapsed[lead]) / (steps - lead)


def _judge(reference: torch.Tensor, result: InversionResult, lead: int, lead_seconds: float, step_seconds: float,
           baseline_seconds: float, start_seconds: float) -> dict:
    """A candidate on validation: its steps and wall-clock seconds to within ANSWER_TOLERANCE of the baseline's
    step-200 loss (the start's pass, ``lead`` learned steps of ``lead_seconds`` each, then descent steps of
    ``step_seconds``: the least seen for each kind of step, so that settings of one kind are ranked by their step
    counts, not by the machine's load while each ran), the baseline's own time to it, its largest step-over-step
    rise, its worst ratio to the baseline from step 1 and its loss at the last step."""
    curve = _mean_curve(result)
    target = float(reference[-1]) * (1 + ANSWER_TOLERANCE)
    reached = steps_to_reach(curve, target)
    seconds = math.inf if math.isinf(reached) else \
        start_seconds + min(reached, lead) * lead_seconds + max(reached - lead, 0) * step_seconds
    baseline_steps = max(steps_to_reach(reference, target), 1.0)
    return {"steps_to_answer_1pct": None if math.isinf(reached) else int(reached),
            "seconds_to_answer_1pct": seconds, "time_ratio": seconds / (baseline_steps * baseline_seconds),
            "max_rise": max_rise(curve),
            "worst_ratio_from_1": float((curve[1:] / reference[1:].clamp_min(1e-30)).max()),
            "loss_at_200": float(curve[-1]), "final_ratio": float(curve[-1] / reference[-1].clamp_min(1e-30)),
            "learned_steps": lead, "ms_per_step": round(1e3 * result.seconds_per_step, 3)}


def settings_rank(judged: dict) -> tuple[float, float, float]:
    """Settings that reach the answer first: those that never overshoot (MAX_RISE), stay within TIE of the
    baseline at every step and end at or below it, then those that do not overshoot, then the rest that reach it;
    within a tier, by wall-clock time to the answer (in 5% buckets: a validation sample's timing noise), then by
    the loss at the last step. Settings that never reach it rank last, by their last loss."""
    if math.isinf(judged["seconds_to_answer_1pct"]):
        return (3.0, judged["final_ratio"], 0.0)
    steady = judged["max_rise"] <= MAX_RISE
    below = judged["worst_ratio_from_1"] <= TIE and judged["final_ratio"] <= TIE
    tier = 0.0 if steady and below else 1.0 if steady else 2.0
    return (tier, float(math.floor(math.log(max(judged["time_ratio"], 1e-12)) / math.log(1.05))),
            judged["final_ratio"])


def _steps_that_pay(curve: torch.Tensor, tolerance: float = 0.01) -> int:
    """The first step within ``tolerance`` (relative) of the curve's best loss: where more steps stop paying."""
    best = float(curve.min())
    reached = torch.nonzero(curve <= best * (1 + tolerance) + 1e-30)
    return max(1, int(reached[0, 0])) if len(reached) else int(curve.shape[0] - 1)
