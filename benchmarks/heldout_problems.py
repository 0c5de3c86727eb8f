"""Held-out problems: forward models written after the recipe was last changed and run once, untuned, to check that
what `landform fit` gives on the examples and probes holds on a model it was never tried on
(benchmarks/recipe_examples.py --set heldout). Once run they are held out no longer: the next change to the recipe
should be checked on a new one.

- stroke_decoder: a smooth decoder of strokes, 12-d latent to a 16x16 image: a frozen random MLP gives the end
  points and ink of two strokes, drawn with a Gaussian profile (a stroke far from its target gets little gradient).
- box_renderer: two coloured boxes, rotated and overlapping, composited front to back on a grey background, 17
  parameters to 3x24x24 (local minima: a box's angle is periodic and a box that misses its target gets no
  gradient through its steep edge; the front box hides part of the back one).
- upsampling_decoder: a random decoder of nearest-neighbour upsampling and 3x3 convolutions (SiLU), 20-d latent
  to a 3x24x24 colour image, observed with noise (smooth; a conv decoder with image-shaped observations).
- damped_chirps: a signal synthesizer, two damped sinusoids (amplitude, frequency, phase, decay each) summed into
  96 samples (local minima: a frequency off by a cycle matches the target nowhere; the phase is periodic).
- lit_sphere: a Lambertian sphere (centre, radius, light direction, colour) over a grey background, 9 parameters
  to 3x24x24 (local minima: a sphere that misses its target gets gradient only through its soft rim; the light's
  azimuth is periodic).
- mlp_decoder: a random tanh MLP (24-d latent, two hidden layers of 256) to a 28x28 image through a sigmoid,
  observed with noise (a smooth decoder of the size of a small VAE's).

The last three were written in the session of 2026-12-08, before their first run.
"""
from __future__ import annotations

import math

import torch

from landform.problem import Problem

SIDE = 16  # the image's side
STROKES = 2
WIDTH = 0.12  # a stroke's Gaussian profile, in units of the image's half-width


def _draw_weights(layers: tuple[torch.nn.Module, ...], gain: float, g: torch.Generator) -> None:
    """Random frozen weights: each layer's weight ~ N(0, (gain / sqrt(fan-in))²), its bias ~ N(0, 0.1²), drawn
    from ``g`` in the order given (so that a seed names one F)."""
    for layer in layers:
        torch.nn.init.normal_(layer.weight, std=gain / math.sqrt(layer.weight[0].numel()), generator=g)
        torch.nn.init.normal_(layer.bias, std=0.1, generator=g)


class StrokeDecoder(torch.nn.Module):
    """12-d latent -> 1x16x16: a random tanh MLP to the end points and ink of two strokes, drawn softly."""

    def __init__(self, seed: int = 29) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Linear(12, 64)
        self.b = torch.nn.Linear(64, STROKES * 5)
        _draw_weights((self.a, self.b), 1.5, g)
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


BOX_SIDE = 24
BOX_EDGE = 0.03  # the boxes' soft edge, in image units (the image spans [-1, 1])


