"""pybullet's walker clips (``pybullet_data/data/motions/walker/*.txt``, ``pybullet==3.2.7``, zlib license).

They are DeepMimic frames of the same humanoid (44 numbers per frame, the layout of
``landform.tasks.pose.data``), so no retargeting is needed; like the humanoid3d clips they are read from the
installed package at run time. Five looping clips of 38 frames: walking forward and turning left or right.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from landform.errors import LandformError
from landform.tasks.pose.data import FRAME_WIDTH, INSTALL, motions_folder


def walker_folder() -> Path:
    folder = motions_folder() / "walker"
    if not folder.is_dir():
        raise LandformError(f"no walker clips in {folder}; reinstall with `{INSTALL}`")
    return folder


def clip_names() -> list[str]:
    """The walker clips' names (file stems), e.g. ``0walk_forward``, ``turn_left0``."""
    return sorted(p.stem for p in walker_folder().glob("*.txt"))


def read_clip(name: str) -> torch.Tensor:
    """The raw DeepMimic frames [n, 44] (float64) of walker clip ``name``."""
    path = walker_folder() / f"{name}.txt"
    try:
        frames = torch.tensor(json.loads(path.read_text())["Frames"], dtype=torch.float64)
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise LandformError(f"cannot read walker clip {path}: {error}") from None
    if frames.dim() != 2 or frames.shape[1] != FRAME_WIDTH or not torch.isfinite(frames).all():
        raise LandformError(f"walker clip {path} is not a list of {FRAME_WIDTH} finite numbers per frame")
    return frames
