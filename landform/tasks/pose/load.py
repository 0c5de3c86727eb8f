"""Loading the pose task's shipped models: the zoo names of Eq. 3's Θ and of the default mode's landscape (the
core recipe's learned start, anchored Θ and tuned settings), their loaders (``zoo.load_landscape`` and
``zoo.load_checked``: refused if missing or fitted on another VAE), and ``PoseModels``, everything shipped for one
loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from landform import zoo
from landform.errors import LandformError
from landform.landscape import Landscape
from landform.mapping import Mapping
from landform.tasks.pose.losses import observation
from landform.tasks.pose.model import VAE_NAME, PoseVAE, load_vae
from landform.tasks.pose.settings import THETA_SETTINGS

LR_Z = THETA_SETTINGS["lr_z"]
LR_X = 0.1  # the default mode's step on δ where a Θ's config does not give one (train_theta chooses it)
FITTED_ON = {VAE_NAME: "vae"}  # every pose Θ and landscape is fitted on the VAE (older entries: under "vae")


def theta_name(kind: str) -> str:
    """Eq. 3's Θ for loss ``kind`` (the paper's plain landscape)."""
    return f"pose-theta-{kind}"


def landscape_name(kind: str) -> str:
    """The default mode's landscape for loss ``kind`` (learned start + anchored Θ + tuned settings)."""
    return f"pose-landscape-{kind}"


def load_landscape(kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> Landscape:
    """The shipped landscape of loss ``kind`` (float32, frozen), checked to fit the shipped VAE."""
    return zoo.load_landscape(landscape_name(kind), FITTED_ON, directory=directory, device=device)


def load_theta(kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> Mapping:
    """The shipped Eq. 3 Θ for loss ``kind`` (float16 storage, returned as float32, eval mode), checked to be
    fitted on the shipped VAE."""
    name = theta_name(kind)
    state, config = zoo.load_checked(name, FITTED_ON, directory)
    mapping = Mapping(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"],
                      additive=bool(config.get("additive", False)))
    zoo.load_module_state(mapping, state, str(zoo.path(name, directory)))
    return mapping.to(device).eval().requires_grad_(False)


def theta_rates(kind: str, directory: Path | None = None) -> tuple[float, float]:
    """The step sizes (on z, on δ) of Eq. 3's Θ + δ chosen for the shipped Θ of ``kind`` on the validation frames."""
    try:
        config = Mapping.config_of(zoo.path(theta_name(kind), directory))
    except LandformError:
        return LR_Z, LR_X
    return float(config.get("default_lr_z", LR_Z)), float(config.get("lr_x", LR_X))


@dataclass
class PoseModels:
    """The shipped models of one loss: the VAE (F), Eq. 3's Θ and, where shipped, the default mode's landscape
    (learned start E(y), Θ anchored at it, tuned settings). Without a landscape the default mode is
    x = Θ(z) + δ with Eq. 3's Θ at ``rates`` (step sizes on z and on δ)."""

    vae: PoseVAE
    theta: Mapping
    kind: str  # the loss these models are for: the start's error-feedback step goes through its F
    landscape: Landscape | None = None
    rates: tuple[float, float] = (LR_Z, LR_X)

    @property
    def encoder(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The learned start E(y) with its error-feedback step through this loss's F where it has one; None
        without a landscape."""
        if self.landscape is None:
            return None
        return self.landscape.start_for(observation(self.kind, self.vae.decoder).forward)

    @classmethod
    def load(cls, kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> PoseModels:
        """Everything shipped for ``kind`` (the landscape only where it is in the zoo)."""
        vae, theta = load_vae(device, directory), load_theta(kind, device, directory)
        landscape = load_landscape(kind, device, directory) if zoo.path(landscape_name(kind), directory).exists() \
            else None
        return cls(vae, theta, kind, landscape, rates=theta_rates(kind, directory))

    def for_mask(self, mask: torch.Tensor | None) -> PoseModels:
        """The models to use on observations with ``mask``: the learned start only saw whole bodies, so where
        joints are hidden the default mode is x = Θ(z) + δ with Eq. 3's Θ (and its own step sizes)."""
        if mask is None or bool(torch.as_tensor(mask).all()) or self.landscape is None:
            return self
        return PoseModels(self.vae, self.theta, self.kind, rates=self.rates)
