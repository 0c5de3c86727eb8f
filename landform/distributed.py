"""``fit`` and the recipe under torchrun: the process group, and the few collectives they need.

Launched by ``torchrun --nproc_per_node=K`` (which sets RANK, WORLD_SIZE, MASTER_ADDR, ...), ``fit`` joins
the default process group itself (gloo on CPU, nccl on CUDA): every rank collects its share of the N
trajectories with its own random stream, Θ is trained with DistributedDataParallel (gradients averaged
over ranks), and only rank 0 touches the checkpoint directory. The recipe (``landform.recipe.learn``) holds
the group for all its stages (``held``): its learned start and steps average their gradients here
(``average_gradients``), its validation runs are split over the ranks (``shard``, ``gather``), and what
depends on a clock (a time budget, a timing) is rank 0's (``leader_says``, ``from_leader``), so every rank
takes the same decisions. Everything here is a torch.distributed collective: no process pool, no sockets of
our own. Without torchrun (WORLD_SIZE unset or 1) nothing here does anything.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from landform.errors import LandformError


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the world size, and the device collectives run on."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    # -------------------------------------------------------------------------------------- collectives

    def share(self, message: str | None) -> str | None:
        """Rank 0's ``message`` (None for none) on every rank, so all ranks fail or go on together."""
        if not self.active:
            return message
        data = self.broadcast_bytes((message or "").encode() if self.leader else None)
        return data.decode() or None

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.active:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)

    def mean(self, values: list[float]) -> list[float]:
        """The mean over ranks of each of ``values`` (the same length on every rank)."""
        if not self.active or not values:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return (tensor / self.world).tolist()

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank."""
        length = torch.tensor([len(data) if self.leader and data else 0], dtype=torch.int64, device=self.device)
        torch.distributed.broadcast(length, 0)
        size = int(length.item())
        if size == 0:
            return b""
        if self.leader:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        else:
            buffer = torch.empty(size, dtype=torch.uint8, device=self.device)
        torch.distributed.broadcast(buffer, 0)
        return data if self.leader else buffer.cpu().numpy().tobytes()

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order (on every rank)."""
        if not self.active:
            return [data]
        length = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        lengths = [torch.zeros_like(length) for _ in range(self.world)]
        torch.distributed.all_gather(lengths, length)
        sizes = [int(t.item()) for t in lengths]
        padded = torch.zeros(max(sizes), dtype=torch.uint8)
        if data:
            padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        padded = padded.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        torch.distributed.all_gather(parts, padded)
        return [part[:size].cpu().numpy().tobytes() for part, size in zip(parts, sizes, strict=True)]

    def leader_says(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank: a decision that depends on a clock (a time budget, a deadline)."""
        if not self.active:
            return flag
        return bool(self.from_leader(torch.tensor([1.0 if flag else 0.0]))[0] > 0)

    def from_leader(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` (of the same shape and dtype on every rank) on every rank, on its device."""
        if not self.active:
            return tensor
        buffer = tensor.detach().to(self.device, copy=True).contiguous()
        torch.distributed.broadcast(buffer, 0)
        return buffer.to(tensor.device)

    def broadcast_tensors(self, tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Rank 0's named tensors (any shapes and dtypes; the others pass None) on every rank, on the CPU."""
        if not self.active:
            return dict(tensors or {})
        from landform.io import tensor_bytes, tensors_from_bytes

        data = self.broadcast_bytes(tensor_bytes(tensors, "tensors") if self.leader and tensors else None)
        return tensors_from_bytes(data, "rank 0's tensors", what="tensors") if data else {}

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers copied into ``module`` on every rank (in place): the ranks start
        from the same weights whatever random draws each made before."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.copy_(self.from_leader(tensor))

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter], objective: torch.Tensor) -> float:
        """Replace each parameter's gradient (None counts as zero) by its mean over the ranks, in one
        all-reduce that carries the ranks' ``objective`` values too; returns their mean, not finite if any
        rank's was not (so every rank sees a failure that one rank met, and all stop or back off together)."""
        parameters = list(parameters)
        if not self.active:
            return float(objective)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([*(g.detach().reshape(-1).float() for g in grads),
                          objective.detach().reshape(1).float().to(grads[0].device if grads else "cpu")])
        flat = flat.to(self.device)
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad = flat[offset:offset + size].view_as(parameter).to(parameter)
            offset += size
        return float(flat[-1])

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's part of ``tensor`` along its first dimension (contiguous, in rank order; ``gather``
        puts the parts back together)."""
        if not self.active:
            return tensor
        return torch.tensor_split(tensor, self.world)[self.rank]

    def gather(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Every rank's ``tensor`` (shapes equal but along ``dim``) concatenated along ``dim`` in rank order,
        on every rank: the per-example results of a ``shard``ed run, whole again."""
        if not self.active:
            return tensor
        moved = tensor.detach().movedim(dim, 0).contiguous()
        length = torch.tensor([moved.shape[0]], dtype=torch.int64, device=self.device)
        lengths = [torch.zeros_like(length) for _ in range(self.world)]
        torch.distributed.all_gather(lengths, length)
        sizes = [int(t.item()) for t in lengths]
        padded = torch.zeros((max(sizes), *moved.shape[1:]), dtype=moved.dtype, device=self.device)
        padded[: moved.shape[0]] = moved.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        torch.distributed.all_gather(parts, padded)
        whole = torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
        return whole.movedim(0, dim).to(tensor.device)


