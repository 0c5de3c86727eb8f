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

Why one module: the buffer and online rounds, the combination across ranks and the checkpoint's
save and resume all read and write the one private ``_State`` (Θ's optimizer, the buffers, every random
stream), and a bitwise-exact resume depends on all of them agreeing on it; split, that state would become
an interface between modules.
"""

from __future__ import annotations

import copy
import functools
import gc
import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from landform import distributed
from landform.errors import LandformError
from landform.inference import Forward, Loss, check_mapping_output, initial_variable, objective, resolve_base
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

Observations = torch.Tensor | Callable[[int, torch.Generator], torch.Tensor]
METHODS = ("buffer", "online", "random")
# Settings that must not change when a run is resumed (``rounds`` may grow).
_RESUME_KEYS = ("trajectories", "steps", "lr_z", "lr", "weight_decay", "batch_size", "method",
                "buffer_rounds", "init", "init_scale", "seed")
CHECKPOINT_FORMAT = 3


@dataclass
class FitResult:
    """The fitted Θ and one record per round (mean losses, timings, throughput)."""

    mapping: Mapping
    history: list[dict] = field(default_factory=list)


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


def fit(mapping: Mapping, forward: Forward, loss: Loss, observations: Observations, *, rounds: int = 10,
        trajectories: int = 256, steps: int = 20, lr_z: float = 0.1, lr: float = 1e-4,
        weight_decay: float = 0.1, batch_size: int = 256, method: str = "buffer", buffer_rounds: int = 1,
        init: str = "zeros", init_scale: float = 1.0,
        base: Callable[[torch.Tensor], torch.Tensor] | None = None, x_shape: tuple[int, ...] | None = None,
        checkpoint_dir: str | Path | None = None, resume: bool = False, seed: int = 0,
        device: str | torch.device | None = None, progress: bool = True,
        should_stop: Callable[[FitResult], bool] | None = None) -> FitResult:
    """Fit Θ (``mapping``, trained in place) so that few steps on z invert ``forward`` (Algorithm 1).
    This is ``landform fit --recipe paper``, whose defaults differ: 60 rounds, Θ's lr 1e-3, hidden 1024 (the
    command's default recipe, the learned start + learned steps + anchored Θ + tuning, is ``landform.learn``).

    ``rounds`` is B, ``trajectories`` N, ``steps`` T. The buffer keeps the trajectories of the last
    ``buffer_rounds`` rounds (Algorithm 1 clears it every round: 1). With ``checkpoint_dir`` the state
    is committed atomically after every round (``landform.io.Checkpoint``: Θ, the optimizer, the random
    states and the replay buffer), and ``resume=True`` continues from it exactly as if never interrupted;
    a checkpoint whose parts disagree, or whose settings differ, is refused with a LandformError.
    ``should_stop``, called with the result after every committed round, ends the fit early when it returns True
    (a time budget, or validation that stopped improving; the recipe of ``landform.recipe`` uses it).
    """
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
    check_mapping_output(mapping, x_shape)
    settings = {"trajectories": trajectories, "steps": steps, "lr_z": lr_z, "lr": lr,
                "weight_decay": weight_decay, "batch_size": batch_size, "method": method,
                "buffer_rounds": buffer_rounds, "init": init, "init_scale": init_scale, "seed": seed}
    device = torch.device(device) if device is not None else next(mapping.parameters()).device
    ctx, device = distributed.context(device)
    if trajectories % ctx.world or batch_size % ctx.world:
        raise LandformError(f"with {ctx.world} processes, trajectories ({trajectories}) and batch_size "
                            f"({batch_size}) must be multiples of {ctx.world}")
    local_trajectories, local_batch = trajectories // ctx.world, batch_size // ctx.world
    mapping.to(device)
    if isinstance(forward, torch.nn.Module):
        forward = forward.to(device)
    # the fused kernel: one pass over Θ's parameters per update, 3x faster than the default loop on a CPU
    theta_optimizer = torch.optim.AdamW(mapping.parameters(), lr=lr, weight_decay=weight_decay,
                                        fused=device.type in ("cpu", "cuda") or None)
    own_seed = distributed.rank_seed(seed, ctx.rank)
    generator = torch.Generator().manual_seed(own_seed)
    result = FitResult(mapping=mapping)
    checkpoint = Path(checkpoint_dir) if checkpoint_dir is not None else None
    cuda = [device] if device.type == "cuda" else []
    state = _State(ctx, settings, mapping, theta_optimizer, generator, deque(maxlen=buffer_rounds), device)

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
                y = draw_observations(observations, local_trajectories, generator).to(device)
                base_value = resolve_base(base, y, device)
                z = initial_variable(init, (local_trajectories, mapping.z_dim), init_scale=init_scale,
                                     seed=int(torch.randint(2**31, (1,), generator=generator)), device=device)
                faults: list[str] | None = [] if ctx.active else None  # with K processes, all must stop together
                try:
                    if method == "buffer":
                        record = _buffer_round(mapping, forward, loss, y, base_value, z, state.buffer, theta_optimizer,
                                               generator, steps=steps, lr_z=lr_z, batch_size=local_batch, model=model,
                                               faults=faults)
                    else:
                        record = _online_round(mapping, forward, loss, y, base_value, z, theta_optimizer,
                                               steps=steps, lr_z=lr_z, model=model, faults=faults)
                except _NonFinite as stop:
                    faults = [str(stop)]
                if ctx.any(bool(faults)):
                    mapping.load_state_dict(good_state)
                    where = faults[0] if faults else "on another process"
                    if ctx.active and faults:
                        where += f" (process {ctx.rank})"
                    raise LandformError(f"non-finite loss in round {round_index + 1}, {where}"
                                        f"{_kept(checkpoint, saved_round)}")
                if not all(torch.isfinite(p).all() for p in mapping.parameters()):
                    mapping.load_state_dict(good_state)
                    raise LandformError(f"non-finite weights after round {round_index + 1}"
                                        f"{_kept(checkpoint, saved_round)}")
                good_state = copy.deepcopy(mapping.state_dict())
                record = _combine(ctx, record)
                record.update(round=round_index + 1, seconds=time.perf_counter() - started)
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


def _combine(ctx: distributed.Context, record: dict) -> dict:
    """A round's record over all processes: mean losses, total throughput."""
    if not ctx.active:
        return record
    curve = ctx.mean([*record["collect_curve"], record["train_loss"], record["trajectory_steps_per_second"]])
    record.update(collect_curve=curve[:-2], loss_first=curve[0], loss_last=curve[-3], train_loss=curve[-2],
                  trajectory_steps_per_second=curve[-1] * ctx.world)
    return record


