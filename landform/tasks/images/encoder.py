"""Encoder-based inference, the paper's pSp comparison: a CNN from an image to the generator's w.

Trained on real Fashion-MNIST train images to reconstruct them through the frozen generator (pixel MSE
of G(E(image)), as pSp's reconstruction objective), plus a latent term on generated images (E(G(w)) ≈ w)
that keeps its outputs where the generator was trained.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as functional
from torch import nn

from landform import zoo
from landform.errors import LandformError
from landform.progress import progress_bar
from landform.tasks.images.data import load_fashion_mnist
from landform.tasks.images.generator import W_DIM, load_generator
from landform.tasks.images.generator import ZOO_NAME as GENERATOR_NAME

ZOO_NAME = "images-encoder"


class Encoder(nn.Module):
    """[B, 1, 28, 28] in [0, 1] -> w [B, w_dim]."""

    def __init__(self, w_dim: int = W_DIM, channels: int = 32) -> None:
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * channels, 4 * channels, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(4 * channels * 16, 256), nn.LeakyReLU(0.2), nn.Linear(256, w_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1)


def check_generator(name: str, config: dict) -> None:
    """Models fitted on top of the generator must have been fitted on the shipped one."""
    if config.get("generator") != zoo.fingerprint(GENERATOR_NAME):
        raise LandformError(f"{name} was fitted for another {GENERATOR_NAME}; retrain it with "
                            f"`landform zoo train {name}`")


def load_encoder(device: str | torch.device = "cpu") -> Encoder:
    """The shipped encoder, frozen, in eval mode."""
    state, config = zoo.load(ZOO_NAME)
    check_generator(ZOO_NAME, config)
    encoder = Encoder(w_dim=config.get("w_dim", W_DIM), channels=config.get("channels", 32))
    zoo.load_module_state(encoder, state, str(zoo.path(ZOO_NAME)))
    return encoder.to(device).eval().requires_grad_(False)


def train_encoder(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                  iterations: int = 1500, batch_size: int = 64, latent_weight: float = 0.1,
                  zoo_dir: Path | None = None) -> Encoder:
    """Train the encoder (minutes on a CPU) and write the zoo entry ``images-encoder`` with its card into
    ``zoo_dir`` (default the package's zoo; the generator is read from there when it holds one)."""
    del resume  # short enough to run in one go: no checkpoints, so no run_dir
    torch.manual_seed(seed)
    generator = load_generator(zoo.path(GENERATOR_NAME, zoo_dir), device=device)
    images, _ = load_fashion_mnist("train")
    val, _ = load_fashion_mnist("val")
    encoder = Encoder().to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    sampler = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for iteration in progress_bar(range(iterations), enabled=progress, desc="encoder"):
        real = images[torch.randint(images.shape[0], (batch_size,), generator=sampler)].to(device)
        with torch.no_grad():
            w = generator.sample_w(batch_size, sampler)
            fake = generator(w)
        reconstruction = functional.mse_loss(generator(encoder(real)), real)
        latent = functional.mse_loss(encoder(fake), w)
        loss = reconstruction + latent_weight * latent
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if iteration == iterations // 2:
            for group in optimizer.param_groups:
                group["lr"] = 3e-4
    seconds = time.perf_counter() - started
    encoder.eval()
    with torch.no_grad():
        val_mse = functional.mse_loss(generator(encoder(val[:1000].to(device))), val[:1000].to(device)).item()
    card = f"""# images-encoder

Encoder-based inference for the image task (the paper's pSp comparison): image -> w of images-generator.

- **Architecture**: three stride-2 3x3 convs (32, 64, 128 channels, LeakyReLU 0.2), linear 2048 -> 256 ->
  {W_DIM}. {sum(p.numel() for p in encoder.parameters()):,} parameters.
- **Data**: Fashion-MNIST train split minus the 5,000-image validation split (seed 0).
- **Objective**: pixel MSE of G(E(image)) on real images + {latent_weight} x MSE(E(G(w)), w) on generated
  ones; Adam lr 1e-3 then 3e-4, batch {batch_size}, {iterations} iterations, seed {seed}.
- **Training time**: {seconds / 60:.1f} minutes on this machine's CPU.
- **Metric**: reconstruction MSE on 1,000 validation images: {val_mse:.4f}.
- **Reproduce**: `landform zoo train images-encoder` (needs images-generator).
"""
    zoo.save(ZOO_NAME, encoder.state_dict(), {"w_dim": encoder.w_dim, "channels": encoder.channels,
                                              "val_mse": val_mse,
                                              "generator": zoo.fingerprint(GENERATOR_NAME, zoo_dir)},
             card, directory=zoo_dir)
    return encoder



