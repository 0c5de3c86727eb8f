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
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from landform import distributed
from landform.comparison import SWEEP_LRS, start_pass_seconds, sweep_rates
from landform.distributed import Context
from landform.errors import LandformError
from landform.fitting import FitResult, checkpoint_state, fit
from landform.inference import InversionResult, invert
from landform.io import load_module_state, load_pair, read_json, save_pair
from landform.landscape import (
    InferenceSettings,
    Landscape,
    artifact_path,
    fingerprint,
    problem_with_start,
)
from landform.mapping import Mapping
from landform.metrics import max_rise, speedup_at, step_reached, steps_to_reach
from landform.problem import Problem
from landform.start import RefinedStart, StartEncoder, StartTraining, observation_pool, train_start
from landform.steps import LearnedSteps, starts_of, train_steps

RECIPES = ("fast", "paper")
START_FILE = "start"
REFINE_FILE = "refine"
THETA_SHARE = 0.3  # Θ's forward + backward may cost at most this share of F's
THETA_WIDTHS = (64, 128, 256, 512, 1024)
HORIZON = 20  # T: Θ is fitted, and judged, over the first 20 steps
REPORT_HORIZON = 200
TUNE_COUNT = 64
POOL_SIZE = 65536  # training observations: the learned steps overfit 8192 (held-out loss rising from ~1,300
# iterations on the example decoder) and keep improving on 65536
POOL_SHARE = 0.05  # ... fewer where drawing them takes more than this share of the budget
VALIDATION_SIZE = 512


# δ's step sizes tried from the start, times the baseline's: low enough that a good start's first step does not
# overshoot
START_LR_FACTORS = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005)


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
                 device: torch.device | str = "cpu",
                 context: Context | None = None) -> tuple[tuple[StartEncoder, ...], int, dict]:
    """The starts and Θ's width sized to F's cost on a batch: the richest start whose pass costs at most
    START_SHARE of F's forward + backward pass (a conv net only for image observations), then, after a conv
    net, the richest MLP within that cost (the fallback if the conv start traps descent); the widest Θ (of
    THETA_WIDTHS, unless ``hidden`` fixes it) whose pass costs at most THETA_SHARE of it; and the costs
    (``seconds_per_pass``: CPU time on one thread, so the same machine sizes the same way idle or busy).
    With an active ``context`` rank 0 measures and decides, and every rank builds the models it chose."""
    ctx = context or Context()
    if ctx.active:
        chosen = None
        if ctx.leader:
            starts, width, costs = sized_models(problem, y, z_dim, hidden=hidden, device=device)
            chosen = json.dumps({"starts": [[s.architecture, s.channels if s.architecture == "conv" else s.hidden]
                                            for s in starts], "width": width, "costs": costs})
        decided = json.loads(ctx.share(chosen) or "{}")
        if ctx.leader:
            return starts, width, costs
        built = tuple(_start_candidate(tuple(y.shape[1:]), problem.x_shape, architecture, size).to(device)
                      for architecture, size in decided["starts"])
        return built, int(decided["width"]), decided["costs"]
    batch = y.shape[0]
    f_seconds = seconds_per_pass(problem.forward, torch.zeros(batch, *problem.x_shape, device=device))
    costs: dict[str, Any] = {"batch": batch, "forward_ms_per_batch": round(1e3 * f_seconds, 3), "start_ms": {},
                             "theta_ms_per_batch": {}}
    starts: list[StartEncoder] = []
    for architecture, size in START_CHOICES:
        if architecture == "conv" and (starts or not (y.dim() == 4 and min(y.shape[2:]) >= 8)):
            continue
        candidate = _start_candidate(tuple(y.shape[1:]), problem.x_shape, architecture, size).to(device)
        seconds = seconds_per_pass(candidate, y, backward=False)
        costs["start_ms"][f"{architecture}-{size}"] = round(1e3 * seconds, 3)
        last = (architecture, size) == START_CHOICES[-1]
        if seconds <= START_SHARE * f_seconds or last:
            starts.append(candidate)
            if architecture == "mlp":
                break
    width = THETA_WIDTHS[0] if hidden is None else hidden
    for candidate_width in THETA_WIDTHS if hidden is None else ():
        theta = Mapping(z_dim, problem.x_shape, hidden=candidate_width).to(device)
        seconds = seconds_per_pass(theta, torch.zeros(batch, z_dim, device=device))
        costs["theta_ms_per_batch"][str(candidate_width)] = round(1e3 * seconds, 3)
        if seconds <= THETA_SHARE * f_seconds:
            width = candidate_width
    return tuple(starts), width, costs


