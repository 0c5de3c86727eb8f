"""A differentiable renderer with local minima: two soft disks, 8 shape parameters, a 24x24 image.

Each disk has a centre (x, y), a radius and a brightness. Its edge is a steep sigmoid, so a disk that does
not overlap the disk it should match receives almost no gradient: descent from a poor start stalls in a
local minimum, as it does with real rasterizers and silhouette losses.
"""

from __future__ import annotations

import torch

from landform.problem import Problem

DISKS = 2
SIDE = 24
EDGE = 0.04  # width of the soft edge, in image units (the image spans [-1, 1])


class DiskRenderer(torch.nn.Module):
    """x [B, 8] = per disk (centre x, centre y, radius logit, brightness logit) -> image [B, 1, 24, 24]."""

    def __init__(self) -> None:
        super().__init__()
        grid = torch.linspace(-1, 1, SIDE)
        self.register_buffer("u", grid.view(1, 1, 1, SIDE))
        self.register_buffer("v", grid.view(1, 1, SIDE, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = x.reshape(-1, DISKS, 4, 1, 1)
        cx, cy = params[:, :, 0], params[:, :, 1]
        radius = 0.12 + 0.18 * torch.sigmoid(params[:, :, 2])
        brightness = 0.3 + 0.7 * torch.sigmoid(params[:, :, 3])
        distance = torch.sqrt((self.u - cx) ** 2 + (self.v - cy) ** 2 + 1e-6)
        coverage = torch.sigmoid((radius - distance) / EDGE)
        return (brightness * coverage).sum(dim=1, keepdim=True).clamp(max=1.0)


def sample_shapes(n: int, generator: torch.Generator) -> torch.Tensor:
    """True parameters: centres anywhere in the middle 80% of the image, any radius and brightness."""
    params = torch.randn(n, DISKS, 4, generator=generator)
    params[:, :, :2] = (torch.rand(n, DISKS, 2, generator=generator) * 2 - 1) * 0.8
    return params.reshape(n, DISKS * 4)


def make_problem() -> Problem:
    """The renderer as a Problem; train and test observations come from disjoint random streams."""
    return Problem.from_sampler(DiskRenderer(), sample_shapes, (DISKS * 4,), name="renderer")
