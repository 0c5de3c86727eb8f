"""The fast-inversion recipe, learned from a ``Problem`` alone: what ``landform fit`` does by default.

1. **A learned start** E(y) (``landform.start``), trained through the frozen F on training observations,
   unless the Problem brings its own ``base``; dropped (x = 0) if descent from it ends above the baseline's
   loss on validation observations (``START_TRAP``: a start can learn a guess where F has no gradient).
   Optionally one learned error-feedback step (``start.RefinedStart``, a task's choice: ``refine``).
2. **Learned update steps** (``landform.steps``): up to 5 unrolled steps from the start, trained through F.
3. **An anchored Θ**: Algorithm 1 (``landform.fit``) fits x = E(y) + Θ(z) around the start's guess, with
   Θ's width sized to F's cost (its pass may cost at most ``THETA_SHARE`` of F's), early-stopped on
   validation observations.
4. **Tuned inference**: on validation observations that the fit holds out, with and without the learned steps,
   the mode (x = x0 + δ, x0 + Θ(z) + δ, or Eq. 3 around the start), the step sizes on z and δ, the warm-up and
   the number of steps after which more steps stop paying; chosen by wall-clock time to the answer (within
   ``ANSWER_TOLERANCE`` of the swept baseline's step-200 loss), settings that overshoot (``MAX_RISE``) or go
   above the baseline ranking last. The baseline is descent on x from 0 (``init="origin"``).

Under ``torchrun --nproc_per_node=K`` every stage is data-parallel over the K processes (``landform.distributed``):
the start, its error-feedback step and the learned steps average their gradients over minibatches that each rank
draws from its own random stream, Θ's Algorithm 1 is ``fit``'s own, and every validation run (Θ's selection, the
start's check, the tuning) splits its observations over the ranks and gathers their per-example losses, so every
rank decides on the whole validation set; what depends on a clock (the budget, the timings that the tuning
ranks by) is rank 0's, broadcast. Rank 0 alone writes, and the artifact records the number of processes; a
resume must use the same number.

Everything inversion needs is one artifact, ``DIR/landscape.safetensors`` + ``landscape.json`` (atomic,
checked on load), beside the resumable Θ checkpoint of ``fit``: ``Landscape.load(DIR)`` gives an object
whose ``invert(y, problem)`` uses the tuned settings (``landform.landscape``). ``landform fit --recipe paper``
is the paper's plain Θ (Eq. 3), fitted by ``landform.fit`` alone.

This module sizes the models to F's cost (``sized_models``) and runs the phases in order (``learn``), Θ's
selection on held-out observations included. The parts learned before Θ, each saved for a resume, are
``landform.learned_parts``; the runs on held-out observations that decide (the baseline's sweep, the start's
check, the tuning) and the constants named above that they use are ``landform.tuning``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from landform import distributed
from landform.distributed import Context
from landform.errors import LandformError
from landform.fitting import checkpoint_rounds, fit
from landform.landscape import (
    InferenceSettings,
    Landscape,
    artifact_path,
    fingerprint,
    problem_with_start,
)
from landform.learned_parts import (
    Budget,
    check_resume_world,
    leader_writes,
    learn_refiner,
    learn_start,
    learn_steps,
    more_steps,
    step_starts,
)
from landform.mapping import Mapping
from landform.problem import Problem
from landform.selection import ThetaSelector
from landform.start import StartEncoder, observation_pool
from landform.tuning import HORIZON, baseline_sweep, check_start, settings_rank, tune
from landform.work import work_per_pass

RECIPES = ("fast", "paper")
THETA_SHARE = 0.3  # Θ's forward + backward may cost at most this share of F's
THETA_WIDTHS = (64, 128, 256, 512, 1024)
TUNE_COUNT = 64
POOL_SIZE = 65536  # training observations: the learned steps overfit 8192 (held-out loss rising from ~1,300
# iterations on the example decoder) and keep improving on 65536
POOL_SHARE = 0.05  # ... fewer where drawing them takes more than this share of the budget
VALIDATION_SIZE = 512


# ------------------------------------------------------------------------------------------------ costs

def seconds_per_pass(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, repeats: int = 5, *,
                     backward: bool = True) -> float:
    """The work of one pass of ``function`` over ``inputs`` (forward + backward with respect to the input, or the
    forward alone), the least of ``repeats``: what sizing compares, so it must not depend on the machine's load.
    On the CPU it is the calling thread's CPU time with one intra-op thread (wall time on a busy 2-core
    machine inflated F's pass a hundredfold and the models' passes by unrelated factors, so the sizes chosen
    followed the load); on an accelerator, wall time between synchronizations."""
    cpu = inputs.device.type == "cpu"
    clock = time.thread_time if cpu else time.perf_counter
    threads = torch.get_num_threads()
    if cpu:
        torch.set_num_threads(1)
    try:
        best = math.inf
        for _ in range(repeats):
            x = inputs.detach().clone().requires_grad_(backward)
            _synchronize(x)
            began = clock()
            if backward:
                torch.autograd.grad(function(x).float().sum(), x)
            else:
                with torch.no_grad():
                    function(x)
            _synchronize(x)
            best = min(best, clock() - began)
        return best
    finally:
        torch.set_num_threads(threads)


def _synchronize(tensor: torch.Tensor) -> None:
    if tensor.device.type == "cuda":
        torch.cuda.synchronize(tensor.device)


START_SHARE = 1.0  # the start's pass may cost at most one of F's forward + backward passes
START_CHOICES = (("conv", 32), ("conv", 16), ("mlp", 512), ("mlp", 256), ("mlp", 128))  # richest first


def sized_models(problem: Problem, y: torch.Tensor, z_dim: int, *, hidden: int | None = None,
                 device: torch.device | str = "cpu", context: Context | None = None,
                 cost_model: str = "seconds") -> tuple[tuple[StartEncoder, ...], int, dict]:
    """The starts and Θ's width sized to F's cost on a batch: the richest start whose pass costs at most
    START_SHARE of F's forward + backward pass (a conv net only for image observations), then, after a conv
    net, the richest MLP within that cost (the fallback if the conv start traps descent); the widest Θ (of
    THETA_WIDTHS, unless ``hidden`` fixes it) whose pass costs at most THETA_SHARE of it; and the costs
    (``seconds_per_pass``: CPU time on one thread, so the same machine sizes the same way idle or busy; with
    ``cost_model="work"``, ``work.work_per_pass``: counted, so any machine sizes the same way).
    With an active ``context`` rank 0 measures and decides, and every rank builds the models it chose."""
    ctx = context or Context()
    if ctx.active:
        chosen = None
        if ctx.leader:
            starts, width, costs = sized_models(problem, y, z_dim, hidden=hidden, device=device,
                                                cost_model=cost_model)
            chosen = json.dumps({"starts": [[s.architecture, s.channels if s.architecture == "conv" else s.hidden]
                                            for s in starts], "width": width, "costs": costs})
        decided = json.loads(ctx.share(chosen) or "{}")
        if ctx.leader:
            return starts, width, costs
        built = tuple(_start_candidate(tuple(y.shape[1:]), problem.x_shape, architecture, size).to(device)
                      for architecture, size in decided["starts"])
        return built, int(decided["width"]), decided["costs"]
    batch = y.shape[0]
    counted = cost_model == "work"
    cost = work_per_pass if counted else seconds_per_pass
    unit, scale = ("work", 1.0) if counted else ("ms", 1e3)  # work: FLOPs + elements, counted (``landform.work``)
    f_seconds = cost(problem.forward, torch.zeros(batch, *problem.x_shape, device=device))
    costs: dict[str, Any] = {"model": cost_model, "batch": batch,
                             f"forward_{unit}_per_batch": round(scale * f_seconds, 3), f"start_{unit}": {},
                             f"theta_{unit}_per_batch": {}}
    starts: list[StartEncoder] = []
    for architecture, size in START_CHOICES:
        if architecture == "conv" and (starts or not (y.dim() == 4 and min(y.shape[2:]) >= 8)):
            continue
        candidate = _start_candidate(tuple(y.shape[1:]), problem.x_shape, architecture, size).to(device)
        seconds = cost(candidate, y, backward=False)
        costs[f"start_{unit}"][f"{architecture}-{size}"] = round(scale * seconds, 3)
        last = (architecture, size) == START_CHOICES[-1]
        if seconds <= START_SHARE * f_seconds or last:
            starts.append(candidate)
            if architecture == "mlp":
                break
    width = THETA_WIDTHS[0] if hidden is None else hidden
    for candidate_width in THETA_WIDTHS if hidden is None else ():
        theta = Mapping(z_dim, problem.x_shape, hidden=candidate_width).to(device)
        seconds = cost(theta, torch.zeros(batch, z_dim, device=device))
        costs[f"theta_{unit}_per_batch"][str(candidate_width)] = round(scale * seconds, 3)
        if seconds <= THETA_SHARE * f_seconds:
            width = candidate_width
    return tuple(starts), width, costs


def _start_candidate(y_shape: tuple[int, ...], x_shape: tuple[int, ...], architecture: str,
                     size: int) -> StartEncoder:
    """One of START_CHOICES: a conv start of ``size`` channels or an MLP start of ``size`` units."""
    return StartEncoder(y_shape, x_shape, architecture=architecture, hidden=size if architecture == "mlp" else 256,
                        channels=size)


# --------------------------------------------------------------------------------------------- the fit

def learn(problem: Problem, directory: str | Path, *, seconds: float = 480.0, rounds: int = 300,
          hidden: int | None = None, z_dim: int | None = None, trajectories: int = 256, steps: int = HORIZON,
          lr: float = 1e-3, lr_z: float = 0.1, start_steps: int = 20000, resume: bool = False, seed: int = 0,
          device: str | torch.device | None = None, progress: bool = True, start: StartEncoder | None = None,
          prior: Callable[[int, torch.Generator], torch.Tensor] | None = None, prior_weight: float = 0.0,
          validation: torch.Tensor | None = None, pool_size: int = POOL_SIZE, refine: bool | None = False,
          learned_steps: bool | None = None, log: Callable[[str], None] = print) -> Landscape:
    """Learn the whole recipe for ``problem`` within about ``seconds`` and save it in ``directory``.

    The start trains for at most 35% of the budget, its error-feedback step (where asked for) until 45%, the
    learned update steps until 65%, Θ until 80% (each stops earlier on a validation plateau; time Θ leaves
    unused goes back to the learned steps, until 85%), and the rest tunes
    the inference settings for the answer (``tune``: with and without the learned steps, which are kept only
    where they reach it sooner; twice where the error-feedback step is judged). With ``resume`` a saved start
    and saved learned steps are reused and Θ's fit continues from its last committed round. A budget makes the
    result depend on the machine's speed; without one (``seconds=inf``) the fit stops on plateaus alone and a
    seed reproduces it.

    ``start_steps`` caps the training steps of the start, of its error-feedback step and of the learned steps.
    A task may fix what the user's fit measures and sizes: ``start`` (an untrained ``StartEncoder`` to train
    instead of the sized one), ``hidden`` and ``z_dim`` (Θ), ``prior`` and ``prior_weight`` (the start's pSp
    latent term, ``start.train_start``), and ``validation`` (its own held-out observations, used to select Θ
    and tune the inference instead of draws held out from ``pool_size`` training observations), and ``refine``
    (the start's error-feedback step: False, the default, trains none, the learned steps doing its work; None
    keeps it where the tuned inference from it reaches the answer sooner than from the start alone; True keeps
    it wherever it lowers the start's held-out loss), and ``learned_steps`` (None trains them and keeps them
    where they pay; False trains none).

    Under torchrun (K processes) every stage runs data-parallel (see the module's doc): ``trajectories`` must
    be a multiple of K, the observations are rank 0's, rank 0 alone logs and writes, the artifact's record
    holds ``world_size``, and a resume needs the same K. Every rank returns the same landscape.
    """
    with distributed.held(torch.device(device or "cpu")) as (ctx, device):
        return _learn(problem, Path(directory), ctx, device, seconds=seconds, rounds=rounds, hidden=hidden,
                      z_dim=z_dim, trajectories=trajectories, steps=steps, lr=lr, lr_z=lr_z, start_steps=start_steps,
                      resume=resume, seed=seed, progress=progress, start=start, prior=prior,
                      prior_weight=prior_weight, validation=validation, pool_size=pool_size, refine=refine,
                      learned_steps=learned_steps, log=log)


def _quiet(_: str) -> None:
    """The log of the ranks other than 0."""


def _learn(problem: Problem, directory: Path, ctx: Context, device: torch.device, *, seconds: float, rounds: int,
           hidden: int | None, z_dim: int | None, trajectories: int, steps: int, lr: float, lr_z: float,
           start_steps: int, resume: bool, seed: int, progress: bool, start: StartEncoder | None,
           prior: Callable[[int, torch.Generator], torch.Tensor] | None, prior_weight: float,
           validation: torch.Tensor | None, pool_size: int, refine: bool | None, learned_steps: bool | None,
           log: Callable[[str], None]) -> Landscape:
    """``learn`` in the process group ``ctx`` (inactive in one process), on this rank's ``device``."""
    if trajectories % ctx.world:
        raise LandformError(f"with {ctx.world} processes, trajectories ({trajectories}) must be a multiple of "
                            f"{ctx.world}")
    if resume:
        check_resume_world(directory, ctx)
    elif artifact_path(directory) is not None:  # as `landform fit` does: a fit is never overwritten unasked
        raise LandformError(f"{directory} already holds a landscape; pass resume=True to continue its fit, or "
                            "choose another directory")
    log, progress = (log, progress) if ctx.leader else (_quiet, False)
    budget = Budget(seconds)
    cost_model = "work" if math.isinf(seconds) else "seconds"  # without a budget nothing may depend on a clock
    generator = torch.Generator().manual_seed(seed)
    wanted = pool_size + (0 if validation is not None else VALIDATION_SIZE)
    pool = (observation_pool(problem.train_observations, generator, wanted, seconds=POOL_SHARE * seconds)
            if ctx.leader else None)
    if ctx.active:  # rank 0's observations on every rank, whatever the sampler does in each process
        shared = ctx.broadcast_tensors({"pool": pool, **({"val": validation.detach()} if validation is not None
                                                         else {})} if ctx.leader else None)
        pool, validation = shared["pool"], shared.get("val")
    if validation is not None:
        train, val, held = pool, validation.detach(), int(validation.shape[0])
    else:
        held = min(VALIDATION_SIZE, pool.shape[0] // 4)  # the first ones: the same whatever the pool's size
        train, val = pool[held:], pool[:held]
    x_dim = math.prod(problem.x_shape)
    z_dim = z_dim or max(x_dim, 32)
    torch.manual_seed(seed)  # the sized starts' initial weights: the seed's, whatever the process ran before
    encoders, width, costs = sized_models(problem, train[:256].to(device), z_dim, hidden=hidden, device=device,
                                          context=ctx, cost_model=cost_model)
    if start is not None:
        encoders = (start.to(device),)
    encoder = encoders[0]
    f_cost = f"{costs['forward_ms_per_batch']:.2f} ms of one core" if cost_model == "seconds" else \
        f"{costs['forward_work_per_batch']:.3g} FLOPs + elements"
    log(f"fit: {train.shape[0]} training and {held} held-out observations; F's pass {f_cost} per {costs['batch']}: "
        f"start {encoder.describe()}, Θ hidden {width}")
    start, start_record = learn_start(problem, directory, encoder, train, val, budget, max_steps=start_steps,
                                      resume=resume, seed=seed, device=device, progress=progress, log=log,
                                      prior=prior, prior_weight=prior_weight, context=ctx)
    baseline_runs = baseline_sweep(problem, val[-TUNE_COUNT:], seed=seed, device=device, context=ctx)
    checked = {"seed": seed, "device": device, "context": ctx}
    if start is not None:
        start_record["check"] = check_start(problem, start, val[-TUNE_COUNT:], baseline_runs, **checked)
        if start_record["check"]["dropped"] and len(encoders) > 1 and start.architecture == "conv":
            # A conv start can learn a guess where F has no gradient that an MLP does not (seen on the example
            # renderer: the conv start ended 2.5x the baseline, the MLP start 0.97x): the MLP gets one try.
            log(f"fit: descent from the conv start ends {start_record['check']['ratio']:.2f}x the baseline's loss "
                f"on held-out observations (a trap); trying the MLP start ({encoders[1].describe()})")
            dropped = {"kind": start.architecture, "check": start_record["check"]}
            start, start_record = learn_start(problem, directory, encoders[1], train, val, budget,
                                              max_steps=start_steps, resume=False, seed=seed, device=device,
                                              progress=progress, log=log, prior=prior, prior_weight=prior_weight,
                                              share=0.5, context=ctx)
            start_record["replaced"] = dropped
            start_record["check"] = check_start(problem, start, val[-TUNE_COUNT:], baseline_runs, **checked)
        if start_record["check"]["dropped"]:
            log(f"fit: descent from the learned start ends {start_record['check']['ratio']:.2f}x the baseline's "
                f"loss on held-out observations (a trap); the start is dropped: Θ is anchored at x = 0")
    refiner = None
    if start is not None and not start_record["check"]["dropped"] and refine is not False:
        refiner, start_record["refine"] = learn_refiner(problem, directory, start, train, val, budget,
                                                        max_steps=start_steps, resume=resume, seed=seed,
                                                        device=device, progress=progress, log=log, context=ctx)
    torch.manual_seed(seed)  # Θ's initial weights: the same whichever parts a resume reused
    mapping = Mapping(z_dim, problem.x_shape, hidden=width, additive=True)
    mapping.start_near_zero(0.1)  # the anchored start begins as the learned start's guess
    landscape = Landscape(start=start, mapping=mapping, settings=InferenceSettings("pure", lr_z, 0.1, 0, 200),
                          refiner=refiner)
    base = landscape.start_of(problem)  # Θ is fitted around the start its inference will use
    starts = step_starts(base, train, val, device)  # the learned steps' two turns train from the same guesses
    if learned_steps is not False:
        steps_module, start_record["learned_steps"] = learn_steps(
            problem, directory, starts, train, val, budget, max_iterations=start_steps,
            resume=resume, seed=seed, device=device, progress=progress, log=log, context=ctx)
        landscape = landscape.with_(steps=steps_module)
    selector = ThetaSelector(problem, base, val[:TUNE_COUNT], budget, lr_z=lr_z, steps=steps, seed=seed,
                             device=device, context=ctx, directory=directory)
    stopped = resume and selector.resume(mapping)  # a selection that had stopped the fit runs no more rounds
    batch_size = ctx.world * math.ceil(256 / ctx.world)  # 256, or the next multiple of the number of processes
    fitted = fit(mapping, problem.forward, problem.loss, train,
                 rounds=checkpoint_rounds(directory) if stopped else rounds, trajectories=trajectories,
                 steps=steps, lr_z=lr_z, lr=lr, weight_decay=0.1, batch_size=batch_size, base=base,
                 x_shape=problem.x_shape, checkpoint_dir=directory, resume=resume, seed=seed, device=device,
                 progress=progress, should_stop=selector)
    selector.restore_best(mapping)
    mapping.eval()
    log(f"fit: Θ {len(fitted.history)} rounds, the best at round {selector.best_round} ({selector.stopped}); "
        f"{budget.used():.0f} s so far")

    if landscape.steps is not None:
        start_record["learned_steps"] = more_steps(
            problem, directory, landscape.steps, starts, train, val, budget,
            start_record["learned_steps"], max_iterations=start_steps, seed=seed, device=device, progress=progress,
            log=log, context=ctx)
    common = {"warmup": steps, "seed": seed, "device": device, "deadline": budget.began + budget.seconds,
              "cost_model": cost_model,
              "baseline_runs": baseline_runs, "context": ctx}
    settings, tuning = tune(problem_with_start(problem, landscape), landscape, val[-TUNE_COUNT:], **common)
    if refiner is not None and refine is None:  # kept where the tuned inference from it reaches the answer sooner
        plain = landscape.with_(refiner=None)
        plain_settings, plain_tuning = tune(problem_with_start(problem, plain), plain, val[-TUNE_COUNT:], **common)
        ranks = [settings_rank(t["candidates"][t["chosen"]]) for t in (tuning, plain_tuning)]
        start_record["refine"].update(kept=ranks[0] < ranks[1], refined_rank=ranks[0], start_rank=ranks[1])
        if not ranks[0] < ranks[1]:
            landscape, settings, tuning = plain, plain_settings, plain_tuning
        log(f"fit: from the error-feedback step rank {ranks[0]}, from the start alone {ranks[1]}: the step is "
            f"{'kept' if landscape.refiner is not None else 'dropped'}")
    if landscape.steps is not None:
        start_record["learned_steps"]["kept"] = settings.learned_steps > 0
        if not settings.learned_steps:
            landscape = landscape.with_(steps=None)
        log(f"fit: the learned steps are {'kept' if settings.learned_steps else 'dropped (descent alone is faster)'}")
    landscape.requires = {"forward": fingerprint(problem.forward, problem.x_shape, device)}
    landscape.settings = settings
    landscape.record = {"recipe": "fast", "seconds": round(budget.used(), 1), "budget_seconds": seconds,
                        "cost_model": cost_model, "world_size": ctx.world,
                        "observations": {"train": int(train.shape[0]), "held_out": held},
                        "costs": costs, "start": start_record,
                        "theta": {"rounds": len(fitted.history), "best_round": selector.best_round,
                                  "stopped": selector.stopped, "validation": selector.curve,
                                  "validation_seconds": selector.times,
                                  "trajectories": trajectories, "steps": steps, "lr": lr, "lr_z": lr_z},
                        "tuning": tuning}
    leader_writes(ctx, lambda: landscape.save(directory))
    log(f"fit: {landscape.describe()} ({budget.used():.0f} s)")
    return landscape