def _start_candidate(y_shape: tuple[int, ...], x_shape: tuple[int, ...], architecture: str,
                     size: int) -> StartEncoder:
    """One of START_CHOICES: a conv start of ``size`` channels or an MLP start of ``size`` units."""
    return StartEncoder(y_shape, x_shape, architecture=architecture, hidden=size if architecture == "mlp" else 256,
                        channels=size)


# --------------------------------------------------------------------------------------------- the fit

@dataclass
class Budget:
    """A wall-clock budget shared by the recipe's phases."""

    seconds: float
    began: float = field(default_factory=time.perf_counter)

    def used(self) -> float:
        return time.perf_counter() - self.began

    def until(self, share: float) -> float:
        """Seconds left until ``share`` of the budget is used (at least 1)."""
        return max(1.0, share * self.seconds - self.used())


def learn(problem: Problem, directory: str | Path, *, seconds: float = 480.0, rounds: int = 300,
          hidden: int | None = None, z_dim: int | None = None, trajectories: int = 256, steps: int = HORIZON,
          lr: float = 1e-3, lr_z: float = 0.1, start_steps: int = 20000, resume: bool = False, seed: int = 0,
          device: str | torch.device | None = None, progress: bool = True, start: StartEncoder | None = None,
          prior: Callable[[int, torch.Generator], torch.Tensor] | None = None, prior_weight: float = 0.0,
          validation: torch.Tensor | None = None, pool_size: int = POOL_SIZE, refine: bool | None = False,
          learned_steps: bool | None = None, log: Callable[[str], None] = print) -> Landscape:
    """Learn the whole recipe for ``problem`` within about ``seconds`` and save it in ``directory``.

    The start trains for at most 35% of the budget, its error-feedback step (where asked for) until 45%, the
    learned update steps until 65%, Θ until 80% (each stops earlier on a validation plateau), and the rest tunes
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
        _check_world(directory, ctx)
    elif artifact_path(directory) is not None:  # as `landform fit` does: a fit is never overwritten unasked
        raise LandformError(f"{directory} already holds a landscape; pass resume=True to continue its fit, or "
                            "choose another directory")
    log, progress = (log, progress) if ctx.leader else (_quiet, False)
    budget = Budget(seconds)
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
    encoders, width, costs = sized_models(problem, train[:256].to(device), z_dim, hidden=hidden, device=device,
                                          context=ctx)
    if start is not None:
        encoders = (start.to(device),)
    encoder = encoders[0]
    log(f"fit: {train.shape[0]} training and {held} held-out observations; F's pass "
        f"{costs['forward_ms_per_batch']:.2f} ms of one core per {costs['batch']}: start {encoder.describe()}, "
        f"Θ hidden {width}")
    start, start_record = _learned_start(problem, directory, encoder, train, val, budget, max_steps=start_steps,
                                         resume=resume, seed=seed, device=device, progress=progress, log=log,
                                         prior=prior, prior_weight=prior_weight, context=ctx)
    baseline_runs = _baseline_runs(problem, val[-TUNE_COUNT:], seed=seed, device=device, context=ctx)
    checked = {"seed": seed, "device": device, "context": ctx}
    if start is not None:
        start_record["check"] = _check_start(problem, start, val[-TUNE_COUNT:], baseline_runs, **checked)
        if start_record["check"]["dropped"] and len(encoders) > 1 and start.architecture == "conv":
            # A conv start can learn a guess where F has no gradient that an MLP does not (seen on the example
            # renderer: the conv start ended 2.5x the baseline, the MLP start 0.97x): the MLP gets one try.
            log(f"fit: descent from the conv start ends {start_record['check']['ratio']:.2f}x the baseline's loss "
                f"on held-out observations (a trap); trying the MLP start ({encoders[1].describe()})")
            dropped = {"kind": start.architecture, "check": start_record["check"]}
            start, start_record = _learned_start(problem, directory, encoders[1], train, val, budget,
                                                 max_steps=start_steps, resume=False, seed=seed, device=device,
                                                 progress=progress, log=log, prior=prior, prior_weight=prior_weight,
                                                 share=0.5, context=ctx)
            start_record["replaced"] = dropped
            start_record["check"] = _check_start(problem, start, val[-TUNE_COUNT:], baseline_runs, **checked)
        if start_record["check"]["dropped"]:
            log(f"fit: descent from the learned start ends {start_record['check']['ratio']:.2f}x the baseline's "
                f"loss on held-out observations (a trap); the start is dropped: Θ is anchored at x = 0")
    refiner = None
    if start is not None and not start_record["check"]["dropped"] and refine is not False:
        refiner, start_record["refine"] = _learned_refiner(problem, directory, start, train, val, budget,
                                                           max_steps=start_steps, resume=resume, seed=seed,
                                                           device=device, progress=progress, log=log, context=ctx)
    mapping = Mapping(z_dim, problem.x_shape, hidden=width, additive=True)
    mapping.start_near_zero(0.1)  # the anchored start begins as the learned start's guess
    landscape = Landscape(start=start, mapping=mapping, settings=InferenceSettings("pure", lr_z, 0.1, 0, 200),
                          refiner=refiner)
    if learned_steps is not False:
        steps_module, start_record["learned_steps"] = _learned_steps(
            problem, directory, landscape.start_of(problem), train, val, budget, max_iterations=start_steps,
            resume=resume, seed=seed, device=device, progress=progress, log=log, context=ctx)
        landscape = landscape.with_(steps=steps_module)
    base = landscape.start_of(problem)  # Θ is fitted around the start its inference will use
    selector = _ThetaSelector(problem, base, val[:TUNE_COUNT], budget, lr_z=lr_z, steps=steps, seed=seed,
                              device=device, context=ctx)
    batch_size = ctx.world * math.ceil(256 / ctx.world)  # 256, or the next multiple of the number of processes
    fitted = fit(mapping, problem.forward, problem.loss, train, rounds=rounds, trajectories=trajectories,
                 steps=steps, lr_z=lr_z, lr=lr, weight_decay=0.1, batch_size=batch_size, base=base,
                 x_shape=problem.x_shape, checkpoint_dir=directory, resume=resume, seed=seed, device=device,
                 progress=progress, should_stop=selector)
    selector.restore_best(mapping)
    mapping.eval()
    log(f"fit: Θ {len(fitted.history)} rounds, the best at round {selector.best_round} ({selector.stopped}); "
        f"{budget.used():.0f} s so far")

    common = {"warmup": steps, "seed": seed, "device": device, "deadline": budget.began + budget.seconds,
              "baseline_runs": baseline_runs, "context": ctx}
    settings, tuning = tune(problem_with_start(problem, landscape), landscape, val[-TUNE_COUNT:], **common)
    if refiner is not None and refine is None:  # kept where the tuned inference from it reaches the answer sooner
        plain = landscape.with_(refiner=None)
        plain_settings, plain_tuning = tune(problem_with_start(problem, plain), plain, val[-TUNE_COUNT:], **common)
        ranks = [_rank(t["candidates"][t["chosen"]]) for t in (tuning, plain_tuning)]
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
                        "world_size": ctx.world,
                        "observations": {"train": int(train.shape[0]), "held_out": held},
                        "costs": costs, "start": start_record,
                        "theta": {"rounds": len(fitted.history), "best_round": selector.best_round,
                                  "stopped": selector.stopped, "validation": selector.curve,
                                  "validation_seconds": selector.times,
                                  "trajectories": trajectories, "steps": steps, "lr": lr, "lr_z": lr_z},
                        "tuning": tuning}
    _leader_writes(ctx, lambda: landscape.save(directory))
    log(f"fit: {landscape.describe()} ({budget.used():.0f} s)")
    return landscape


def _leader_writes(ctx: Context, write: Callable[[], Any]) -> None:
    """``write()`` on rank 0 (the files are its alone); its failure, in one line, stops every rank."""
    if not ctx.active:
        write()
        return
    error = None
    if ctx.leader:
        try:
            write()
        except LandformError as failure:
            error = str(failure)
        except OSError as failure:
            error = f"cannot write: {failure.strerror or failure}"
    error = ctx.share(error)
    if error:
        raise LandformError(error)


def _committed(path: Path) -> bool:
    """Whether a part saved for --resume was committed: its config, written after its weights, is there."""
    return path.exists() and path.with_suffix(".json").exists()


def _save_part(ctx: Context, path: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """A part saved for --resume (rank 0 writes it; its config records the number of processes). The old config
    goes first, so a kill between the pair's two atomic writes leaves weights without a config (not committed:
    trained again on resume), never the halves of two saves."""
    def write() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(".json").unlink()
        save_pair(path, state, {**config, "world_size": ctx.world})
    _leader_writes(ctx, write)


def _load_part(ctx: Context, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """A committed part saved for --resume (weights and config), None if there is none; under torchrun rank 0
    reads and checks it and every rank gets what it read (the folder may be rank 0's alone)."""
    if not ctx.active:
        return load_pair(path, floating=True, finite=True) if _committed(path) else None
    loaded, error = None, None
    if ctx.leader and _committed(path):
        try:
            loaded = load_pair(path, floating=True, finite=True)
        except LandformError as failure:
            error = str(failure)
    error = ctx.share(error)
    if error:
        raise LandformError(error)
    config = ctx.share(json.dumps(loaded[1]) if loaded is not None else None)
    if config is None:
        return None
    return ctx.broadcast_tensors(loaded[0] if loaded is not None else None), json.loads(config)


def _check_world(directory: Path, ctx: Context) -> None:
    """Before any work, refuse in one line to resume with another number of processes than the saved parts (the
    start, its error-feedback step, the learned steps, Θ's checkpoint) were fitted by: each rank draws its own
    minibatches and trajectories, so the same fit cannot go on with another number."""
    error = None
    if ctx.leader:
        try:
            parts = (START_FILE, REFINE_FILE, STEPS_FILE)
            worlds = [read_json(directory / f"{part}.json", "saved part").get("world_size", 1) for part in parts
                      if _committed(directory / f"{part}.safetensors")]
            state = checkpoint_state(directory)
            worlds += [state.get("world_size", 1)] if state is not None else []
            other = next((world for world in worlds if world != ctx.world), None)
            if other is not None:
                error = distributed.other_world(f"cannot resume {directory}", other, ctx.world)
        except LandformError as failure:
            error = str(failure)
    error = ctx.share(error)
    if error:
        raise LandformError(error)


def _learned_start(problem: Problem, directory: Path, encoder: StartEncoder, train: torch.Tensor, val: torch.Tensor,
                   budget: Budget, *, max_steps: int, resume: bool, seed: int, device: torch.device, progress: bool,
                   log: Callable[[str], None], prior: Callable[[int, torch.Generator], torch.Tensor] | None = None,
                   prior_weight: float = 0.0, share: float = 0.35,
                   context: Context | None = None) -> tuple[StartEncoder | None, dict]:
    """The Problem's own base if it has one, else a saved start (on resume) or a newly trained one (until
    ``share`` of the budget is used)."""
    ctx = context or Context()
    if problem.base is not None:
        log("fit: the Problem brings its own start (base); no start is trained")
        return None, {"kind": "problem base"}
    saved = directory / f"{START_FILE}.safetensors"
    loaded = _load_part(ctx, saved) if resume else None
    if loaded is not None:
        log(f"fit: the learned start saved in {saved} is reused")
        return _saved_part(loaded, saved, "start", device)
    training: StartTraining = train_start(encoder, problem.forward, problem.loss, train, val,
                                          seconds=budget.until(share), max_steps=max_steps, seed=seed, device=device,
                                          progress=progress, prior=prior, prior_weight=prior_weight, context=ctx)
    record = {"kind": encoder.architecture, **training.as_dict()}
    _save_part(ctx, saved, encoder.state_dict(), {"start": encoder.config(), "record": record})
    log(f"fit: learned start ({encoder.architecture}) trained {training.steps} steps in {training.seconds:.0f} s "
        f"({training.stopped}); held-out loss {training.validation[0][1]:.4g} -> "
        f"{min(v for _, v in training.validation):.4g}")
    return encoder, record


def _saved_part(loaded: tuple[dict[str, torch.Tensor], dict[str, Any]], saved: Path, key: str,
                   device: torch.device,
                   build: Callable[[Any, str], Any] = StartEncoder.from_config) -> tuple[Any, dict]:
    """A frozen part that a fit saved for --resume (``_load_part``): the start (``key="start"``), its
    error-feedback step (``"refiner"``) or, with ``build=LearnedSteps.from_config``, the learned steps
    (``"steps"``); and the record saved beside it."""
    state, config = loaded
    module = build(config.get(key), str(saved))
    load_module_state(module, state, str(saved))
    return module.to(device).eval().requires_grad_(False), config.get("record", {})


REFINE_SHARE = 0.45  # the error-feedback step trains until this share of the budget is used
REFINE_GAIN = 0.97  # ... and is tried if it lowers the start's held-out loss to at most this share of it
REFINE_SIZE = (256, 2)  # its MLP's width and depth: small beside most F, whose forward pass it already adds


def _learned_refiner(problem: Problem, directory: Path, start: StartEncoder, train: torch.Tensor, val: torch.Tensor,
                     budget: Budget, *, max_steps: int, resume: bool, seed: int, device: torch.device,
                     progress: bool, log: Callable[[str], None],
                     context: Context | None = None) -> tuple[StartEncoder | None, dict]:
    """The start's error-feedback step (``start.RefinedStart``: x1 = x0 + R([y, F(x0) - y, x0])), trained through
    F like the start, or the one saved (on resume); None where it did not lower the start's held-out loss by
    REFINE_GAIN. ``learn`` keeps it only if the tuned inference from it reaches the answer sooner (a better
    guess can still lose when its pass costs more than the steps it saves), unless told to keep it."""
    ctx = context or Context()
    saved = directory / f"{REFINE_FILE}.safetensors"
    loaded = _load_part(ctx, saved) if resume else None
    if loaded is not None:
        log(f"fit: the error-feedback step saved in {saved} is reused")
        refiner, record = _saved_part(loaded, saved, "refiner", device)
        return (refiner if record.get("candidate") else None), record
    torch.manual_seed(seed)
    refined = RefinedStart(start, problem.forward, hidden=REFINE_SIZE[0], layers=REFINE_SIZE[1]).to(device)
    training = train_start(refined, problem.forward, problem.loss, train, val, seconds=budget.until(REFINE_SHARE),
                           max_steps=max_steps, seed=seed, device=device, progress=progress, context=ctx)
    before, after = training.validation[0][1], min(v for _, v in training.validation)
    record: dict[str, Any] = {"kind": "mlp", **training.as_dict(), "held_out_start": before, "held_out_refined": after}
    record["candidate"] = record["kept"] = after <= REFINE_GAIN * before
    _save_part(ctx, saved, refined.refiner.state_dict(), {"refiner": refined.refiner.config(), "record": record})
    log(f"fit: error-feedback step trained {training.steps} steps in {training.seconds:.0f} s ({training.stopped}); "
        f"held-out loss {before:.4g} -> {after:.4g}{'' if record['candidate'] else ': too little, not kept'}")
    return (refined.refiner if record["candidate"] else None), record


STEPS_FILE = "steps"
STEPS_SHARE = 0.65  # the learned update steps train until this share of the budget is used
STEPS_SIZE = (256, 2)  # U's width and depth


def _learned_steps(problem: Problem, directory: Path, start: Callable[[torch.Tensor], torch.Tensor],
                   train: torch.Tensor, val: torch.Tensor, budget: Budget, *, max_iterations: int, resume: bool,
                   seed: int, device: torch.device, progress: bool, log: Callable[[str], None],
                   context: Context | None = None) -> tuple[LearnedSteps, dict]:
    """The learned update steps (``landform.steps``) trained through F from the start's guesses, or the ones saved
    (on resume); ``learn`` keeps them where the tuned inference with them reaches the answer sooner."""
    ctx = context or Context()
    saved = directory / f"{STEPS_FILE}.safetensors"
    loaded = _load_part(ctx, saved) if resume else None
    if loaded is not None:
        log(f"fit: the learned steps saved in {saved} are reused")
        return _saved_part(loaded, saved, "steps", device, LearnedSteps.from_config)
    torch.manual_seed(seed)
    module = LearnedSteps(problem.x_shape, tuple(train.shape[1:]), hidden=STEPS_SIZE[0], layers=STEPS_SIZE[1])
    x_train, x_val = starts_of(start, train, device), starts_of(start, val, device)
    training = train_steps(module, problem.forward, problem.loss, x_train, train, x_val, val,
                           seconds=budget.until(STEPS_SHARE), max_iterations=max_iterations, seed=seed, device=device,
                           progress=progress, context=ctx)
    record: dict[str, Any] = {"count": module.count, **training.as_dict()}
    _save_part(ctx, saved, module.state_dict(), {"steps": module.config(), "record": record})
    curve = " -> ".join(f"{v:.4g}" for v in training.per_step)
    log(f"fit: {module.count} learned steps trained {training.iterations} iterations in {training.seconds:.0f} s "
        f"({training.stopped}); held-out loss per step {curve}")
    return module, record


START_TRAP = 1.05  # a start from which descent ends this far above the baseline's loss is dropped


def _shared(ctx: Context, run: Callable[..., InversionResult], *tensors: torch.Tensor) -> InversionResult:
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


def _baseline_runs(problem: Problem, y_val: torch.Tensor, *, seed: int, device: torch.device | str | None,
                   context: Context | None = None) -> dict[float, InversionResult]:
    """The baseline (descent on x from 0, ``init="origin"``) at every swept step size (``compare.sweep_rates``:
    SWEEP_LRS, and past their edge while the best lies there; a rate past the grid that did not end clearly
    lower is left out, so the lowest final loss is the chosen rate's), REPORT_HORIZON steps (``_shared`` over
    the processes of ``context``)."""
    ctx = context or Context()
    runs: dict[float, InversionResult] = {}

    def final_of(lr: float) -> float:
        runs[lr] = _shared(ctx, lambda y: invert(problem.forward, problem.loss, y, lr=lr, x_shape=problem.x_shape,
                                                 init="origin", steps=REPORT_HORIZON, seed=seed, device=device,
                                                 allow_nonfinite=True), y_val)
        return _final(runs[lr])

    best, finals = sweep_rates(SWEEP_LRS, final_of)
    return {lr: run for lr, run in runs.items() if lr == best or not finals[lr] < finals[best]}


def _final(result: InversionResult) -> float:
    return float(torch.nan_to_num(result.losses.mean(1), nan=math.inf)[-1])


def _check_start(problem: Problem, start: StartEncoder, y_val: torch.Tensor,
                 baseline_runs: dict[float, InversionResult], *, seed: int, device: torch.device,
                 context: Context | None = None) -> dict:
    """Whether descent from the learned start ends near the baseline's loss on held-out observations. A start
    trained through F can settle where F's gradient vanishes (a renderer's shapes switched off: a blank image
    is a fair guess and a dead end); if descent from it ends more than START_TRAP above the baseline's, its
    head is zeroed, so it guesses x = 0 like the baseline and Θ is anchored there. Descent from the start is
    swept like the baseline's step size (``_shared`` over the processes of ``context``)."""
    ctx = context or Context()
    baseline = min(_final(run) for run in baseline_runs.values())
    with torch.no_grad():
        guess = start(y_val.to(device))

    def final_of(lr: float) -> float:
        return _final(_shared(ctx, lambda y, base: invert(
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


class _ThetaSelector:
    """``fit``'s ``should_stop``: every few rounds, Θ's mean log loss over the first T steps on held-out
    observations (Eq. 3 around the start); keeps the best Θ, stops on a plateau or at 80% of the budget."""

    def __init__(self, problem: Problem, base, val: torch.Tensor, budget: Budget, *, lr_z: float, steps: int,
                 seed: int, device: torch.device, every: int = 5, patience: int = 6,
                 context: Context | None = None) -> None:
        self.problem, self.base, self.val, self.budget, self.steps = problem, base, val, budget, steps
        self.lr_z, self.seed, self.device, self.every, self.patience = lr_z, seed, device, every, patience
        self.ctx = context or Context()
        self.best_score, self.best_state, self.best_round, self.stalls = math.inf, None, 0, 0
        self.curve: list[list[float]] = []
        self.times: list[float] = []  # the budget's seconds used at each score (rank 0's clock)
        self.stopped = "rounds"
        self._baseline: torch.Tensor | None = None

    def score(self, mapping: Mapping) -> tuple[float, torch.Tensor]:
        """Θ's mean log loss over the first T steps on the held-out observations, and its mean loss curve."""
        curve = _shared(self.ctx, lambda y: invert(self.problem.forward, self.problem.loss, y, mapping=mapping,
                                                   lr=self.lr_z, steps=self.steps, seed=self.seed, base=self.base,
                                                   device=self.device, allow_nonfinite=True), self.val).losses.mean(1)
        mapping.train()
        return float(torch.nan_to_num(curve.clamp_min(1e-30).log(), nan=math.inf).mean()), curve

    def baseline(self) -> torch.Tensor:
        """The baseline's mean loss curve over T steps on the held-out observations (lr swept like
        ``compare.sweep_lr``; computed once)."""
        if self._baseline is None:
            runs: dict[float, InversionResult] = {}

            def final_of(lr: float) -> float:
                runs[lr] = _shared(self.ctx, lambda y: invert(
                    self.problem.forward, self.problem.loss, y, lr=lr, steps=self.steps, seed=self.seed,
                    device=self.device, allow_nonfinite=True, x_shape=self.problem.x_shape, init="origin"), self.val)
                return _final(runs[lr])

            best_lr, _ = sweep_rates(SWEEP_LRS, final_of)
            self._baseline = torch.nan_to_num(runs[best_lr].losses.mean(1), nan=math.inf)
        return self._baseline

    def __call__(self, result: FitResult) -> bool:
        done = len(result.history)
        over = self.ctx.leader_says(self.budget.until(0.8) <= 1.0)
        if done % self.every and not over:
            return False
        value, curve = self.score(result.mapping)
        self.curve.append([result.history[-1].round, value])
        self.times.append(round(self.budget.used(), 3))
        baseline = self.baseline()  # shown on fit's progress bar: the held-out speedup at T and the loss ratio
        result.history[-1].scores["validation_speedup"] = speedup_at(baseline, curve, self.steps)
        result.history[-1].scores["validation_loss_ratio"] = float(curve[-1] / baseline[-1].clamp_min(1e-30))
        if value < self.best_score - 1e-3:
            self.best_score, self.best_round, self.stalls = value, result.history[-1].round, 0
            self.best_state = {k: v.detach().clone() for k, v in result.mapping.state_dict().items()}
        else:
            self.stalls += 1
        if self.stalls >= self.patience:
            self.stopped = "plateau"
            return True
        if over:
            self.stopped = "time"
            return True
        return False

    def restore_best(self, mapping: Mapping) -> None:
        if self.best_state is not None:
            mapping.load_state_dict(self.best_state)


# ---------------------------------------------------------------------------------------------- tuning

def tune(problem: Problem, landscape: Landscape, y_val: torch.Tensor, *, warmup: int = HORIZON, seed: int = 0,
         device: torch.device | str | None = None, deadline: float = math.inf,
         baseline_runs: dict[float, InversionResult] | None = None,
         context: Context | None = None) -> tuple[InferenceSettings, dict]:
    """The inference settings that reach the answer (within ANSWER_TOLERANCE of the swept baseline's step-200
    loss on ``y_val``) soonest in wall-clock time, then end lowest (``_rank``): start + δ, Θ + δ and Eq. 3 around
    the start, each with step sizes swept low enough that a good start's first step does not overshoot, with and
    without the landscape's learned steps (``problem.base`` is the landscape's start). Past ``deadline``
    (``time.perf_counter()``) the candidates not yet run are skipped, and listed. ``baseline_runs`` are
    ``_baseline_runs`` on ``y_val``, if already run.

    With an active ``context`` every candidate runs ``_shared`` over the processes (each its share of
    ``y_val``, judged on all of them with rank 0's timings), the deadline is rank 0's, and the chosen settings
    and the record are rank 0's, broadcast: every rank returns the same."""
    ctx = context or Context()
    common = {"steps": REPORT_HORIZON, "seed": seed, "device": device, "allow_nonfinite": True}
    runs = baseline_runs or _baseline_runs(problem, y_val, seed=seed, device=device, context=ctx)
    finals = {lr: _final(r) for lr, r in runs.items()}
    baseline_lr = min(finals, key=finals.get)
    baseline = runs[baseline_lr]
    reference = baseline.losses.mean(1).double()
    start_seconds = start_pass_seconds(problem.base, y_val) if not ctx.active else \
        float(ctx.from_leader(torch.tensor([start_pass_seconds(problem.base, ctx.shard(y_val))],
                                           dtype=torch.float64))[0])
    candidates: list[tuple[InferenceSettings, InversionResult]] = []
    skipped: list[str] = []

    def run(settings: InferenceSettings) -> None:
        if ctx.leader_says(time.perf_counter() > deadline) and len(candidates) >= 3:  # out of budget: the first
            skipped.append(_key(settings))  # candidates stay
            return
        method = landscape.with_(settings=settings).method()
        candidates.append((settings, _shared(ctx, lambda y: method.run(problem, y, method.lr, **common), y_val)))

    costs: dict[tuple[str, int], float] = {}  # the least seconds per step seen, per kind of step

    def judged(settings: InferenceSettings, result: InversionResult) -> dict:
        lead, descent = _step_seconds(result, settings.learned_steps)
        kind = (settings.mode, settings.learned_steps)
        costs[kind] = min(costs.get(kind, math.inf), descent)
        if settings.learned_steps:
            costs[("learned", settings.learned_steps)] = min(costs.get(("learned", settings.learned_steps), math.inf),
                                                             lead)
        return _judge(reference, result, settings.learned_steps, costs[("learned", settings.learned_steps)]
                      if settings.learned_steps else 0.0, costs[kind], baseline.seconds_per_step, start_seconds)

    leads = [0] + ([landscape.steps.count] if landscape.steps is not None else [])
    for factor in START_LR_FACTORS:  # with and without the learned steps in turn: both are tried by a deadline
        for lead in leads:
            run(InferenceSettings("start", 0.1, baseline_lr * factor, 0, REPORT_HORIZON, lead))
    for lead in leads:
        # δ's step size from a good start is often far below the baseline's from 0: the best start-mode rate
        # joins the residual mode's choices.
        tried = [(s, r) for s, r in candidates if s.mode == "start" and s.learned_steps == lead]
        best_start = min(tried, key=lambda c: _rank(judged(*c)))[0] if tried else None
        rates = (baseline_lr * 0.5, baseline_lr) + ((best_start.lr_x,) if best_start is not None else ())
        for lr_z in (0.03, 0.1, 0.3):
            for lr_x in dict.fromkeys(rates):
                run(InferenceSettings("residual", lr_z, lr_x, warmup, REPORT_HORIZON, lead))
        for lr_z in (0.01, 0.03, 0.1, 0.3):
            run(InferenceSettings("pure", lr_z, baseline_lr, 0, REPORT_HORIZON, lead))
    for s, r in candidates:  # every kind's least cost first: a busy machine's slow run does not decide
        judged(s, r)
    table = {_key(s): judged(s, r) for s, r in candidates}
    best = min(candidates, key=lambda c: _rank(table[_key(c[0])]))[0]
    if best.mode == "residual" and not ctx.leader_says(time.perf_counter() > deadline):  # the warm-up: Θ alone
        run(replace(best, warmup=0))  # for T steps, or not
        table[_key(candidates[-1][0])] = judged(*candidates[-1])
        best = min((best, candidates[-1][0]), key=lambda s: _rank(table[_key(s)]))
    curve = dict((_key(s), r) for s, r in candidates)[_key(best)].losses.mean(1).double()
    enough = _steps_that_pay(curve)
    settings = replace(best, steps=enough)
    target = float(reference[-1]) * (1 + ANSWER_TOLERANCE)
    record = {"baseline_lr": baseline_lr, "baseline_final": {str(k): v for k, v in finals.items()},
              "baseline_steps_to_answer_1pct": step_reached(reference, target),
              "count": int(y_val.shape[0]), "start_ms": round(1e3 * start_seconds, 3),
              "candidates": table, "chosen": _key(best), "steps_that_pay": enough, "skipped": skipped}
    if ctx.active:  # rank 0's decision on every rank (timings never differ between ranks' decisions)
        decided = json.loads(ctx.share(json.dumps({"settings": asdict(settings), "record": record})) or "{}")
        settings, record = InferenceSettings(**decided["settings"]), decided["record"]
    return settings, record


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
    curve = torch.nan_to_num(result.losses.mean(1).double(), nan=math.inf)
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


def _rank(judged: dict) -> tuple[float, float, float]:
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
