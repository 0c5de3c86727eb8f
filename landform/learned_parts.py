"""The recipe's parts learned before Θ: the learned start, its error-feedback step and the learned update steps.

Each is trained through the frozen F within its share of the recipe's wall-clock ``Budget`` (``learn_start``,
``learn_refiner``, ``learn_steps``), or reused on --resume. A part is saved as a pair, weights then config, that
rank 0 alone writes (``leader_writes``); it counts as committed only when both are there, and
``check_resume_world`` refuses, before any work, a resume with another number of processes than the saved parts
were fitted by.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from landform import distributed
from landform.distributed import Context
from landform.errors import LandformError
from landform.fitting import checkpoint_state
from landform.io import load_module_state, load_pair, pair_committed, read_json, save_pair
from landform.problem import Problem
from landform.start import RefinedStart, StartEncoder, StartTraining, train_start
from landform.steps import BATCH, LearnedSteps, check_every_for, starts_of, train_steps

START_FILE = "start"
REFINE_FILE = "refine"


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


def leader_writes(ctx: Context, write: Callable[[], Any]) -> None:
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


def _save_part(ctx: Context, path: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """A part saved for --resume (rank 0 writes it; its config records the number of processes). The old config
    goes first, so a kill between the pair's two atomic writes leaves weights without a config (not committed:
    trained again on resume), never the halves of two saves."""
    def write() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(".json").unlink()
        save_pair(path, state, {**config, "world_size": ctx.world})
    leader_writes(ctx, write)


def _load_part(ctx: Context, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """A committed part saved for --resume (weights and config), None if there is none; under torchrun rank 0
    reads and checks it and every rank gets what it read (the folder may be rank 0's alone)."""
    if not ctx.active:
        return load_pair(path, floating=True, finite=True) if pair_committed(path) else None
    loaded, error = None, None
    if ctx.leader and pair_committed(path):
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


def check_resume_world(directory: Path, ctx: Context) -> None:
    """Before any work, refuse in one line to resume with another number of processes than the saved parts (the
    start, its error-feedback step, the learned steps, Θ's checkpoint) were fitted by: each rank draws its own
    minibatches and trajectories, so the same fit cannot go on with another number."""
    error = None
    if ctx.leader:
        try:
            parts = (START_FILE, REFINE_FILE, STEPS_FILE)
            worlds = [read_json(directory / f"{part}.json", "saved part").get("world_size", 1) for part in parts
                      if pair_committed(directory / f"{part}.safetensors")]
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


def learn_start(problem: Problem, directory: Path, encoder: StartEncoder, train: torch.Tensor, val: torch.Tensor,
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


def learn_refiner(problem: Problem, directory: Path, start: StartEncoder, train: torch.Tensor, val: torch.Tensor,
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
# First order: the steps are not differentiated through the gradients they are fed. On the example decoder, 200 s
# each side by side, first order ran 18% more iterations and settled at 0.955x the answer held out; second order
# was thrown to 1.25x (experiments/learned_steps_training.py).
STEPS_SECOND_ORDER = False
STEPS_SHARED_RANK = 0  # the rank of the preconditioner every example shares (``LearnedSteps.shared_rank``), at most
# With a time budget, the steps' minibatch is halved (down to 32) until this many iterations fit in their share:
# on the conv probe decoder, 150 s each, 493 iterations of 256 ended 1.010x the answer after step 5 on test
# observations, 1,621 of 64 1.002x (within 1% from step 3); the decoder's and pose's steps plateaued after
# 2,800 to 3,600 iterations of 256.
STEPS_ITERATIONS = 2000
# Where Θ stops early on its plateau, the steps train on until this share of the budget is used (the tuning keeps
# at least the rest), if that leaves them at least STEPS_AGAIN_SHORTEST seconds (as with SHORTEST_SIZED, shorter
# turns are not worth their noise), at STEPS_AGAIN_LR: on the colour probe decoder the steps' held-out loss after
# step 5 was still falling after 300 s (1.085x the answer; the recipe had stopped them at 142 s, 1.49x, and ended
# its 8-minute fit after 4.3 minutes).
STEPS_AGAIN_SHARE = 0.85
STEPS_AGAIN_SHORTEST = 60.0
STEPS_AGAIN_LR = 5e-4


Starts = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # the start's guesses for the training and held-out
# observations the steps train from, computed on the first call and kept (both turns train from the same ones)


def step_starts(start: Callable[[torch.Tensor], torch.Tensor], train: torch.Tensor, val: torch.Tensor,
                device: torch.device) -> Starts:
    """The learned steps' ``Starts``: the start's pass over ``train`` and ``val`` (with an error-feedback step, a
    pass of F too), run once when first needed and not at all where saved steps are reused without training."""
    return functools.cache(lambda: (starts_of(start, train, device), starts_of(start, val, device)))


def more_steps(problem: Problem, directory: Path, steps: LearnedSteps, starts: Starts, train: torch.Tensor,
               val: torch.Tensor, budget: Budget, record: dict[str, Any], *, max_iterations: int, seed: int,
               device: torch.device, progress: bool, log: Callable[[str], None],
               context: Context | None = None) -> dict[str, Any]:
    """Time that Θ left unused (it stopped early on its plateau) goes back to the learned steps: trained on from
    their weights until ``STEPS_AGAIN_SHARE`` of a finite budget, ending with their best held-out weights (never
    worse than before), and saved again; the record, with an ``again`` entry where they were. Skipped where
    less than ``STEPS_AGAIN_SHORTEST`` seconds are left, without a budget, or where the saved steps (on resume)
    already had their second turn."""
    ctx = context or Context()
    seconds = budget.until(STEPS_AGAIN_SHARE)
    if "again" in record or not math.isfinite(budget.seconds) or not ctx.leader_says(seconds >= STEPS_AGAIN_SHORTEST):
        return record
    x_train, x_val = starts()
    before = record.get("held_out_per_step", [math.nan])[-1]
    batch = int(record.get("batch_size", BATCH))
    training = train_steps(steps, problem.forward, problem.loss, x_train, train, x_val, val, seconds=seconds,
                           max_iterations=max_iterations, batch_size=batch, check_every=check_every_for(batch),
                           lr=STEPS_AGAIN_LR, seed=seed + 1, device=device, progress=progress, context=ctx,
                           create_graph=STEPS_SECOND_ORDER, standardize=False)
    record = {**record, "held_out_per_step": training.per_step, "again": training.as_dict()}
    _save_part(ctx, directory / f"{STEPS_FILE}.safetensors", steps.state_dict(),
               {"steps": steps.config(), "record": record})
    log(f"fit: the learned steps trained {training.iterations} more iterations in the {training.seconds:.0f} s Θ "
        f"left ({training.stopped}); held-out loss after the last step {before:.4g} -> {training.per_step[-1]:.4g}")
    return record


def learn_steps(problem: Problem, directory: Path, starts: Starts, train: torch.Tensor, val: torch.Tensor,
                budget: Budget, *, max_iterations: int, resume: bool,
                seed: int, device: torch.device, progress: bool, log: Callable[[str], None],
                context: Context | None = None) -> tuple[LearnedSteps, dict]:
    """The learned update steps (``landform.steps``) trained through F from the start's guesses (``starts``), or the
    ones saved (on resume); ``learn`` keeps them where the tuned inference with them reaches the answer sooner."""
    ctx = context or Context()
    saved = directory / f"{STEPS_FILE}.safetensors"
    loaded = _load_part(ctx, saved) if resume else None
    if loaded is not None:
        log(f"fit: the learned steps saved in {saved} are reused")
        return _saved_part(loaded, saved, "steps", device, LearnedSteps.from_config)
    torch.manual_seed(seed)
    module = LearnedSteps(problem.x_shape, tuple(train.shape[1:]), hidden=STEPS_SIZE[0], layers=STEPS_SIZE[1],
                          shared_rank=min(math.prod(problem.x_shape), STEPS_SHARED_RANK))
    x_train, x_val = starts()
    training = train_steps(module, problem.forward, problem.loss, x_train, train, x_val, val,
                           seconds=budget.until(STEPS_SHARE), max_iterations=max_iterations, seed=seed, device=device,
                           progress=progress, context=ctx, create_graph=STEPS_SECOND_ORDER,
                           iterations_wanted=STEPS_ITERATIONS)
    record: dict[str, Any] = {"count": module.count, **training.as_dict()}
    _save_part(ctx, saved, module.state_dict(), {"steps": module.config(), "record": record})
    curve = " -> ".join(f"{v:.4g}" for v in training.per_step)
    log(f"fit: {module.count} learned steps trained {training.iterations} iterations of {training.batch_size} in "
        f"{training.seconds:.0f} s ({training.stopped}); held-out loss per step {curve}")
    return module, record