def _postfix(history: list[dict]) -> dict[str, str]:
    """What the fit's progress bar shows: the last round's loss at T and, where a ``should_stop`` scored
    held-out observations (the recipe's does), the latest held-out speedup at T and loss ratio to the baseline."""
    shown = {"loss": f"{history[-1]['loss_last']:.4g}"}
    scored = [r for r in history if "validation_speedup" in r]
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


class _NonFinite(Exception):
    """Raised inside a round when a loss is not finite; ``fit`` turns it into a LandformError."""


def _finite(values: torch.Tensor, where: str, faults: list[str] | None = None) -> torch.Tensor:
    """``values``, after checking they are finite: a non-finite one stops the round at once, or, with K
    processes (``faults`` given), is recorded and the round runs on so that all ranks stop together."""
    if not torch.isfinite(values).all():
        if faults is None:
            raise _NonFinite(where)
        if not faults:
            faults.append(where)
    return values


def _theta_step(mean: torch.Tensor, parameters: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                distributed_model: bool, divisor: float = 1.0, extra: tuple[torch.Tensor, ...] = ()) -> tuple:
    """Sets the gradients of ``mean`` for Θ's parameters (averaged over processes by DDP when there are
    several; F's parameters get none), divided by ``divisor``; returns the gradients of ``extra``."""
    if distributed_model:
        for parameter in parameters:
            parameter.grad = None
        for tensor in extra:
            tensor.grad = None
        torch.autograd.backward(mean, inputs=[*extra, *parameters])
        extra_grads = tuple(tensor.grad for tensor in extra)
        if divisor != 1.0:
            for parameter in parameters:
                parameter.grad = parameter.grad / divisor
    else:
        grads = torch.autograd.grad(mean, [*extra, *parameters])
        extra_grads = grads[: len(extra)]
        for parameter, grad in zip(parameters, grads[len(extra):], strict=True):
            parameter.grad = grad / divisor if divisor != 1.0 else grad
    return extra_grads


