"""Algorithm 1: learn Θ by alternating trajectory collection and replay, plus the paper's ablations.

Each round b: (1) with Θ frozen, run N trajectories of T optimizer steps on z (z0 = 0, Adam at lr_z),
all N as one batch, and store every visited (z_t, y) in an experience replay buffer; (2) train Θ with
AdamW on T·N samples drawn from the buffer, minimizing L(F(Θ(z)), y). Eq. 2 sums t = 0..T, so the
buffer keeps z_0 too. Ablations (§4.4): ``method="online"`` updates Θ right after every z step with no
buffer; ``method="random"`` leaves Θ at its random initialization.

Under ``torchrun --nproc_per_node=K`` (see ``landform.distributed``) each of the K processes collects N/K
trajectories with its own random stream and trains Θ on batches of B/K from its own buffer with
DistributedDataParallel, so every update averages the gradients of B samples drawn from the union of
the buffers; all ranks hold the same Θ, and rank 0 alone writes the checkpoint (which holds every rank's
random state and buffer, so a resume with the same K continues exactly).

What lives where: a round's work (collecting into the buffer, training Θ on it, the online ablation) is in
``landform.replay``, which is handed the buffer, Θ's optimizer and the random stream and keeps none of them.
Everything a bitwise-exact resume depends on stays here: the one private ``_State`` (Θ's optimizer, the
buffers, every random stream), the combination across ranks and the checkpoint's save and resume, so that
state never becomes an interface between modules.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from landform import distributed
from landform.errors import LandformError
from landform.inference import Forward, Loss, check_mapping_output, initial_variable, resolve_base
from landform.io import (
    Checkpoint,
    json_bytes,
    load_optimizer_tensors,
    optimizer_tensors,
    parse_json,
    read_json,
    tensor_bytes,
    tensors_from_bytes,
)
from landform.mapping import Mapping
from landform.progress import progress_bar
from landform.replay import FitRound, NonFinite, buffer_round, online_round

Observations = torch.Tensor | Callable[[int, torch.Generator], torch.Tensor]
METHODS = ("buffer", "online", "random")
# Settings that must not change when a run is resumed (``rounds`` may grow).
_RESUME_KEYS = ("trajectories", "steps", "lr_z", "lr", "weight_decay", "batch_size", "method",
                "buffer_rounds", "init", "init_scale", "seed")
CHECKPOINT_FORMAT = 3


@dataclass
class FitResult:
    """The fitted Θ and one record per round (``FitRound``: mean losses, timings, throughput)."""

    mapping: Mapping
    history: list[FitRound] = field(default_factory=list)


def draw_observations(observations: Observations, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` observations: a random subset of a tensor (with replacement only if it is too small), or
    whatever a sampler ``(n, generator) -> Tensor`` returns."""
    if callable(observations):
        drawn = observations(n, generator)
        if not isinstance(drawn, torch.Tensor) or drawn.dim() == 0 or drawn.shape[0] != n:
            got = tuple(drawn.shape) if isinstance(drawn, torch.Tensor) else type(drawn).__name__
            raise LandformError(f"the observation sampler returned {got}, asked for {n} observations")
        if drawn.is_floating_point() and not torch.isfinite(drawn).all():
            raise LandformError("the observation sampler returned non-finite observations (NaN or Inf)")
        return drawn
    total = observations.shape[0] if observations.dim() > 0 else 0
    if total == 0:
        raise LandformError("no training observations given")
    index = torch.randperm(total, generator=generator)[:n] if total >= n else \
        torch.randint(total, (n,), generator=generator)
    return observations[index]