def context(device: torch.device) -> tuple[Context, torch.device]:
    """Join torchrun's process group if this process was launched by it (and not already in one); returns the
    context and the device this rank computes on (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    if not torch.distributed.is_available():
        return Context(), device
    initialized = torch.distributed.is_initialized()
    if not initialized and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Context(), device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not initialized:
        try:
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as error:
            raise LandformError(f"cannot join the torchrun process group: {str(error).splitlines()[0]}") from None
        _JOINED[0] = True
        atexit.register(_leave_at_exit)
    world = torch.distributed.get_world_size()
    if world == 1:
        return Context(), device
    backend = torch.distributed.get_backend()
    comm = device if backend == "nccl" else torch.device("cpu")
    return Context(torch.distributed.get_rank(), world, comm), device


def other_world(where: str, saved: Any, world: int) -> str:
    """The one line that refuses to resume, with ``world`` processes, what ``saved`` processes began."""
    return (f"{where}: it was fitted by {saved} process(es) and this run has {world}; resume it with "
            f"torchrun --nproc_per_node={saved} (each process has its own trajectories and random stream)")


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream: ``seed`` itself on rank 0 (so one process is the plain run)."""
    return seed if rank == 0 else (seed + rank * 0x9E3779B97F4A7C15) % 2**63


def pack(files: dict[str, bytes]) -> bytes:
    """Several named byte strings as one (a JSON index, then the contents)."""
    index = json.dumps([[name, len(data)] for name, data in files.items()]).encode()
    return len(index).to_bytes(8, "little") + index + b"".join(files.values())


def unpack(data: bytes) -> dict[str, bytes]:
    """What ``pack`` packed."""
    if not data:
        return {}
    size = int.from_bytes(data[:8], "little")
    files, offset = {}, 8 + size
    for name, length in json.loads(data[8:offset]):
        files[name] = data[offset:offset + length]
        offset += length
    return files


_JOINED = [False]  # whether ``context`` itself joined the process group (then ``release`` leaves it)
_HELD = [0]  # how many ``held`` blocks are open: ``release`` waits for the outermost


@contextlib.contextmanager
def held(device: torch.device) -> Iterator[tuple[Context, torch.device]]:
    """``context(device)`` for the whole block: the group that it joins stays joined through the block (a
    ``fit`` inside does not leave it), and is left when the block ends normally. On an error the group is left
    at exit without waiting for the other ranks (see ``_leave_at_exit``)."""
    ctx, device = context(device)
    _HELD[0] += 1
    try:
        yield ctx, device
    finally:
        _HELD[0] -= 1
    release()


def release() -> None:
    """Leave the process group if ``context`` joined it (``fit`` does, when it returns) and no ``held`` block
    holds it; a group the caller made stays theirs."""
    if _JOINED[0] and not _HELD[0]:
        _JOINED[0] = False
        shutdown()


def _leave_at_exit() -> None:
    """Destroy the group before the interpreter tears down, without waiting for the other ranks (this runs
    on failed exits too). A process that ends with a live gloo group can abort in gloo's worker threads
    ("terminate called without an active exception", SIGABRT) while Python finalizes."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        with contextlib.suppress(Exception):  # exiting anyway: nothing left to report to
            torch.distributed.destroy_process_group()


def shutdown() -> None:
    """Leave the process group, if this process is in one, once every rank got here."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Wait for every rank first: a rank leaving while another still receives its last broadcast would
        # close the connection under it.
        try:
            torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()
