"""A smooth decoder: an 8-dimensional latent to a 16x16 image through a frozen random tanh MLP.

The most common thing people invert (a VAE's or a GAN's generator). Latents are standard normal; the
observations are the decoder's images with a little pixel noise, so no inversion is exact.
"""

from __future__ import annotations

import torch

from landform.problem import Problem

LATENT_DIM = 8
SIDE = 16
NOISE = 0.01


class SmoothDecoder(torch.nn.Module):
    """x [B, 8] -> image [B, 1, 16, 16] in (0, 1), with fixed seeded weights."""

    def __init__(self, seed: int = 7) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(LATENT_DIM, 64), torch.nn.Linear(64, 256),
                                           torch.nn.Linear(256, SIDE * SIDE)])
        for layer in self.layers:
            torch.nn.init.normal_(layer.weight, std=1.6 / layer.in_features ** 0.5, generator=generator)
            torch.nn.init.normal_(layer.bias, std=0.1, generator=generator)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.layers[0](x))
        h = torch.tanh(self.layers[1](h))
        return torch.sigmoid(self.layers[2](h)).reshape(-1, 1, SIDE, SIDE)


def make_problem(seed: int = 7) -> Problem:
    """The decoder as a Problem: standard normal latents, observed through it with a little pixel noise."""
    decoder = SmoothDecoder(seed)

    def latents(n: int, stream: torch.Generator) -> torch.Tensor:
        return torch.randn(n, LATENT_DIM, generator=stream)

    return Problem.from_sampler(decoder, latents, (LATENT_DIM,), noise=NOISE, name="decoder")
