"""Algorithm 1: learn Θ by alternating trajectory collection and replay, plus the paper's ablations.

Each round b: (1) with Θ frozen, run N trajectories of T optimizer steps on z (z0 = 0, Adam at lr_z),
all N as one batch, and store every visited (z_t, y) in an experience replay buffer; (2) train Θ with
AdamW on T·N samples drawn from the buffer, minimizing L(F(Θ(z)), y). Eq. 2 sums t = 0..T, so the
buffer keeps z_0 too. Ablations (§4.4): ``method="online"`` updates Θ right after every z step with no
buffer; ``method="random"`` leaves Θ at its random initialization.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from landform.errors import LandformError
from landform.inference import Forward, Loss, check_mapping_output, initial_variable, objective, resolve_base
from landform.io import (
    Checkpoint,
    json_bytes,
    load_optimizer_tensors,
    load_tensors,
    optimizer_tensors,
    read_json,
    tensor_bytes,
)
from landform.mapping import Mapping

Observations = torch.Tensor | Callable[[int, torch.Generator], torch.Tensor]
METHODS = ("buffer", "online", "random")
# Settings that must not change when a run is resumed (``rounds`` may grow).
_RESUME_KEYS = ("trajectories", "steps", "lr_z", "lr", "weight_decay", "batch_size", "method",
                "buffer_rounds", "init", "init_scale", "seed")
CHECKPOINT_FORMAT = 2


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
        device: str | torch.device | None = None, progress: bool = True) -> FitResult:
    """Fit Θ (``mapping``, trained in place) so that few steps on z invert ``forward`` (Algorithm 1).

    ``rounds`` is B, ``trajectories`` N, ``steps`` T. The buffer keeps the trajectories of the last
    ``buffer_rounds`` rounds (Algorithm 1 clears it every round: 1). With ``checkpoint_dir`` the state
    is committed atomically after every round (``landform.io.Checkpoint``: Θ, the optimizer, the random
    states and the replay buffer), and ``resume=True`` continues from it exactly as if never interrupted;
    a checkpoint whose parts disagree, or whose settings differ, is refused with a LandformError.
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
    mapping.to(device)
    if isinstance(forward, torch.nn.Module):
        forward = forward.to(device)
    theta_optimizer = torch.optim.AdamW(mapping.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    result = FitResult(mapping=mapping)
    checkpoint = Path(checkpoint_dir) if checkpoint_dir is not None else None
    cuda = [device] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        start_round = 0
        buffer: deque[tuple] = deque(maxlen=buffer_rounds)
        saved_round = None
        if checkpoint is not None:
            store = Checkpoint(checkpoint)
            if resume:
                _refuse_legacy(checkpoint)
                if store.exists():
                    start_round = _restore(store, settings, mapping, theta_optimizer, generator, result, buffer,
                                           device)
                    saved_round = start_round
                store.clean()  # what an interrupted write left behind
        good_state = copy.deepcopy(mapping.state_dict())
        bar = tqdm(range(start_round, rounds), initial=start_round, total=rounds, disable=not progress,
                   desc=f"fit ({method})", delay=1.0)
        for round_index in bar:
            if method == "random":
                break
            started = time.perf_counter()
            y = draw_observations(observations, trajectories, generator).to(device)
            base_value = resolve_base(base, y, device)
            z = initial_variable(init, (trajectories, mapping.z_dim), init_scale=init_scale,
                                 seed=int(torch.randint(2**31, (1,), generator=generator)), device=device)
            try:
                if method == "buffer":
                    record = _buffer_round(mapping, forward, loss, y, base_value, z, buffer, theta_optimizer,
                                           generator, steps=steps, lr_z=lr_z, batch_size=batch_size)
                else:
                    record = _online_round(mapping, forward, loss, y, base_value, z, theta_optimizer,
                                           steps=steps, lr_z=lr_z)
            except _NonFinite as stop:
                mapping.load_state_dict(good_state)
                raise LandformError(f"non-finite loss in round {round_index + 1}, {stop}"
                                    f"{_kept(checkpoint, saved_round)}") from None
            if not all(torch.isfinite(p).all() for p in mapping.parameters()):
                mapping.load_state_dict(good_state)
                raise LandformError(f"non-finite weights after round {round_index + 1}"
                                    f"{_kept(checkpoint, saved_round)}")
            good_state = copy.deepcopy(mapping.state_dict())
            record.update(round=round_index + 1, seconds=time.perf_counter() - started)
            result.history.append(record)
            bar.set_postfix(loss=f"{record['loss_last']:.4g}", refresh=False)  # shown with the bar, after its delay
            if checkpoint is not None:
                _save(checkpoint, settings, mapping, theta_optimizer, generator, result.history, buffer,
                      round_index + 1)
                saved_round = round_index + 1
        if checkpoint is not None and saved_round is None:  # "random", or nothing left to run: save Θ once
            _save(checkpoint, settings, mapping, theta_optimizer, generator, result.history, buffer, start_round)
    return result


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


def _finite(values: torch.Tensor, where: str) -> torch.Tensor:
    if not torch.isfinite(values).all():
        raise _NonFinite(where)
    return values


def _apply(mapping: Mapping, z: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    return mapping(z, base) if mapping.additive else mapping(z)


def _buffer_round(mapping: Mapping, forward: Forward, loss: Loss, y: torch.Tensor, base: torch.Tensor | None,
                  z: torch.Tensor, buffer: deque, theta_optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, *, steps: int, lr_z: float, batch_size: int) -> dict:
    """Collect N trajectories with Θ frozen into the buffer, then replay T·N samples to train Θ."""
    z.requires_grad_(True)
    z_optimizer = torch.optim.Adam([z], lr=lr_z)
    visited = [z.detach().clone()]
    collect_losses = []
    collect_start = time.perf_counter()
    for t in range(steps):
        values, _ = objective(forward, loss, _apply(mapping, z, base), y, None)
        collect_losses.append(_finite(values, f"collection step {t + 1}").mean().item())
        (z.grad,) = torch.autograd.grad(values.sum(), [z])  # Θ is frozen while collecting
        z_optimizer.step()
        visited.append(z.detach().clone())
    collect_seconds = time.perf_counter() - collect_start
    n = y.shape[0]
    buffer.append((torch.cat(visited), torch.arange(n, device=y.device).repeat(steps + 1), y, base))
    parameters = list(mapping.parameters())

    pool = [(zs, index, ys, bs) for zs, index, ys, bs in buffer]
    sizes = torch.tensor([entry[0].shape[0] for entry in pool])
    offsets = torch.cumsum(sizes, 0) - sizes
    train_losses = []
    updates = math.ceil(steps * n / batch_size)
    for j in range(updates):
        flat = torch.randint(int(sizes.sum()), (batch_size,), generator=generator)
        z_batch, y_batch, base_batch = _gather(pool, sizes, offsets, flat)
        values, _ = objective(forward, loss, _apply(mapping, z_batch, base_batch), y_batch, None)
        mean = _finite(values, f"training step {j + 1}").mean()
        for parameter, grad in zip(parameters, torch.autograd.grad(mean, parameters), strict=True):
            parameter.grad = grad
        theta_optimizer.step()
        train_losses.append(mean.item())
    return {"loss_first": collect_losses[0], "loss_last": collect_losses[-1],
            "collect_curve": collect_losses, "train_loss": sum(train_losses) / len(train_losses),
            "theta_updates": updates, "trajectory_steps_per_second": steps * n / collect_seconds}


def _gather(pool: list, sizes: torch.Tensor, offsets: torch.Tensor,
            flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Minibatch (z, y, base) for flat buffer indices spanning the rounds kept in the buffer."""
    z_parts, y_parts, base_parts = [], [], []
    for (zs, index, ys, bs), size, offset in zip(pool, sizes.tolist(), offsets.tolist(), strict=True):
        local = flat[(flat >= offset) & (flat < offset + size)] - offset
        if local.numel() == 0:
            continue
        local = local.to(zs.device)
        z_parts.append(zs[local])
        y_parts.append(ys[index[local]])
        if bs is not None:
            base_parts.append(bs[index[local]])
    return torch.cat(z_parts), torch.cat(y_parts), (torch.cat(base_parts) if base_parts else None)


def _online_round(mapping: Mapping, forward: Forward, loss: Loss, y: torch.Tensor, base: torch.Tensor | None,
                  z: torch.Tensor, theta_optimizer: torch.optim.Optimizer, *, steps: int, lr_z: float) -> dict:
    """The ablation without alternation or buffer: one backward per step updates both z and Θ."""
    z.requires_grad_(True)
    z_optimizer = torch.optim.Adam([z], lr=lr_z)
    losses = []
    collect_start = time.perf_counter()
    for t in range(steps):
        values, _ = objective(forward, loss, _apply(mapping, z, base), y, None)
        losses.append(_finite(values, f"online step {t + 1}").mean().item())
        parameters = list(mapping.parameters())
        grads = torch.autograd.grad(values.sum(), [z, *parameters])
        z.grad = grads[0]
        for parameter, grad in zip(parameters, grads[1:], strict=True):
            parameter.grad = grad / y.shape[0]  # Θ descends the mean loss, each z its own loss
        z_optimizer.step()
        theta_optimizer.step()
    seconds = time.perf_counter() - collect_start
    return {"loss_first": losses[0], "loss_last": losses[-1], "collect_curve": losses,
            "train_loss": sum(losses) / len(losses), "theta_updates": steps,
            "trajectory_steps_per_second": steps * y.shape[0] / seconds}


def _save(directory: Path, settings: dict, mapping: Mapping, theta_optimizer: torch.optim.Optimizer,
          generator: torch.Generator, history: list[dict], buffer: deque, completed_rounds: int) -> Path:
    """Commit Θ and everything needed to resume exactly (optimizer, random states, replay buffer) as one
    atomic checkpoint round directory (see ``landform.io.Checkpoint``)."""
    if not all(torch.isfinite(p).all() for p in mapping.parameters()):
        raise LandformError(f"refusing to checkpoint non-finite weights to {directory}")
    tensors: dict[str, torch.Tensor] = {"rng.generator": generator.get_state(), "rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and next(mapping.parameters()).is_cuda:
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tensors.update(optimizer_tensors(theta_optimizer))
    has_base = []
    for index, (zs, picks, ys, bs) in enumerate(buffer):
        tensors.update({f"buffer.{index}.z": zs, f"buffer.{index}.index": picks, f"buffer.{index}.y": ys})
        if bs is not None:
            tensors[f"buffer.{index}.base"] = bs
        has_base.append(bs is not None)
    meta = {"format": CHECKPOINT_FORMAT, "settings": settings, "rounds_completed": completed_rounds,
            "history": history, "param_groups": theta_optimizer.state_dict()["param_groups"],
            "buffer": has_base, "world_size": 1}
    weights = tensor_bytes(mapping.state_dict(), "the mapping")
    mapping_meta = {**mapping.config(), "fit": settings, "rounds_completed": completed_rounds,
                    "weights_sha256": hashlib.sha256(weights).hexdigest()}
    files = {"mapping.safetensors": weights, "mapping.json": json_bytes(mapping_meta),
             "state.safetensors": tensor_bytes(tensors, "the fit state"), "state.json": json_bytes(meta)}
    return Checkpoint(directory).write(completed_rounds, files)


def _restore(store: Checkpoint, settings: dict, mapping: Mapping, theta_optimizer: torch.optim.Optimizer,
             generator: torch.Generator, result: FitResult, buffer: deque, device: torch.device) -> int:
    """Load the committed checkpoint written by ``_save``, after checking that its parts agree; returns the
    number of rounds already completed. Anything inconsistent is refused in one line."""
    folder = store.current()
    where = f"cannot resume {store.directory}"
    meta = read_json(folder / "state.json", "checkpoint state")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise LandformError(f"{where}: unknown checkpoint format {meta.get('format')!r}")
    saved = meta.get("settings")
    if not isinstance(saved, dict):
        raise LandformError(f"{where}: its state.json has no settings")
    changed = [key for key in _RESUME_KEYS if saved.get(key) != settings[key]]
    if changed:
        raise LandformError(f"{where}: settings differ from the checkpoint ({', '.join(changed)})")
    rounds = meta.get("rounds_completed")
    mapping_rounds = Mapping.config_of(folder / "mapping").get("rounds_completed")
    step = store.step()
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds != step or mapping_rounds != rounds:
        raise LandformError(f"{where}: its parts disagree on the rounds completed (state {rounds!r}, mapping "
                            f"{mapping_rounds!r}, directory {step})")
    restored = Mapping.load(folder / "mapping", map_location=device)
    if restored.config() != mapping.config():
        raise LandformError(f"{where}: the checkpoint's mapping has another shape")
    tensors = load_tensors(folder / "state.safetensors", what="checkpoint state")
    missing = [key for key in ("rng.generator", "rng.torch") if key not in tensors]
    history = meta.get("history")
    has_base = meta.get("buffer", [])
    if missing or not isinstance(history, list) or len(history) != rounds or not isinstance(has_base, list) \
            or len(has_base) > (buffer.maxlen or 0):
        raise LandformError(f"{where}: its state is incomplete ({', '.join(missing) or 'history or buffer'})")
    entries = []
    for index, with_base in enumerate(has_base):
        keys = [f"buffer.{index}.{name}" for name in ("z", "index", "y")]
        if any(key not in tensors for key in keys) or (with_base and f"buffer.{index}.base" not in tensors):
            raise LandformError(f"{where}: its replay buffer is incomplete")
        base = tensors[f"buffer.{index}.base"].to(device) if with_base else None
        entries.append((*(tensors[key].to(device) for key in keys), base))
    mapping.load_state_dict(restored.state_dict())
    load_optimizer_tensors(theta_optimizer, tensors, meta.get("param_groups"))
    try:
        generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (RuntimeError, TypeError) as error:
        raise LandformError(f"{where}: its random state is corrupted ({error})") from None
    buffer.extend(entries)
    result.history.extend(history)
    return rounds


def checkpoint_state(directory: str | Path) -> dict | None:
    """The state.json of the checkpoint committed in ``directory`` (settings, rounds_completed, history),
    or None if there is none."""
    folder = Checkpoint(directory).current()
    return None if folder is None else read_json(folder / "state.json", "checkpoint state")


def checkpoint_rounds(directory: str | Path) -> int:
    """How many rounds a checkpoint directory holds (0 if none)."""
    state = checkpoint_state(directory)
    return 0 if state is None else int(state.get("rounds_completed", 0))
