"""Held-out problems: forward models written after the recipe was last changed and run once, untuned, to check that
what `landform fit` gives on the examples and probes holds on a model it was never tried on
(benchmarks/recipe_examples.py --set heldout). Once run they are held out no longer: the next change to the recipe
should be checked on a new one.

- stroke_decoder: a smooth decoder of strokes, 12-d latent to a 16x16 image: a frozen random MLP gives the end
  points and ink of two strokes, drawn with a Gaussian profile (a stroke far from its target gets little gradient).
"""
from __future__ import annotations

import math

import torch

from landform.problem import Problem

SIDE = 16  # the image's side
STROKES = 2
WIDTH = 0.12  # a stroke's Gaussian profile, in units of the image's half-width


class StrokeDecoder(torch.nn.Module):
    """12-d latent -> 1x16x16: a random tanh MLP to the end points and ink of two strokes, drawn softly."""

    def __init__(self, seed: int = 29) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Linear(12, 64)
        self.b = torch.nn.Linear(64, STROKES * 5)
        for m in (self.a, self.b):
            torch.nn.init.normal_(m.weight, std=1.5 / math.sqrt(m.in_features), generator=g)
            torch.nn.init.normal_(m.bias, std=0.1, generator=g)
        grid = torch.linspace(-1, 1, SIDE)
        self.register_buffer("pixels", torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).view(1, 1, -1, 2))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.b(torch.tanh(self.a(x))).view(-1, STROKES, 5)
        start, end = 0.8 * torch.tanh(p[..., None, 0:2]), 0.8 * torch.tanh(p[..., None, 2:4])
        ink = torch.sigmoid(2 * p[..., 4:5])
        along = end - start
        t = (((self.pixels - start) * along).sum(-1, keepdim=True) / (along.pow(2).sum(-1, keepdim=True) + 1e-4))
        nearest = start + t.clamp(0, 1) * along
        distance = (self.pixels - nearest).pow(2).sum(-1)
        image = (ink * torch.exp(-distance / (2 * WIDTH**2))).sum(1).clamp(max=1.0)
        return image.view(-1, 1, SIDE, SIDE)


def stroke_decoder() -> Problem:
    return Problem.from_sampler(StrokeDecoder(), lambda n, g: torch.randn(n, 12, generator=g), (12,), noise=0.01,
                                name="stroke_decoder")
