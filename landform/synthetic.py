"""A small built-in problem whose input landscape is genuinely hard, for the CLI demo and the tests.

F is a frozen random tanh MLP decoder behind an ill-conditioned rotation (condition number 100, not
axis-aligned, so Adam's per-coordinate scaling cannot undo it). True inputs lie near a 4-dimensional
curved manifold far from the origin, as real latents do: descent in X from 0 is slow; a learned Θ can
put the data where a few steps reach it.
"""

from __future__ import annotations

import torch

from landform.problem import Problem

X_DIM = 16
Y_DIM = 32
CODE_DIM = 4


class SyntheticDecoder(torch.nn.Module):
    """y = W3 tanh(W2 tanh(W1 R S Rᵀ x)), with fixed seeded weights."""

    def __init__(self, seed: int = 1234) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        rotation, _ = torch.linalg.qr(torch.randn(X_DIM, X_DIM, generator=generator))
        scales = torch.logspace(-1, 1, X_DIM)
        self.register_buffer("conditioner", rotation @ torch.diag(scales) @ rotation.T)
        self.layer1 = torch.nn.Linear(X_DIM, 64)
        self.layer2 = torch.nn.Linear(64, 64)
        self.layer3 = torch.nn.Linear(64, Y_DIM)
        for layer in (self.layer1, self.layer2, self.layer3):
            torch.nn.init.normal_(layer.weight, std=1.5 / layer.in_features ** 0.5, generator=generator)
            torch.nn.init.normal_(layer.bias, std=0.1, generator=generator)
        self.register_buffer("code_map", torch.randn(CODE_DIM, X_DIM, generator=generator) / CODE_DIM ** 0.5)
        self.register_buffer("offset", torch.randn(X_DIM, generator=generator))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.conditioner
        return self.layer3(torch.tanh(self.layer2(torch.tanh(self.layer1(h)))))

    def sample_inputs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """True inputs: a curved 4-D manifold, stretched along F's flat directions, away from 0."""
        code = torch.randn(n, CODE_DIM, generator=generator)
        h = self.offset + code @ self.code_map + 0.3 * torch.sin(2 * code @ self.code_map)
        return torch.linalg.solve(self.conditioner, h.T).T


def synthetic_problem(seed: int = 1234) -> Problem:
    """The built-in problem; train and test observations come from disjoint random streams."""
    decoder = SyntheticDecoder(seed)
    return Problem.from_sampler(decoder, decoder.sample_inputs, (X_DIM,), name="synthetic")
