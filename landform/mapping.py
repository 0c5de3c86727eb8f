"""Θ: the mapping from the learned space Z to the forward model's input space X (paper §3.2, §7)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from landform.errors import LandformError
from landform.zoo import load_pair, save_pair


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
        """Rebuild a Mapping saved by ``save`` (a path with or without suffix, or its directory)."""
        weights_path = _weights_path(path)
        state, config = load_pair(weights_path)
        if config.get("kind") != "landform.Mapping":
            raise LandformError(f"{weights_path.with_suffix('.json')} is not a landform Mapping config")
        mapping = cls(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"],
                      additive=config["additive"], negative_slope=config.get("negative_slope", 0.2))
        try:
            mapping.load_state_dict(state)
        except RuntimeError as error:
            raise LandformError(f"weights in {weights_path} do not match their config: "
                                f"{str(error).splitlines()[0]}") from None
        return mapping.to(map_location)


    @staticmethod
    def config_of(path: str | Path) -> dict:
        """The JSON config saved beside a Mapping's weights (with any extra keys given to ``save``)."""
        config_path = _weights_path(path).with_suffix(".json")
        if not config_path.exists():
            raise LandformError(f"mapping config not found: {config_path}")
        try:
            return json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise LandformError(f"corrupted config file {config_path}: {error}") from None


def _weights_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "mapping"
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")
