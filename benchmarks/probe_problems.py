"""Probe problems for the fast recipe: five forward models unlike the README's examples, written to find where
`landform fit` fails on a model nobody tuned it for (benchmarks/recipe_examples.py --set probes).

- conv_decoder: a DCGAN-like random decoder, 16-d latent to a 32x32 image (smooth; F costs 10x the example's);
- color_decoder: a softplus MLP, 32-d latent to a 3x16x16 colour image (smooth);
- blob_renderer: three coloured Gaussian blobs, 18 parameters to 3x32x32 (local minima: a start trained through
  F learns to switch every blob off, a blank image, where F's gradient vanishes);
- phase_retrieval: |Ax|², 24 -> 72 (x = 0 is a critical point for every observation);
- deblur: a 24x24 image blurred and subsampled to 12x12 (x is an image; linear, ill-posed);
- physical_units: the colour decoder with x in physical units (x = 100 + 40 z), where descent from 0 needs step
  sizes far above the sweep's grid (it found the baseline held back by the grid's top, 0.5);
- sensing: compressed sensing, 64 random measurements of a smooth 16x16 image (x an image, y a vector).

Their first run found the three faults the recipe now handles: the baseline and the start stuck at a critical
point at 0 (init="origin"), a start that traps descent (dropped), and δ's step sizes from the start tied to
the baseline's. They are not held out any more: read their table as a regression check.
"""
from __future__ import annotations

import math

import torch

from landform.problem import Problem


def _problem(name: str, forward, sample, x_shape: tuple[int, ...], noise: float = 0.0) -> Problem:
    """A probe Problem (MSE): x drawn from ``sample``, observed as F(x) (+ Gaussian noise)."""
    return Problem.from_sampler(forward, sample, x_shape, noise=noise, name=name)


class ConvDecoder(torch.nn.Module):
    """16-d latent -> 1x32x32 through random transposed convs (DCGAN-like), ELU, sigmoid."""
    def __init__(self, seed=3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = torch.nn.Linear(16, 64 * 4 * 4)
        self.c1 = torch.nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.c2 = torch.nn.ConvTranspose2d(32, 16, 4, 2, 1)
        self.c3 = torch.nn.ConvTranspose2d(16, 1, 4, 2, 1)
        for m in (self.fc, self.c1, self.c2, self.c3):
            fan = m.weight.shape[1] if isinstance(m, torch.nn.Linear) else m.weight.shape[0] * 4
            torch.nn.init.normal_(m.weight, std=1.5 / math.sqrt(fan), generator=g)
            torch.nn.init.normal_(m.bias, std=0.1, generator=g)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        h = torch.nn.functional.elu(self.fc(x)).view(-1, 64, 4, 4)
        h = torch.nn.functional.elu(self.c1(h))
        h = torch.nn.functional.elu(self.c2(h))
        return torch.sigmoid(self.c3(h))


def conv_decoder():
    f = ConvDecoder()
    return _problem("conv_decoder", f, lambda n, g: torch.randn(n, 16, generator=g), (16,), noise=0.02)


class ColorDecoder(torch.nn.Module):
    """32-d latent -> 3x16x16 through a random softplus MLP."""
    def __init__(self, seed=11):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Linear(32, 128)
        self.b = torch.nn.Linear(128, 512)
        self.c = torch.nn.Linear(512, 3 * 256)
        for m in (self.a, self.b, self.c):
            torch.nn.init.normal_(m.weight, std=2.0 / math.sqrt(m.in_features), generator=g)
            torch.nn.init.normal_(m.bias, std=0.2, generator=g)
        self.requires_grad_(False)

    def forward(self, x):
        h = torch.nn.functional.softplus(self.a(x)) - 0.7
        h = torch.nn.functional.softplus(self.b(h)) - 0.7
        return torch.sigmoid(self.c(h)).view(-1, 3, 16, 16)


def color_decoder():
    f = ColorDecoder()
    return _problem("color_decoder", f, lambda n, g: torch.randn(n, 32, generator=g), (32,), noise=0.01)


class BlobRenderer(torch.nn.Module):
    """3 coloured Gaussian blobs: per blob (cx, cy, log width, r, g, b) -> 3x32x32, additive."""
    def __init__(self):
        super().__init__()
        grid = torch.linspace(-1, 1, 32)
        self.register_buffer("u", grid.view(1, 1, 1, 1, 32))
        self.register_buffer("v", grid.view(1, 1, 1, 32, 1))

    def forward(self, x):
        p = x.view(-1, 3, 6)
        cx, cy = p[:, :, 0, None, None, None], p[:, :, 1, None, None, None]
        width = 0.05 + 0.1 * torch.sigmoid(p[:, :, 2, None, None, None])
        colour = torch.sigmoid(p[:, :, 3:6, None, None])
        blob = torch.exp(-((self.u - cx) ** 2 + (self.v - cy) ** 2) / (2 * width ** 2))
        return (colour * blob).sum(1).clamp(max=1.0)


def blob_renderer():
    f = BlobRenderer()

    def sample(n, g):
        p = torch.randn(n, 3, 6, generator=g)
        p[:, :, :2] = (torch.rand(n, 3, 2, generator=g) * 2 - 1) * 0.75
        return p.view(n, 18)
    return _problem("blob_renderer", f, sample, (18,))


class PhaseRetrieval(torch.nn.Module):
    """x in R^24 -> |Ax|^2 in R^72 (real Gaussian A): non-convex, sign-symmetric."""
    def __init__(self, seed=5):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("A", torch.randn(72, 24, generator=g) / math.sqrt(24))

    def forward(self, x):
        return (x @ self.A.T) ** 2


def phase_retrieval():
    f = PhaseRetrieval()
    return _problem("phase_retrieval", f, lambda n, g: torch.randn(n, 24, generator=g), (24,), noise=0.01)


class Deblur(torch.nn.Module):
    """x an image 1x24x24 -> blurred and 2x downsampled 1x12x12 (ill-posed linear)."""
    def __init__(self):
        super().__init__()
        k = torch.exp(-torch.arange(-3, 4).float() ** 2 / 4.0)
        k = (k[:, None] * k[None, :]) / (k.sum() ** 2)
        self.register_buffer("k", k.view(1, 1, 7, 7))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.k, padding=3)[:, :, ::2, ::2]


def deblur():
    f = Deblur()
    gen = ConvDecoder(seed=9)

    def sample(n, g):
        with torch.no_grad():
            return torch.nn.functional.interpolate(gen(torch.randn(n, 16, generator=g)), size=24, mode="bilinear")
    return _problem("deblur", f, sample, (1, 24, 24), noise=0.005)


def physical_units():
    f = ColorDecoder()

    def forward(x):
        return f((x - 100.0) / 40.0)
    return _problem("physical_units", forward, lambda n, g: 100 + 40 * torch.randn(n, 32, generator=g), (32,),
                    noise=0.01)


class Sensing(torch.nn.Module):
    """x an image 1x16x16 -> 64 Gaussian random measurements."""
    def __init__(self, seed=2):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("A", torch.randn(64, 256, generator=g) / 16)

    def forward(self, x):
        return x.flatten(1) @ self.A.T


def sensing():
    f = Sensing()

    def sample(n, g):
        return torch.nn.functional.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=16, mode="bicubic")
    return _problem("sensing", f, sample, (1, 16, 16), noise=0.01)
