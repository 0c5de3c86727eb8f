"""Loss tables of the paper suite, kept in RUNS/paper/curves so that a reproduction interrupted or run again
recomputes nothing it already has.

An inversion of 32 images for 2000 steps takes minutes on a CPU and the scaling figure needs one per saved Θ,
so each table is stored under a digest of everything it depends on (the method, Θ's weights, the images,
the seed, the step size, the thread count: float rounding differs with threads). A table of more steps
answers a request for fewer (the same seeded descent, cut short).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from landform.io import json_bytes, json_safe, load_pair, save_pair, tensor_bytes


def weights_digest(module: torch.nn.Module) -> str:
    """A short hash of a module's parameters and buffers (the same Θ from a zoo entry, a snapshot or a
    checkpoint gives the same digest)."""
    return hashlib.sha256(tensor_bytes(module.state_dict())).hexdigest()[:16]


def cached_losses(key: dict, steps: int, compute: Callable[[int], torch.Tensor], *, folder) -> torch.Tensor:
    """The [steps + 1, n] loss table of ``key``: from ``folder`` when a table of at least ``steps`` is kept
    there, else ``compute(steps)``, kept for next time."""
    key = {**key, "threads": torch.get_num_threads()}
    path = folder / f"{hashlib.sha256(json_bytes(key)).hexdigest()[:20]}.safetensors"
    if path.exists():
        tensors, config = load_pair(path)
        if config.get("key") == json_safe(key) and config.get("steps", -1) >= steps:
            return tensors["losses"][: steps + 1].clone()
    losses = compute(steps)
    save_pair(path, {"losses": losses}, {"key": key, "steps": steps})
    return losses