def _apply(module: torch.nn.Module, z: torch.Tensor, base: torch.Tensor | None,
           mapping: Mapping | None = None) -> torch.Tensor:
    """x = Θ(z) (or base + Θ(z)); ``module`` may be Θ wrapped in DistributedDataParallel."""
    return module(z, base) if (mapping or module).additive else module(z)


def _prepared(loss: Loss, y: torch.Tensor) -> tuple[Loss, tuple[torch.Tensor, ...] | None]:
    """``loss`` with what depends on the observations alone computed once: a loss with a ``prepare(y)``
    method (``ImageLoss``: the observations' features) returns per-observation tensors, batch first, and
    takes them back as ``loss(y_hat, y, prepared=...)``; any other loss is used as it is."""
    prepare = getattr(loss, "prepare", None)
    if not callable(prepare):
        return loss, None
    prepared = tuple(prepare(y))
    return functools.partial(loss, prepared=prepared), prepared


class _Frozen:
    """Θ's parameters need no gradient while trajectories are collected (only z does): autograd then keeps
    nothing for them. Restored on exit, whatever happens."""

    def __init__(self, mapping: Mapping) -> None:
        self.parameters = [p for p in mapping.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for parameter in self.parameters:
            parameter.requires_grad_(False)

    def __exit__(self, *_: object) -> None:
        for parameter in self.parameters:
            parameter.requires_grad_(True)


def _buffer_round(mapping: Mapping, forward: Forward, loss: Loss, y: torch.Tensor, base: torch.Tensor | None,
                  z: torch.Tensor, buffer: deque, theta_optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, *, steps: int, lr_z: float, batch_size: int,
                  model: torch.nn.Module | None = None, faults: list[str] | None = None) -> dict:
    """Collect N trajectories with Θ frozen into the buffer, then replay T·N samples to train Θ. What the loss
    computes from the observations alone (``_prepared``) is computed once a round, not at every step."""
    z.requires_grad_(True)
    z_optimizer = torch.optim.Adam([z], lr=lr_z)
    visited = [z.detach().clone()]
    collect_losses = []
    collect_start = time.perf_counter()
    round_loss, prepared = _prepared(loss, y)
    with _Frozen(mapping):
        for t in range(steps):
            values, _ = objective(forward, round_loss, _apply(mapping, z, base), y, None)
            collect_losses.append(_finite(values, f"collection step {t + 1}", faults).mean().item())
            (z.grad,) = torch.autograd.grad(values.sum(), [z])  # Θ is frozen while collecting
            z_optimizer.step()
            visited.append(z.detach().clone())
    collect_seconds = time.perf_counter() - collect_start
    n = y.shape[0]
    buffer.append((torch.cat(visited), torch.arange(n, device=y.device).repeat(steps + 1), y, base))
    parameters = list(mapping.parameters())

    pool = [(zs, index, ys, bs) for zs, index, ys, bs in buffer]
    # the current round's observations are ``y`` itself; older rounds' (buffer_rounds > 1) are prepared anew
    # from their stored observations, so a resumed fit computes exactly what an uninterrupted one did
    pool_prepared = None if prepared is None else [_prepared(loss, ys)[1] for ys in (e[2] for e in pool[:-1])] + \
        [prepared]
    sizes = torch.tensor([entry[0].shape[0] for entry in pool])
    offsets = torch.cumsum(sizes, 0) - sizes
    train_losses = []
    updates = math.ceil(steps * n / batch_size)
    for j in range(updates):
        flat = torch.randint(int(sizes.sum()), (batch_size,), generator=generator)
        z_batch, y_batch, base_batch, prepared_batch = _gather(pool, sizes, offsets, flat, pool_prepared)
        batch_loss = loss if prepared_batch is None else functools.partial(loss, prepared=prepared_batch)
        values, _ = objective(forward, batch_loss, _apply(model or mapping, z_batch, base_batch, mapping), y_batch,
                              None)
        mean = _finite(values, f"training step {j + 1}", faults).mean()
        _theta_step(mean, parameters, theta_optimizer, model is not None)
        theta_optimizer.step()
        train_losses.append(mean.item())
    return {"loss_first": collect_losses[0], "loss_last": collect_losses[-1],
            "collect_curve": collect_losses, "train_loss": sum(train_losses) / len(train_losses),
            "theta_updates": updates, "trajectory_steps_per_second": steps * n / collect_seconds}


def _gather(pool: list, sizes: torch.Tensor, offsets: torch.Tensor, flat: torch.Tensor,
            pool_prepared: list[tuple[torch.Tensor, ...]] | None = None) -> tuple:
    """Minibatch (z, y, base, prepared) for flat buffer indices spanning the rounds kept in the buffer
    (``prepared``: the rows of each round's prepared observations, None without them)."""
    z_parts, y_parts, base_parts, prepared_parts = [], [], [], []
    for entry, (zs, index, ys, bs), size, offset in zip(range(len(pool)), pool, sizes.tolist(), offsets.tolist(),
                                                        strict=True):
        local = flat[(flat >= offset) & (flat < offset + size)] - offset
        if local.numel() == 0:
            continue
        local = local.to(zs.device)
        z_parts.append(zs[local])
        rows = index[local]
        y_parts.append(ys[rows])
        if bs is not None:
            base_parts.append(bs[rows])
        if pool_prepared is not None:
            prepared_parts.append([tensor[rows] for tensor in pool_prepared[entry]])
    prepared = None if pool_prepared is None else \
        tuple(torch.cat(parts) for parts in zip(*prepared_parts, strict=True))
    return torch.cat(z_parts), torch.cat(y_parts), (torch.cat(base_parts) if base_parts else None), prepared


def _online_round(mapping: Mapping, forward: Forward, loss: Loss, y: torch.Tensor, base: torch.Tensor | None,
                  z: torch.Tensor, theta_optimizer: torch.optim.Optimizer, *, steps: int, lr_z: float,
                  model: torch.nn.Module | None = None, faults: list[str] | None = None) -> dict:
    """The ablation without alternation or buffer: one backward per step updates both z and Θ."""
    z.requires_grad_(True)
    z_optimizer = torch.optim.Adam([z], lr=lr_z)
    losses = []
    collect_start = time.perf_counter()
    round_loss, _ = _prepared(loss, y)
    for t in range(steps):
        values, _ = objective(forward, round_loss, _apply(model or mapping, z, base, mapping), y, None)
        losses.append(_finite(values, f"online step {t + 1}", faults).mean().item())
        parameters = list(mapping.parameters())
        # Θ descends the mean loss, each z its own loss
        (z.grad,) = _theta_step(values.sum(), parameters, theta_optimizer, model is not None,
                                divisor=y.shape[0], extra=(z,))
        z_optimizer.step()
        theta_optimizer.step()
    seconds = time.perf_counter() - collect_start
    return {"loss_first": losses[0], "loss_last": losses[-1], "collect_curve": losses,
            "train_loss": sum(losses) / len(losses), "theta_updates": steps,
            "trajectory_steps_per_second": steps * y.shape[0] / seconds}


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


def _save(directory: Path, state: _State, history: list[dict], completed_rounds: int) -> None:
    """Commit Θ and everything needed to resume exactly (optimizer, every process's random states and
    replay buffer) as one atomic checkpoint round directory (``landform.io.Checkpoint``), from rank 0 alone."""
    ctx, mapping = state.ctx, state.mapping
    if not all(torch.isfinite(p).all() for p in mapping.parameters()):
        raise LandformError(f"refusing to checkpoint non-finite weights to {directory}")
    blobs = ctx.gather_bytes(tensor_bytes(_rank_tensors(state), "the fit state"))
    error = None
    if ctx.leader:
        meta = {"format": CHECKPOINT_FORMAT, "settings": state.settings, "rounds_completed": completed_rounds,
                "history": history, "param_groups": state.optimizer.state_dict()["param_groups"],
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
    result.history.extend(history)
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