@dataclass(frozen=True)
class FitSettings:
    """Algorithm 1's settings: ``rounds`` B, ``trajectories`` N, ``steps`` T, Adam's step size on z along the
    trajectories (``lr_z``), AdamW's on Θ (``lr``, ``weight_decay``, ``batch_size``), the ``method`` (``buffer``:
    the paper's; ``online``; ``random``), how many rounds of trajectories are replayed (``buffer_rounds``) and
    where z starts (``init``, scaled by ``init_scale``). Keep one and vary it with ``dataclasses.replace``."""

    rounds: int = 10
    trajectories: int = 256
    steps: int = 20
    lr_z: float = 0.1
    lr: float = 1e-4
    weight_decay: float = 0.1
    batch_size: int = 256
    method: str = "buffer"
    buffer_rounds: int = 1
    init: str = "zeros"
    init_scale: float = 1.0


def fit(mapping: Mapping, forward: Forward, loss: Loss, observations: Observations,
        settings: FitSettings | None = None, *, base: Callable[[torch.Tensor], torch.Tensor] | None = None,
        x_shape: tuple[int, ...] | None = None, checkpoint_dir: str | Path | None = None, resume: bool = False,
        seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
        should_stop: Callable[[FitResult], bool] | None = None, **changes: Any) -> FitResult:
    """Fit Θ (``mapping``, trained in place) so that few steps on z invert ``forward`` (Algorithm 1), as
    ``settings`` says (``FitSettings``; any of its fields may also be given as a keyword, ``fit(..., rounds=60)``,
    which replaces that field). This is ``landform fit --recipe paper``, whose defaults differ: 60 rounds, Θ's
    lr 1e-3, hidden 1024 (the command's default recipe, the learned start + learned steps + anchored Θ +
    tuning, is ``landform.learn``).

    ``rounds`` is B, ``trajectories`` N, ``steps`` T. The buffer keeps the trajectories of the last
    ``buffer_rounds`` rounds (Algorithm 1 clears it every round: 1). With ``checkpoint_dir`` the state
    is committed atomically after every round (``landform.io.Checkpoint``: Θ, the optimizer, the random
    states and the replay buffer), and ``resume=True`` continues from it exactly as if never interrupted;
    a checkpoint whose parts disagree, or whose settings differ, is refused with a LandformError.
    ``should_stop``, called with the result after every committed round, ends the fit early when it returns True
    (a time budget, or validation that stopped improving; the recipe of ``landform.recipe`` uses it).
    """
    unknown = sorted(set(changes) - {f.name for f in fields(FitSettings)})
    if unknown:
        raise TypeError(f"fit() got unexpected keyword argument(s): {', '.join(unknown)}")
    chosen = replace(settings or FitSettings(), **changes)
    rounds, trajectories, batch_size = chosen.rounds, chosen.trajectories, chosen.batch_size
    method, buffer_rounds = chosen.method, chosen.buffer_rounds
    settings_record = _check_settings(observations, **asdict(chosen), seed=seed)
    check_mapping_output(mapping, x_shape)
    device = torch.device(device) if device is not None else next(mapping.parameters()).device
    ctx, device = distributed.context(device)
    if trajectories % ctx.world or batch_size % ctx.world:
        raise LandformError(f"with {ctx.world} processes, trajectories ({trajectories}) and batch_size "
                            f"({batch_size}) must be multiples of {ctx.world}")
    mapping.to(device)
    if isinstance(forward, torch.nn.Module):
        forward = forward.to(device)
    # the fused kernel: one pass over Θ's parameters per update, 3x faster than the default loop on a CPU
    theta_optimizer = torch.optim.AdamW(mapping.parameters(), lr=chosen.lr, weight_decay=chosen.weight_decay,
                                        fused=device.type in ("cpu", "cuda") or None)
    own_seed = distributed.rank_seed(seed, ctx.rank)
    generator = torch.Generator().manual_seed(own_seed)
    result = FitResult(mapping=mapping)
    checkpoint = Path(checkpoint_dir) if checkpoint_dir is not None else None
    cuda = [device] if device.type == "cuda" else []
    state = _State(ctx, settings_record, mapping, theta_optimizer, generator, deque(maxlen=buffer_rounds), device)

    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(own_seed)
        start_round = 0
        saved_round = None
        if checkpoint is not None and resume:
            saved_round = _resume(checkpoint, state, result)  # None if nothing was committed yet
            start_round = saved_round or 0
        model = torch.nn.parallel.DistributedDataParallel(
            mapping, device_ids=[device.index] if device.type == "cuda" else None) if ctx.active else None
        try:
            good_state = copy.deepcopy(mapping.state_dict())
            bar = progress_bar(range(start_round, rounds), enabled=progress and ctx.leader, initial=start_round,
                               total=rounds, desc=f"fit ({method})")
            for round_index in bar:
                if method == "random":
                    break
                started = time.perf_counter()
                record, faults = _round(state, forward, loss, observations, base, model)
                _refuse_faults(state, faults, good_state, round_index + 1, _kept(checkpoint, saved_round))
                good_state = copy.deepcopy(mapping.state_dict())
                record = _combine(ctx, record)
                record.round, record.seconds = round_index + 1, time.perf_counter() - started
                result.history.append(record)
                if checkpoint is not None:
                    _save(checkpoint, state, result.history, round_index + 1)
                    saved_round = round_index + 1
                stop = should_stop is not None and ctx.any(bool(should_stop(result)))
                bar.set_postfix(_postfix(result.history), refresh=False)  # shown with the bar, after its delay
                if stop:
                    break
            if checkpoint is not None and saved_round is None:  # "random", or nothing left to run: save Θ once
                _save(checkpoint, state, result.history, start_round)
        finally:
            # DDP and its backward passes leave reference cycles behind: left to the cyclic collector, they
            # may be freed only as the interpreter exits, when a gloo worker thread that drops its last work
            # can no longer take the GIL and aborts the process ("terminate called without an active
            # exception"). Free them now, while every rank is still in the group.
            if model is not None:
                model = None
                gc.collect()
    distributed.release()
    return result


