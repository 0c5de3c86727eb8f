"""The model zoo: trained weights shipped inside the package.

Each entry NAME is three files in this folder: ``NAME.safetensors`` (the tensors), ``NAME.json``
(what is needed to rebuild the module) and ``NAME.md`` (the model card: data, split, the command
that reproduces it, training time, metrics). No pickle anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from landform.errors import LandformError

ZOO_DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Path of the weights file of zoo entry ``name``."""
    return ZOO_DIR / f"{name}.safetensors"


def fingerprint(name: str) -> str:
    """A short hash of the weights file of ``name``: models fitted on top of it record it, so a retrained
    dependency is caught on load instead of silently mismatching."""
    import hashlib

    return hashlib.sha256(path(name).read_bytes()).hexdigest()[:16]


def names() -> list[str]:
    """Names of the entries that ship weights."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def card(name: str) -> str:
    """The model card of ``name`` (markdown)."""
    card_path = ZOO_DIR / f"{name}.md"
    if not card_path.exists():
        raise LandformError(f"zoo entry '{name}' has no model card; known: {', '.join(names()) or 'none'}")
    return card_path.read_text()


def load(name: str, directory: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load the tensors and the config of ``name`` (from ``directory`` instead of the zoo if given)."""
    folder = Path(directory) if directory is not None else ZOO_DIR
    return load_pair(folder / f"{name}.safetensors")


def load_pair(weights_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``X.safetensors`` and its ``X.json`` config, with one-line errors for missing or corrupt files."""
    weights_path = Path(weights_path)
    config_path = weights_path.with_suffix(".json")
    if not weights_path.exists():
        raise LandformError(f"weights file not found: {weights_path}")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise LandformError(f"corrupted weights file {weights_path}: {error}") from None
    config: dict[str, Any] = {}
    if config_path.exists():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise LandformError(f"corrupted config file {config_path}: {error}") from None
    return state, config


def save_pair(weights_path: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write ``X.safetensors`` and ``X.json`` atomically (temp file, then rename): a crash never
    leaves a half-written file in place of a good one."""
    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, weights_path)
    config_path = weights_path.with_suffix(".json")
    tmp_config = config_path.with_name(config_path.name + ".tmp")
    tmp_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_config, config_path)


def save(name: str, state: dict[str, torch.Tensor], config: dict[str, Any], card_text: str,
         directory: Path | None = None) -> Path:
    """Write zoo entry ``name``: weights, config and model card."""
    folder = Path(directory) if directory is not None else ZOO_DIR
    weights_path = folder / f"{name}.safetensors"
    save_pair(weights_path, state, config)
    (folder / f"{name}.md").write_text(card_text)
    return weights_path


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optimizer") -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat ``prefix.INDEX.NAME`` tensors, for a safetensors checkpoint
    (its param_groups are plain numbers: keep them in the JSON beside it)."""
    return {f"{prefix}.{index}.{key}": torch.as_tensor(value)
            for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           param_groups: list[dict] | None = None, prefix: str = "optimizer") -> None:
    """Restore what ``optimizer_tensors`` wrote (and the saved ``param_groups``, if given)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = param_groups if param_groups is not None else optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict`` with a one-line error when the weights do not match the model."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise LandformError(f"weights in {source} do not match the model: {detail}") from None
