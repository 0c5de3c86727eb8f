"""The model zoo: trained weights shipped inside the package.

Each entry NAME is three files in this folder: ``NAME.safetensors`` (the tensors), ``NAME.json``
(what is needed to rebuild the module) and ``NAME.md`` (the model card: data, split, the command
that reproduces it, training time, metrics). No pickle anywhere.

Retraining writes here only when asked: ``landform zoo train NAME`` finds NAME's trainer in the task
registry (``landform.tasks``) and gives it ``zoo_dir=RUNS/zoo`` and ``run_dir=RUNS/NAME`` (RUNS: ``--runs-dir``,
else $LANDFORM_RUNS, else ~/.cache/landform/runs); ``--install`` gives it ``zoo_dir=ZOO_DIR``. ``save``
without ``directory`` writes into this folder: trainers pass their ``zoo_dir`` on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from landform.errors import LandformError

# The serialization helpers live in landform.io; they are re-exported here for the task code.
from landform.io import (  # noqa: F401
    load_module_state,
    load_optimizer_tensors,
    load_pair,
    optimizer_tensors,
    read_bytes,
    save_pair,
    write_bytes,
)

ZOO_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _checked(name: str) -> str:
    """A zoo entry name: letters, digits, '-', '_' and '.', no path (so `zoo show ../../README` is refused)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise LandformError(f"invalid zoo entry name {name!r}; see `landform zoo list`")
    return name


def path(name: str, directory: str | Path | None = None) -> Path:
    """Path of the weights file of zoo entry ``name``: in ``directory`` when it holds them (a trainer's
    ``zoo_dir``), else in the package's zoo."""
    file = f"{_checked(name)}.safetensors"
    if directory is not None and (Path(directory) / file).exists():
        return Path(directory) / file
    return ZOO_DIR / file


def fingerprint(name: str, directory: str | Path | None = None) -> str:
    """A short hash of the weights file of ``name``: models fitted on top of it record it, so a retrained
    dependency is caught on load instead of silently mismatching."""
    import hashlib

    return hashlib.sha256(path(name, directory).read_bytes()).hexdigest()[:16]


def names() -> list[str]:
    """Names of the entries that ship weights."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def card(name: str) -> str:
    """The model card of ``name`` (markdown)."""
    card_path = ZOO_DIR / f"{_checked(name)}.md"
    if not card_path.is_file():
        raise LandformError(f"zoo entry '{name}' has no model card; known: {', '.join(names()) or 'none'}")
    return read_bytes(card_path, 2**20, "model card").decode("utf-8", "replace")


def load(name: str, directory: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load the tensors and the config of ``name`` (from ``directory`` when it holds them, else the zoo)."""
    return load_pair(path(name, directory))


def half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16 storage for a shipped state dict (halves its size; loaders convert back to float32)."""
    return {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}


def save(name: str, state: dict[str, torch.Tensor], config: dict[str, Any], card_text: str,
         directory: Path | None = None) -> Path:
    """Write zoo entry ``name``: weights, config and model card, into ``directory`` (default: the package's
    zoo, ``ZOO_DIR``; a trainer passes its ``zoo_dir``)."""
    folder = Path(directory) if directory is not None else ZOO_DIR
    weights_path = folder / f"{_checked(name)}.safetensors"
    save_pair(weights_path, state, config)
    write_bytes(folder / f"{name}.md", card_text.encode())
    return weights_path