class BoxRenderer(torch.nn.Module):
    """x [B, 17] = per box (centre x, centre y, angle, half-width, half-height and r, g, b logits) and the
    background's grey logit -> [B, 3, 24, 24]: box 0 over box 1 over the background."""

    def __init__(self) -> None:
        super().__init__()
        grid = torch.linspace(-1, 1, BOX_SIDE)
        self.register_buffer("u", grid.view(1, 1, BOX_SIDE))
        self.register_buffer("v", grid.view(1, BOX_SIDE, 1))

    def _box(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One box's coverage [B, 1, H, W] and colour [B, 3, 1, 1] from its 8 parameters."""
        cx, cy, angle = p[:, 0, None, None], p[:, 1, None, None], p[:, 2, None, None]
        half_w = 0.1 + 0.3 * torch.sigmoid(p[:, 3, None, None])
        half_h = 0.1 + 0.3 * torch.sigmoid(p[:, 4, None, None])
        du, dv = self.u - cx, self.v - cy
        along = du * torch.cos(angle) + dv * torch.sin(angle)
        across = -du * torch.sin(angle) + dv * torch.cos(angle)
        outside = torch.maximum(along.abs() - half_w, across.abs() - half_h)
        return torch.sigmoid(-outside / BOX_EDGE).unsqueeze(1), torch.sigmoid(p[:, 5:8])[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (front, front_colour), (back, back_colour) = self._box(x[:, 0:8]), self._box(x[:, 8:16])
        background = torch.sigmoid(x[:, 16:17])[:, :, None, None].expand(-1, 3, 1, 1)
        behind = back * back_colour + (1 - back) * background
        return front * front_colour + (1 - front) * behind


def sample_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """Centres in the middle 70% of the image, any angle, size and colour."""
    x = torch.randn(n, 17, generator=g)
    for box in (0, 8):
        x[:, box:box + 2] = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.7
        x[:, box + 2] = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    return x


def box_renderer() -> Problem:
    return Problem.from_sampler(BoxRenderer(), sample_boxes, (17,), noise=0.01, name="box_renderer")


class UpsamplingDecoder(torch.nn.Module):
    """20-d latent -> 3x24x24: a linear map to 32x3x3, three times (nearest x2, 3x3 conv, SiLU), a 3x3 conv to
    colour, sigmoid; random frozen weights."""

    def __init__(self, seed: int = 41) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = torch.nn.Linear(20, 32 * 3 * 3)
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(a, b, 3, padding=1)
                                         for a, b in ((32, 16), (16, 8), (8, 8), (8, 3)))
        _draw_weights((self.fc, *self.convs), 1.6, g)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.silu(self.fc(x)).view(-1, 32, 3, 3)
        for conv in self.convs[:-1]:
            h = torch.nn.functional.silu(conv(torch.nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")))
        return torch.sigmoid(self.convs[-1](h))


def upsampling_decoder() -> Problem:
    return Problem.from_sampler(UpsamplingDecoder(), lambda n, g: torch.randn(n, 20, generator=g), (20,), noise=0.02,
                                name="upsampling_decoder")


CHIRP_SAMPLES = 96


class DampedChirps(torch.nn.Module):
    """x [B, 8] = per component (log amplitude, frequency logit, phase, decay logit) -> [B, 1, 96]: the sum of two
    damped sinusoids a e^(-d t) sin(2π f t + φ) over t in [0, 1), f from 1 to 8 cycles, d from 0 to 4."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("t", torch.arange(CHIRP_SAMPLES, dtype=torch.float32).view(1, 1, -1) / CHIRP_SAMPLES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.view(-1, 2, 4, 1)
        amplitude, phase = torch.exp(0.5 * p[:, :, 0]), p[:, :, 2]
        frequency, decay = 1 + 7 * torch.sigmoid(p[:, :, 1]), 4 * torch.sigmoid(p[:, :, 3])
        waves = amplitude * torch.exp(-decay * self.t) * torch.sin(2 * math.pi * frequency * self.t + phase)
        return waves.sum(1, keepdim=True)


def sample_chirps(n: int, g: torch.Generator) -> torch.Tensor:
    """Log amplitudes, frequency and decay logits ~ N(0, 1); phases uniform over the circle."""
    x = torch.randn(n, 8, generator=g)
    x[:, 2::4] = (torch.rand(n, 2, generator=g) * 2 - 1) * math.pi
    return x


def damped_chirps() -> Problem:
    return Problem.from_sampler(DampedChirps(), sample_chirps, (8,), noise=0.02, name="damped_chirps")


SPHERE_SIDE = 24
SPHERE_EDGE = 0.03  # the silhouette's soft edge, in image units (the image spans [-1, 1])


class LitSphere(torch.nn.Module):
    """x [B, 9] = (centre x, centre y, radius logit, light azimuth, light elevation logit, r, g, b logits,
    background grey logit) -> [B, 3, 24, 24]: a sphere lit by a distant light (Lambertian, ambient 0.2) over the
    background, its silhouette soft."""

    def __init__(self) -> None:
        super().__init__()
        grid = torch.linspace(-1, 1, SPHERE_SIDE)
        self.register_buffer("u", grid.view(1, 1, SPHERE_SIDE))
        self.register_buffer("v", grid.view(1, SPHERE_SIDE, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cx, cy = x[:, 0, None, None], x[:, 1, None, None]
        radius = 0.15 + 0.45 * torch.sigmoid(x[:, 2, None, None])
        azimuth, elevation = x[:, 3, None, None], 0.1 + 1.3 * torch.sigmoid(x[:, 4, None, None])
        du, dv = (self.u - cx) / radius, (self.v - cy) / radius
        rho2 = du.pow(2) + dv.pow(2)
        depth = torch.sqrt((1 - rho2).clamp_min(1e-4))
        light = (torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth),
                 torch.sin(elevation))
        shade = 0.2 + 0.8 * torch.relu(du * light[0] + dv * light[1] + depth * light[2])
        coverage = torch.sigmoid((1 - rho2.sqrt()) * radius / SPHERE_EDGE).unsqueeze(1)
        colour = torch.sigmoid(x[:, 5:8])[:, :, None, None]
        background = torch.sigmoid(x[:, 8:9])[:, :, None, None]
        return coverage * colour * shade.unsqueeze(1) + (1 - coverage) * background


def sample_spheres(n: int, g: torch.Generator) -> torch.Tensor:
    """Centres in the middle 60% of the image, any azimuth; the rest ~ N(0, 1)."""
    x = torch.randn(n, 9, generator=g)
    x[:, 0:2] = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.6
    x[:, 3] = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    return x


def lit_sphere() -> Problem:
    return Problem.from_sampler(LitSphere(), sample_spheres, (9,), noise=0.01, name="lit_sphere")


class MLPDecoder(torch.nn.Module):
    """24-d latent -> 1x28x28: two tanh layers of 256 and a sigmoid; random frozen weights."""

    def __init__(self, seed: int = 53) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in ((24, 256), (256, 256), (256, 784)))
        _draw_weights(tuple(self.layers), 1.4, g)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return torch.sigmoid(self.layers[-1](h)).view(-1, 1, 28, 28)


def mlp_decoder() -> Problem:
    return Problem.from_sampler(MLPDecoder(), lambda n, g: torch.randn(n, 24, generator=g), (24,), noise=0.02,
                                name="mlp_decoder")
