"""The robust classifier F' (a CNN for 28x28x1) and its contrastive self-supervised branch.

The SSL branch reads one of the classifier's own layers (``ssl_layer``), so lowering its loss moves the input
along directions the classifier is sensitive to; that is why Mao et al. 2021 can reverse attacks with it. The
architecture is a JSON-able dict (``ARCHITECTURE``) stored in every zoo entry's config, so a shipped model is
rebuilt from its config, never from defaults that may have changed since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from landform import zoo
from landform.errors import LandformError

RECIPES = ("pgd", "trades", "mart")
SHIPPED = ("pgd", "trades")  # the zoo ships these two (the training budget did not cover a third)
IMAGE_SHAPE = (1, 28, 28)
LAYERS = ("block1", "block2", "hidden")
ARCHITECTURE: dict[str, Any] = {"channels": [32, 64], "hidden": 256, "ssl_layer": "block2", "ssl_hidden": 256,
                                "ssl_out": 64, "bank_size": 256}


class SmallCNN(nn.Module):
    """Two conv blocks (c1, c2 channels, 3x3, ReLU, 2x2 max-pool) and a 2-layer classifier."""

    def __init__(self, channels: tuple[int, int] | list[int] = (32, 64), hidden: int = 256, classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.block1 = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, classes)
        self.sizes = {"block1": c1 * 14 * 14, "block2": c2 * 7 * 7, "hidden": hidden}

    def layers(self, x: torch.Tensor, upto: str = "hidden") -> dict[str, torch.Tensor]:
        """The activations of every layer up to ``upto`` (flattened)."""
        found = {"block1": self.block1(x)}
        if upto != "block1":
            found["block2"] = self.block2(found["block1"])
            if upto == "hidden":
                found["hidden"] = self.fc(found["block2"])
        return {k: v.flatten(1) for k, v in found.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(self.block2(self.block1(x))))


class SSLHead(nn.Module):
    """Projection MLP features -> unit-norm contrastive embedding (SimCLR style)."""

    def __init__(self, feature_dim: int, hidden: int = 256, out: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(features), dim=1)


class RobustModel(nn.Module):
    """A zoo entry ``defense-<recipe>``: classifier plus SSL branch (both frozen at test time)."""

    def __init__(self, architecture: dict[str, Any] | None = None, views: dict[str, Any] | None = None) -> None:
        super().__init__()
        from landform.tasks.defense.ssl import VIEWS

        arch = {**ARCHITECTURE, **(architecture or {})}
        self.views = {**VIEWS, **(views or {})}
        if arch["ssl_layer"] not in LAYERS:
            raise LandformError(f"unknown SSL layer {arch['ssl_layer']!r}; use one of {', '.join(LAYERS)}")
        self.architecture = arch
        self.classifier = SmallCNN(tuple(arch["channels"]), arch["hidden"])
        self.ssl_layer = arch["ssl_layer"]
        self.ssl = SSLHead(self.classifier.sizes[self.ssl_layer], arch["ssl_hidden"], arch["ssl_out"])
        # The defense's fixed negatives: embeddings of one view of bank_size training images (see ssl.py).
        self.register_buffer("bank", torch.zeros(arch["bank_size"], arch["ssl_out"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.ssl(self.classifier.layers(x, self.ssl_layer)[self.ssl_layer])


def model_name(recipe: str) -> str:
    return f"defense-{recipe}"


def theta_name(recipe: str) -> str:
    return f"defense-{recipe}-theta"


def entry_file(recipe: str, name: str, zoo_dir: str | Path | None = None) -> Path:
    """The weights file of zoo entry ``name`` (the robust model of ``recipe`` or its Θ): in ``zoo_dir`` if it
    holds it, else the package's zoo; a one-line error for an unknown recipe or a missing entry."""
    if recipe not in RECIPES:
        raise LandformError(f"unknown robust model {recipe!r}; use one of {', '.join(RECIPES)}")
    path = zoo.path(name, zoo_dir)
    if not path.exists():
        raise LandformError(f"zoo entry {name} is missing: run `landform zoo train {name}`")
    return path


def load_model(recipe: str, *, device: str = "cpu", zoo_dir: str | Path | None = None) -> RobustModel:
    """The robust classifier + SSL branch of ``recipe`` (frozen, eval mode, float32), from ``zoo_dir`` if it
    holds it, else the package's zoo."""
    name = model_name(recipe)
    path = entry_file(recipe, name, zoo_dir)
    state, config = zoo.load(name, directory=path.parent)
    model = RobustModel(config.get("architecture"), config.get("views"))
    zoo.load_module_state(model, {k: v.float() for k, v in state.items()}, str(path))
    model.requires_grad_(False)
    return model.to(device).eval()
