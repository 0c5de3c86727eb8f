"""The robust classifier F' (a small CNN for 28x28x1) and its contrastive self-supervised head.

The SSL head reads the classifier's own convolutional features, so lowering its loss moves the input
along directions the classifier is sensitive to; that is why Mao et al. 2021 can reverse attacks with it.
"""

from __future__ import annotations

import torch
from torch import nn

from landform import zoo
from landform.errors import LandformError

RECIPES = ("pgd", "trades", "mart")
IMAGE_SHAPE = (1, 28, 28)


class SmallCNN(nn.Module):
    """Two conv blocks (16, 32 channels) and a 2-layer classifier; ``features`` is the flattened conv map."""

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        self.feature_dim = c2 * 7 * 7

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SSLHead(nn.Module):
    """Projection MLP features -> unit-norm contrastive embedding (SimCLR style)."""

    def __init__(self, feature_dim: int, hidden: int = 256, out: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(features), dim=1)


class RobustModel(nn.Module):
    """A zoo entry ``defense-<recipe>``: classifier plus SSL head (both frozen at test time)."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = SmallCNN()
        self.ssl = SSLHead(self.classifier.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.ssl(self.classifier.features(x))


def model_name(recipe: str) -> str:
    return f"defense-{recipe}"


def theta_name(recipe: str) -> str:
    return f"defense-{recipe}-theta"


def half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16 storage (halves the shipped size; loaders convert back to float32)."""
    return {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}


def load_model(recipe: str, *, device: str = "cpu") -> RobustModel:
    """The shipped robust classifier + SSL head of ``recipe`` (frozen, eval mode, float32)."""
    if recipe not in RECIPES:
        raise LandformError(f"unknown robust model {recipe!r}; use one of {', '.join(RECIPES)}")
    name = model_name(recipe)
    if not zoo.path(name).exists():
        raise LandformError(f"zoo entry {name} is missing: run `landform zoo train {name}`")
    state, _ = zoo.load(name)
    model = RobustModel()
    zoo.load_module_state(model, {k: v.float() for k, v in state.items()}, str(zoo.path(name)))
    model.requires_grad_(False)
    return model.to(device).eval()


def load_theta(recipe: str, *, device: str = "cpu"):
    """The shipped additive Θ of ``recipe`` (float32)."""
    from landform import Mapping

    name = theta_name(recipe)
    if not zoo.path(name).exists():
        raise LandformError(f"zoo entry {name} is missing: run `landform zoo train {name}`")
    state, config = zoo.load(name)
    mapping = Mapping(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"], additive=True)
    zoo.load_module_state(mapping, {k: v.float() for k, v in state.items()}, str(zoo.path(name)))
    mapping.requires_grad_(False)
    mapping.lr_z = float(config.get("settings", {}).get("lr_z", 0.05))  # the step size Θ was fitted for
    mapping.baseline_lr = float(config.get("baseline_lr", 0.01))  # the baseline's lr picked next to Θ
    return mapping.to(device).eval()
