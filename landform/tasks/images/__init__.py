"""GAN inversion (paper §4.1) on a generator trained on Fashion-MNIST; MNIST is out of distribution.

The names below are imported on first use, so that importing one module of the task (``data``, say) does
not load the whole task.
"""

from __future__ import annotations

import importlib
from typing import Any

from landform.tasks import Task, register

_EXPORTS = {"compare_inputs": "user", "invert_inputs": "user", "demo": "task", "image_problem": "task",
            "load_models": "task", "train_landscape": "train", "train_anchored_landscape": "train",
            "train_paper_landscape": "train", "train_learned_steps": "train",
            "train_generator": "generator", "train_encoder": "encoder"}
_TRAINERS = {"images-generator": "train_generator", "images-encoder": "train_encoder",
             "images-landscape": "train_paper_landscape", "images-landscape-anchored": "train_anchored_landscape",
             "images-steps": "train_learned_steps"}

__all__ = ["TRAINERS", "compare_inputs", "demo", "image_problem", "invert_inputs", "load_models"]


def __getattr__(name: str) -> Any:
    if name == "TRAINERS":
        return {entry: __getattr__(function) for entry, function in _TRAINERS.items()}
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register(Task("images", "GAN inversion on Fashion-MNIST (§4.1); your own pictures with invert/compare",
              demo=f"{__name__}.task:demo", invert_inputs=f"{__name__}.user:invert_inputs",
              compare_inputs=f"{__name__}.user:compare_inputs", trainers=f"{__name__}:TRAINERS",
              options=("steps", "mode")))
