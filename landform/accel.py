"""The GPU path: bf16 autocast for the forward model where the user asks, and pinned seeds.

None of this is exercised on a GPU by the test suite (the machine it runs on has none); on CPU, bf16
autocast is tested. The README's "Scale out" section says what is and is not tested.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

from landform.errors import LandformError

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_forward(forward: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device,
                     precision: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward`` run under ``torch.autocast`` at ``precision`` (bf16 or fp16) on ``device``, its output
    returned as float32 so the loss and everything after it stay in full precision. None: ``forward``.
    A module ``forward`` must already be on ``device`` (the wrapper is a plain function)."""
    if precision is None:
        return forward
    if precision not in AUTOCAST:
        raise LandformError(f"unknown --autocast {precision!r}; use one of {', '.join(AUTOCAST)}")
    device_type = torch.device(device).type
    if precision == "fp16" and device_type != "cuda":
        raise LandformError("--autocast fp16 needs a CUDA device; use bf16 on CPU")

    @functools.wraps(forward)
    def wrapped(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device_type, dtype=AUTOCAST[precision]):
            y = forward(x)
        return y.float()

    return wrapped


def pin_seeds(seed: int, device: str | torch.device) -> None:
    """Seed every generator torch has and, on CUDA, ask for deterministic kernels (cuDNN, cuBLAS), so that
    runs with the same seed on the same GPU give the same numbers."""
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