def _check_settings(observations: Observations, *, rounds: int, trajectories: int, steps: int, lr_z: float,
                    lr: float, weight_decay: float, batch_size: int, method: str, buffer_rounds: int, init: str,
                    init_scale: float, seed: int) -> dict:
    """``fit``'s arguments, checked in one place with one-line errors; returns the settings a checkpoint
    records (and a resume must match: ``_RESUME_KEYS``)."""
    if method not in METHODS:
        raise LandformError(f"unknown fit method {method!r}; use one of {', '.join(METHODS)}")
    if min(rounds, trajectories, steps, batch_size, buffer_rounds) < 1:
        raise LandformError("rounds, trajectories, steps, batch_size and buffer_rounds must all be >= 1")
    if init not in ("zeros", "gaussian"):
        raise LandformError(f"unknown init {init!r}; fit starts trajectories from 'zeros' or 'gaussian'")
    for name, value in (("lr", lr), ("lr_z", lr_z), ("init_scale", init_scale)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise LandformError(f"{name} must be a finite number > 0, got {value!r}")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise LandformError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if isinstance(observations, torch.Tensor):
        if observations.dim() == 0 or observations.shape[0] == 0 or observations.numel() == 0:
            raise LandformError(f"no training observations given (shape {tuple(observations.shape)})")
        if observations.is_floating_point() and not torch.isfinite(observations).all():
            raise LandformError("the training observations hold non-finite values (NaN or Inf)")
    return {"trajectories": trajectories, "steps": steps, "lr_z": lr_z, "lr": lr, "weight_decay": weight_decay,
            "batch_size": batch_size, "method": method, "buffer_rounds": buffer_rounds, "init": init,
            "init_scale": init_scale, "seed": seed}


@dataclass
class _State:
    """Everything a checkpoint holds besides the history, on this process."""

    ctx: distributed.Context
    settings: dict
    mapping: Mapping
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    buffer: deque
    device: torch.device


def _round(state: _State, forward: Forward, loss: Loss, observations: Observations,
           base: Callable[[torch.Tensor], torch.Tensor] | None,
           model: torch.nn.Module | None) -> tuple[FitRound | None, list[str] | None]:
    """One round on this process: its N/K observations and z0 drawn from its own stream, then the trajectories
    collected and Θ trained (``landform.replay``). Returns the record and the non-finite losses seen (None: not
    watched across processes); with K processes a round that saw one runs to its end, so that all stop together."""
    settings, ctx, device = state.settings, state.ctx, state.device
    count = settings["trajectories"] // ctx.world
    y = draw_observations(observations, count, state.generator).to(device)
    base_value = resolve_base(base, y, device)
    z = initial_variable(settings["init"], (count, state.mapping.z_dim), init_scale=settings["init_scale"],
                         seed=int(torch.randint(2**31, (1,), generator=state.generator)), device=device)
    faults: list[str] | None = [] if ctx.active else None  # with K processes, all must stop together
    try:
        if settings["method"] == "buffer":
            record = buffer_round(state.mapping, forward, loss, y, base_value, z, state.buffer, state.optimizer,
                                  state.generator, steps=settings["steps"], lr_z=settings["lr_z"],
                                  batch_size=settings["batch_size"] // ctx.world, model=model, faults=faults)
        else:
            record = online_round(state.mapping, forward, loss, y, base_value, z, state.optimizer,
                                  steps=settings["steps"], lr_z=settings["lr_z"], model=model, faults=faults)
    except NonFinite as stop:
        return None, [str(stop)]
    return record, faults


def _refuse_faults(state: _State, faults: list[str] | None, good_state: dict, round_number: int, kept: str) -> None:
    """After a round: if any process saw a non-finite loss, or Θ's weights are no longer finite, put Θ back as it
    was after the last good round and stop every process with one line that says where (``kept``: what the
    checkpoint still holds)."""
    ctx, mapping = state.ctx, state.mapping
    if ctx.any(bool(faults)):
        mapping.load_state_dict(good_state)
        where = faults[0] if faults else "on another process"
        if ctx.active and faults:
            where += f" (process {ctx.rank})"
        raise LandformError(f"non-finite loss in round {round_number}, {where}{kept}")
    if not all(torch.isfinite(p).all() for p in mapping.parameters()):
        mapping.load_state_dict(good_state)
        raise LandformError(f"non-finite weights after round {round_number}{kept}")


def _combine(ctx: distributed.Context, record: FitRound) -> FitRound:
    """A round's record over all processes: mean losses, total throughput."""
    if not ctx.active:
        return record
    curve = ctx.mean([*record.collect_curve, record.train_loss, record.trajectory_steps_per_second])
    return replace(record, collect_curve=curve[:-2], loss_first=curve[0], loss_last=curve[-3], train_loss=curve[-2],
                   trajectory_steps_per_second=curve[-1] * ctx.world)


def _postfix(history: list[FitRound]) -> dict[str, str]:
    """What the fit's progress bar shows: the last round's loss at T and, where a ``should_stop`` scored
    held-out observations (the recipe's does), the latest held-out speedup at T and loss ratio to the baseline."""
    shown = {"loss": f"{history[-1].loss_last:.4g}"}
    scored = [r.scores for r in history if "validation_speedup" in r.scores]
    if scored:
        shown["val speedup"] = f"{scored[-1]['validation_speedup']:.1f}x"
        shown["val loss/baseline"] = f"{scored[-1]['validation_loss_ratio']:.2f}"
    return shown


def _kept(checkpoint: Path | None, saved_round: int | None) -> str:
    if checkpoint is None:
        return ""
    if saved_round is None:
        return f"; no checkpoint was written to {checkpoint} yet"
    return f"; the last good checkpoint (round {saved_round}) in {checkpoint} is kept"


def _refuse_legacy(directory: Path) -> None:
    """A checkpoint of the earlier four-file layout cannot be checked for consistency: refuse to resume it."""
    if not Checkpoint(directory).exists() and (directory / "state.json").exists():
        raise LandformError(f"cannot resume {directory}: it holds a checkpoint of an older landform whose four "
                            "files were not written atomically; fit into a new directory (its Θ still loads)")


def _rank_tensors(state: _State) -> dict[str, torch.Tensor]:
    """This process's own part of a checkpoint: its random states and its replay buffer."""
    tensors = {"rng.generator": state.generator.get_state(), "rng.torch": torch.get_rng_state()}
    if state.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(state.device)
    for index, (zs, picks, ys, bs) in enumerate(state.buffer):
        tensors.update({f"buffer.{index}.z": zs, f"buffer.{index}.index": picks, f"buffer.{index}.y": ys})
        if bs is not None:
            tensors[f"buffer.{index}.base"] = bs
    return tensors


def _save(directory: Path, state: _State, history: list[FitRound], completed_rounds: int) -> None:
    """Commit Θ and everything needed to resume exactly (optimizer, every process's random states and
    replay buffer) as one atomic checkpoint round directory (``landform.io.Checkpoint``), from rank 0 alone."""
    ctx, mapping = state.ctx, state.mapping
    if not all(torch.isfinite(p).all() for p in mapping.parameters()):
        raise LandformError(f"refusing to checkpoint non-finite weights to {directory}")
    blobs = ctx.gather_bytes(tensor_bytes(_rank_tensors(state), "the fit state"))
    error = None
    if ctx.leader:
        meta = {"format": CHECKPOINT_FORMAT, "settings": state.settings, "rounds_completed": completed_rounds,
                "history": [record.as_dict() for record in history],
                "param_groups": state.optimizer.state_dict()["param_groups"],
                "buffer_entries": len(state.buffer), "world_size": ctx.world}
        weights = tensor_bytes(mapping.state_dict(), "the mapping")
        mapping_meta = {**mapping.config(), "fit": state.settings, "rounds_completed": completed_rounds,
                        "world_size": ctx.world, "weights_sha256": hashlib.sha256(weights).hexdigest()}
        files = {"mapping.safetensors": weights, "mapping.json": json_bytes(mapping_meta),
                 "state.safetensors": tensor_bytes(optimizer_tensors(state.optimizer), "the fit state"),
                 "state.json": json_bytes(meta)}
        files.update({f"rank-{rank}.safetensors": blob for rank, blob in enumerate(blobs)})
        try:
            Checkpoint(directory).write(completed_rounds, files)
        except LandformError as failure:
            error = str(failure)
    error = ctx.share(error)  # every process stops if rank 0 could not write
    if error:
        raise LandformError(error)


def _resume(directory: Path, state: _State, result: FitResult) -> int | None:
    """Restore the committed checkpoint in ``directory`` (rank 0 reads and checks it, every rank gets the
    same verified bytes); returns the rounds completed, None if nothing was committed yet."""
    ctx = state.ctx
    files, error = None, None
    if ctx.leader:
        try:
            _refuse_legacy(directory)
            loaded = Checkpoint(directory).load()
            files = loaded[1] if loaded is not None else {}
            Checkpoint(directory).clean()  # what an interrupted write left behind
        except LandformError as failure:
            error = str(failure)
    error = ctx.share(error)
    if error:
        raise LandformError(error)
    if ctx.active:
        files = distributed.unpack(ctx.broadcast_bytes(distributed.pack(files) if ctx.leader else None))
    return _restore(files, state, result, f"cannot resume {directory}") if files else None


def _restore(files: dict[str, bytes], state: _State, result: FitResult, where: str) -> int:
    """Load a checkpoint's verified files into this process's state, after checking that their parts agree
    with each other, with the settings and with the number of processes; refused in one line otherwise."""
    def part(name: str) -> bytes:
        if name not in files:
            raise LandformError(f"{where}: its {name} is missing")
        return files[name]

    meta = parse_json(part("state.json"), "state.json", "checkpoint state")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise LandformError(f"{where}: unknown checkpoint format {meta.get('format')!r}")
    saved = meta.get("settings")
    if not isinstance(saved, dict):
        raise LandformError(f"{where}: its state.json has no settings")
    changed = [key for key in _RESUME_KEYS if saved.get(key) != state.settings[key]]
    if changed:
        raise LandformError(f"{where}: settings differ from the checkpoint ({', '.join(changed)})")
    world = meta.get("world_size")
    if world != state.ctx.world:
        raise LandformError(f"{where}: it was fitted by {world} process(es) and this run has {state.ctx.world}; "
                            f"resume it with torchrun --nproc_per_node={world} (each process has its own "
                            "trajectories and random stream)")
    mapping_meta = parse_json(part("mapping.json"), "mapping.json", "mapping config")
    rounds = meta.get("rounds_completed")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or mapping_meta.get("rounds_completed") != rounds:
        raise LandformError(f"{where}: its parts disagree on the rounds completed (state {rounds!r}, mapping "
                            f"{mapping_meta.get('rounds_completed')!r})")
    digest = mapping_meta.pop("weights_sha256", None)
    if digest is not None and digest != hashlib.sha256(part("mapping.safetensors")).hexdigest():
        raise LandformError(f"{where}: its mapping.safetensors and mapping.json come from different rounds")
    restored = Mapping.from_bytes(part("mapping.safetensors"), mapping_meta, "mapping.safetensors")
    if restored.config() != state.mapping.config():
        raise LandformError(f"{where}: the checkpoint's mapping has another shape")
    optimizer = tensors_from_bytes(part("state.safetensors"), "state.safetensors", what="checkpoint state")
    own = tensors_from_bytes(part(f"rank-{state.ctx.rank}.safetensors"), "rank state", what="checkpoint state")
    for rank in range(state.ctx.world):
        part(f"rank-{rank}.safetensors")
    history, entries = meta.get("history"), meta.get("buffer_entries")
    missing = [key for key in ("rng.generator", "rng.torch") if key not in own]
    if missing or not isinstance(history, list) or len(history) != rounds or not isinstance(entries, int) \
            or not 0 <= entries <= (state.buffer.maxlen or 0):
        raise LandformError(f"{where}: its state is incomplete ({', '.join(missing) or 'history or buffer'})")
    records = [FitRound.from_dict(record, where) for record in history]
    buffer = []
    for index in range(entries):
        keys = [f"buffer.{index}.{name}" for name in ("z", "index", "y")]
        if any(key not in own for key in keys):
            raise LandformError(f"{where}: its replay buffer is incomplete")
        base = own.get(f"buffer.{index}.base")
        buffer.append((*(own[key].to(state.device) for key in keys),
                       base.to(state.device) if base is not None else None))
    state.mapping.load_state_dict(restored.state_dict())
    load_optimizer_tensors(state.optimizer, optimizer, meta.get("param_groups"))
    try:
        state.generator.set_state(own["rng.generator"])
        torch.set_rng_state(own["rng.torch"])
        if "rng.cuda" in own and state.device.type == "cuda":
            torch.cuda.set_rng_state(own["rng.cuda"], state.device)
    except (RuntimeError, TypeError) as error:
        raise LandformError(f"{where}: its random state is corrupted ({error})") from None
    state.buffer.extend(buffer)
    result.history.extend(records)
    return rounds


def checkpoint_state(directory: str | Path) -> dict | None:
    """The state.json of the checkpoint committed in ``directory`` (settings, rounds_completed, history,
    world_size), or None if there is none."""
    folder = Checkpoint(directory).current()
    return None if folder is None else read_json(folder / "state.json", "checkpoint state")


def checkpoint_rounds(directory: str | Path) -> int:
    """How many rounds a checkpoint directory holds (0 if none)."""
    state = checkpoint_state(directory)
    return 0 if state is None else int(state.get("rounds_completed", 0))
