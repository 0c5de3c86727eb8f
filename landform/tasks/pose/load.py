"""Loading the pose task's shipped models: the zoo names of Θ and E, their checked loaders (refused if
missing or fitted on another VAE), the default mode's step sizes recorded with each Θ, and ``PoseModels``,
everything shipped for one loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from landform import zoo
from landform.errors import LandformError
from landform.mapping import Mapping
from landform.tasks.pose.model import VAE_NAME, ObservationEncoder, PoseVAE, load_vae
from landform.tasks.pose.settings import THETA_SETTINGS

LR_Z = THETA_SETTINGS["lr_z"]
LR_X = 0.1  # the default mode's step on δ where a Θ's config does not give one (train_theta chooses it)


def theta_name(kind: str, anchored: bool = False) -> str:
    return f"pose-theta-anchored-{kind}" if anchored else f"pose-theta-{kind}"


def encoder_name(kind: str) -> str:
    return f"pose-encoder-{kind}"


def vae_fingerprint(directory: Path | None = None) -> str:
    """A short hash of the VAE's weights file: every Θ records the one it was fitted on."""
    return zoo.fingerprint(VAE_NAME, directory)


def _load_checked(name: str, directory: Path | None) -> tuple[dict[str, torch.Tensor], dict]:
    """A pose zoo entry's float32 weights and config, refused if missing or fitted on another VAE."""
    try:
        state, config = zoo.load(name, directory)
    except LandformError as error:
        raise LandformError(f"{error}; train it with `landform zoo train {name}`") from None
    if config.get("vae") != vae_fingerprint(directory):
        raise LandformError(f"{name} was fitted on another pose-vae; retrain it with `landform zoo train {name}`")
    return {k: v.float() for k, v in state.items()}, config


def load_encoder(kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> ObservationEncoder:
    """The shipped learned start for loss ``kind`` (float32, eval mode, frozen), checked to fit the shipped VAE."""
    name = encoder_name(kind)
    state, config = _load_checked(name, directory)
    encoder = ObservationEncoder(tuple(config["observation_shape"]), config["latent_dim"], config["hidden"],
                                 config["layers"])
    zoo.load_module_state(encoder, state, str(zoo.path(name, directory)))
    return encoder.to(device).eval().requires_grad_(False)


def load_theta(kind: str, device: str | torch.device = "cpu", directory: Path | None = None, *,
               anchored: bool = False) -> Mapping:
    """The shipped Θ for loss ``kind`` (Eq. 3's, or with ``anchored`` the default mode's x = E(y) + Θ(z);
    float16 storage, returned as float32, eval mode), checked to be fitted on the shipped VAE."""
    name = theta_name(kind, anchored)
    state, config = _load_checked(name, directory)
    mapping = Mapping(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"],
                      additive=bool(config.get("additive", False)))
    zoo.load_module_state(mapping, state, str(zoo.path(name, directory)))
    return mapping.to(device).eval().requires_grad_(False)


def theta_rates(kind: str, directory: Path | None = None, *, anchored: bool = False) -> tuple[float, float]:
    """The default mode's step sizes (on z, on δ) chosen for the shipped Θ of ``kind`` on the validation frames."""
    try:
        config = Mapping.config_of(zoo.path(theta_name(kind, anchored), directory))
    except LandformError:
        return LR_Z, LR_X
    return float(config.get("default_lr_z", LR_Z)), float(config.get("lr_x", LR_X))


@dataclass
class PoseModels:
    """The shipped models of one loss: the VAE (F), Eq. 3's Θ, and where shipped the learned start E(y) and the
    default mode's Θ anchored at it (x = E(y) + Θ(z) + δ); ``rates`` are the default mode's step sizes on z
    and on δ. Without E the default mode is x = Θ(z) + δ with Eq. 3's Θ."""

    vae: PoseVAE
    theta: Mapping
    encoder: ObservationEncoder | None = None
    anchored: Mapping | None = None
    rates: tuple[float, float] = (LR_Z, LR_X)

    @classmethod
    def load(cls, kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> PoseModels:
        """Everything shipped for ``kind`` (the learned start and anchored Θ only where both are in the zoo)."""
        vae, theta = load_vae(device, directory), load_theta(kind, device, directory)
        if not all(zoo.path(name, directory).exists() for name in (encoder_name(kind), theta_name(kind, True))):
            return cls(vae, theta, rates=theta_rates(kind, directory))
        anchored = load_theta(kind, device, directory, anchored=True)
        return cls(vae, theta, load_encoder(kind, device, directory), anchored,
                   rates=theta_rates(kind, directory, anchored=True))

    def for_mask(self, kind: str, mask: torch.Tensor | None) -> PoseModels:
        """The models to use on observations with ``mask``: the learned start only saw whole bodies, so where
        joints are hidden the default mode is x = Θ(z) + δ with Eq. 3's Θ (and its own step sizes)."""
        if mask is None or bool(torch.as_tensor(mask).all()) or self.encoder is None:
            return self
        return PoseModels(self.vae, self.theta, rates=theta_rates(kind))
