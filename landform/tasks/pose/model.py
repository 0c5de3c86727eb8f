"""F for the pose task: a VPoser-style VAE over body poses (paper §4.2).

The encoder maps pose parameters to a diagonal Gaussian over the latent (X); the decoder, two hidden
layers of 512 with LeakyReLU and dropout, outputs a 6D rotation per spherical joint (the first two
columns of its matrix, Zhou et al. 2019), made a rotation by Gram-Schmidt, and an angle per hinge.
Inversion optimizes the decoder's input, with the decoder frozen in eval mode (no dropout).
"""

from __future__ import annotations

import torch
from torch import nn

from landform import zoo
from landform.errors import LandformError
from landform.tasks.pose.data import HINGES, POSE_DIM, SPHERICAL, pose_vector

VAE_NAME = "pose-vae"


def gram_schmidt(six: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from 6D vectors [..., 6] (two columns, orthonormalized)."""
    a1, a2 = six[..., :3], six[..., 3:]
    b1 = nn.functional.normalize(a1, dim=-1, eps=1e-6)
    b2 = nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-6)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_six(rotations: torch.Tensor) -> torch.Tensor:
    """The 6D representation [..., 6] of rotation matrices [..., 3, 3] (inverse of ``gram_schmidt``)."""
    return torch.cat([rotations[..., :, 0], rotations[..., :, 1]], dim=-1)


class PoseDecoder(nn.Module):
    """Latent [B, X] -> pose parameters [B, 76] (rotation matrices of 8 spherical joints, 4 hinge angles)."""

    def __init__(self, latent_dim: int, hidden: int = 512, dropout: float = 0.1, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(negative_slope), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.LeakyReLU(negative_slope), nn.Dropout(dropout),
            nn.Linear(hidden, 6 * len(SPHERICAL) + len(HINGES)),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.net(latent)
        six = out[:, :6 * len(SPHERICAL)].reshape(-1, len(SPHERICAL), 6)
        return pose_vector(gram_schmidt(six), out[:, 6 * len(SPHERICAL):])


class PoseEncoder(nn.Module):
    """Pose parameters [B, 76] -> (mean, log-variance) of the latent, each [B, X]."""

    def __init__(self, latent_dim: int, hidden: int = 512, dropout: float = 0.1, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(POSE_DIM, hidden), nn.LeakyReLU(negative_slope), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.net(pose).chunk(2, dim=-1)
        return mean, log_var.clamp(-12.0, 6.0)


class PoseVAE(nn.Module):
    """The VPoser-style prior: ``encoder`` and ``decoder``; ``decoder`` is the frozen F of the task."""

    def __init__(self, latent_dim: int = 16, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.latent_dim, self.hidden, self.dropout = int(latent_dim), int(hidden), float(dropout)
        self.encoder = PoseEncoder(latent_dim, hidden, dropout)
        self.decoder = PoseDecoder(latent_dim, hidden, dropout)

    def forward(self, pose: torch.Tensor, generator: torch.Generator | None = None):
        """(reconstruction, mean, log-variance), sampling the latent with the reparameterization trick."""
        mean, log_var = self.encoder(pose)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return self.decoder(mean + noise * (0.5 * log_var).exp()), mean, log_var

    def config(self) -> dict:
        return {"kind": "landform.tasks.pose.PoseVAE", "latent_dim": self.latent_dim, "hidden": self.hidden,
                "dropout": self.dropout}


def load_vae(device: str | torch.device = "cpu", directory=None) -> PoseVAE:
    """The shipped VAE (from the zoo, or ``directory``), in eval mode with frozen weights."""
    try:
        state, config = zoo.load(VAE_NAME, directory)
    except LandformError as error:
        raise LandformError(f"{error}; train it with `landform zoo train {VAE_NAME}`") from None
    if config.get("kind") != "landform.tasks.pose.PoseVAE":
        raise LandformError(f"{zoo.path(VAE_NAME, directory)} is not a pose VAE")
    vae = PoseVAE(config["latent_dim"], config["hidden"], config["dropout"])
    zoo.load_module_state(vae, {k: v.float() for k, v in state.items()}, str(zoo.path(VAE_NAME, directory)))
    vae.eval().requires_grad_(False)
    return vae.to(device)
