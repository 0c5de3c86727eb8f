"""Θ: the mapping from the learned space Z to the forward model's input space X (paper §3.2, §7)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landform.errors import LandformError
from landform.io import load_pair, read_json, resolve_weights, save_pair, tensors_from_bytes

# Largest width, input size or output size a saved config may ask for (a config is checked against its
# weights' header before anything is built, so these only bound a config that comes without weights).
MAX_SIZE = 2**24


def _as_shape(shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


class Mapping(nn.Module):
    """The paper's Θ: a 3-layer MLP with LeakyReLU(0.2) between layers.

    ``mapping(z)`` returns x with shape ``[B, *x_shape]``. With ``additive=True`` it is the defense
    form ``x = base + Θ(z)`` (paper §4.3), called as ``mapping(z, base)``.
    """

    def __init__(self, z_dim: int, x_shape: int | tuple[int, ...], *, hidden: int = 1024,
                 additive: bool = False, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.z_dim = int(z_dim)
        self.x_shape = _as_shape(x_shape)
        self.hidden = int(hidden)
        self.additive = bool(additive)
        self.negative_slope = float(negative_slope)
        if self.z_dim <= 0 or self.hidden <= 0 or min(self.x_shape, default=0) <= 0:
            raise LandformError(f"Mapping sizes must be positive, got z_dim={z_dim}, x_shape={x_shape}, "
                                f"hidden={hidden}")
        x_dim = math.prod(self.x_shape)
        self.net = nn.Sequential(
            nn.Linear(self.z_dim, self.hidden),
            nn.LeakyReLU(self.negative_slope),
            nn.Linear(self.hidden, self.hidden),
            nn.LeakyReLU(self.negative_slope),
            nn.Linear(self.hidden, x_dim),
        )

    @property
    def x_dim(self) -> int:
        return math.prod(self.x_shape)

    @torch.no_grad()
    def start_near_zero(self, scale: float) -> Mapping:
        """Scale the last layer's weights by ``scale`` and zero its bias, so that Θ(z) starts close to 0: an
        anchored Θ (x = base + Θ(z)) then begins at its anchor, and a defense's Θ at the attacked image."""
        self.net[-1].weight.mul_(scale)
        self.net[-1].bias.zero_()
        return self

    def forward(self, z: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(z).reshape(z.shape[0], *self.x_shape)
        if self.additive:
            if base is None:
                raise LandformError("an additive Mapping needs a base: x = base + Θ(z)")
            x = base + x
        return x

    def config(self) -> dict:
        """What ``Mapping.load`` needs to rebuild this module."""
        return {"kind": "landform.Mapping", "z_dim": self.z_dim, "x_shape": list(self.x_shape),
                "hidden": self.hidden, "additive": self.additive, "negative_slope": self.negative_slope}

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write ``path.safetensors`` and ``path.json`` (weights and config, no pickle)."""
        weights_path = _weights_path(path)
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise LandformError(f"refusing to save non-finite weights to {weights_path}")
        save_pair(weights_path, self.state_dict(), {**self.config(), **(extra or {})})
        return weights_path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Mapping:
        """Rebuild a Mapping saved by ``save`` (a path with or without suffix, its directory, or a checkpoint
        directory written by ``fit``). The config is validated and checked against the weights' header
        before any module is built; non-float or non-finite weights are refused."""
        weights_path = _weights_path(path)
        config_path = weights_path.with_suffix(".json")
        if not config_path.exists() and not config_path.is_symlink() and not weights_path.exists():
            raise LandformError(f"weights file not found: {weights_path}")
        config = validate_config(read_json(config_path, "mapping config"), config_path)
        state, _ = load_pair(weights_path, expected=expected_shapes(config), floating=True, finite=True)
        return cls._build(config, state, weights_path).to(map_location)

    @classmethod
    def from_bytes(cls, weights: bytes, config: dict, source: str | Path) -> Mapping:
        """Rebuild a Mapping from its safetensors bytes and config dict, with the same checks as ``load``."""
        config = validate_config(config, source)
        state = tensors_from_bytes(weights, source, expected=expected_shapes(config), floating=True, finite=True)
        return cls._build(config, state, source)

    @classmethod
    def _build(cls, config: dict, state: dict[str, torch.Tensor], source: str | Path) -> Mapping:
        mapping = cls(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"],
                      additive=config["additive"], negative_slope=config["negative_slope"])
        try:
            mapping.load_state_dict(state)
        except RuntimeError as error:
            lines = str(error).strip().splitlines()
            raise LandformError(f"weights in {source} do not match their config: "
                                f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from None
        return mapping

    @staticmethod
    def config_of(path: str | Path) -> dict:
        """The JSON config saved beside a Mapping's weights (with any extra keys given to ``save``)."""
        config = read_json(_weights_path(path).with_suffix(".json"), "mapping config")
        config.pop("weights_sha256", None)
        return config


def _positive_int(config: dict, key: str, source: Path) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        raise LandformError(f"mapping config {source}: {key} must be an integer in [1, {MAX_SIZE}], got {value!r}")
    return value


def validate_config(config: Any, source: str | Path) -> dict:
    """The fields of a Mapping config, type- and range-checked, with one-line errors."""
    source = Path(source)
    if not isinstance(config, dict):
        raise LandformError(f"mapping config {source} must be a JSON object, got {type(config).__name__}")
    if config.get("kind") != "landform.Mapping":
        raise LandformError(f"{source} is not a landform Mapping config (kind is {config.get('kind')!r})")
    missing = [key for key in ("z_dim", "x_shape", "hidden", "additive") if key not in config]
    if missing:
        raise LandformError(f"mapping config {source} lacks {', '.join(missing)}")
    z_dim, hidden = _positive_int(config, "z_dim", source), _positive_int(config, "hidden", source)
    x_shape = config["x_shape"]
    if not isinstance(x_shape, list) or not 1 <= len(x_shape) <= 8 or \
            any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SIZE for s in x_shape) or \
            math.prod(x_shape) > MAX_SIZE:
        raise LandformError(f"mapping config {source}: x_shape must be a list of 1 to 8 positive integers "
                            f"with at most {MAX_SIZE} entries in all, got {x_shape!r}")
    if not isinstance(config["additive"], bool):
        raise LandformError(f"mapping config {source}: additive must be true or false, got {config['additive']!r}")
    slope = config.get("negative_slope", 0.2)
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not math.isfinite(slope):
        raise LandformError(f"mapping config {source}: negative_slope must be a finite number, got {slope!r}")
    return {"z_dim": z_dim, "x_shape": list(x_shape), "hidden": hidden, "additive": config["additive"],
            "negative_slope": float(slope)}


def expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a Mapping with ``config`` (as from ``validate_config``) holds."""
    z, h, x = config["z_dim"], config["hidden"], math.prod(config["x_shape"])
    return {"net.0.weight": (h, z), "net.0.bias": (h,), "net.2.weight": (h, h), "net.2.bias": (h,),
            "net.4.weight": (x, h), "net.4.bias": (x,)}


def _weights_path(path: str | Path) -> Path:
    return resolve_weights(path, "mapping")
