"""Projected gradient descent attacks (Madry et al. 2017) under L2 and L∞ bounds, for images in [0, 1].

L2 budget: the paper attacks 32x32x3 CIFAR-10 models trained against L∞ 8/255 with L2 ε = 256/255, i.e.
ε₂ ≈ 0.58·ε∞·√d. Our models are trained against L∞ ε = 0.1 on d = 784 pixels, so the same ratio gives
ε₂ = 0.58·0.1·28 ≈ 1.6; the step keeps the paper's ε/4 (64/255 : 256/255), so 0.4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

L2_EPS = 1.6
L2_STEP = 0.4
LINF_EPS = 0.1
LINF_STEP = 0.01
ATTACK_STEPS = 200


def _l2_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))


def project(delta: torch.Tensor, x: torch.Tensor, *, eps: float, norm: str) -> torch.Tensor:
    """Project a perturbation onto the ε-ball of ``norm`` ("l2" or "linf") and keep x + δ in [0, 1]."""
    delta = delta * torch.clamp(eps / _l2_norm(delta), max=1.0) if norm == "l2" else delta.clamp(-eps, eps)
    return (x + delta).clamp(0.0, 1.0) - x


def pgd(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, norm: str = "l2",
        eps: float = L2_EPS, step: float = L2_STEP, steps: int = ATTACK_STEPS, random_start: bool = True,
        loss: str = "ce", seed: int = 0, clean_logits: torch.Tensor | None = None,
        start: torch.Tensor | None = None) -> torch.Tensor:
    """Untargeted PGD maximizing cross-entropy (``loss="ce"``) or KL to the clean prediction
    (``loss="kl"``, TRADES' inner maximization); returns x_adv with ‖x_adv − x‖ ≤ ε and x_adv in [0, 1].
    ``model`` maps images to logits and may be any differentiable pipeline (a defended classifier too).
    ``start`` (an adversarial example of x, e.g. from another attack) replaces the random start."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    x = x.detach()
    if start is not None:
        delta = project(start.detach() - x, x, eps=eps, norm=norm)
    elif random_start:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(x.shape, generator=generator).to(x)
        if norm == "l2":
            delta = noise / _l2_norm(noise) * eps * torch.rand(x.shape[0], 1, 1, 1, generator=generator).to(x)
        else:
            delta = (torch.rand(x.shape, generator=generator).to(x) * 2 - 1) * eps
        delta = project(delta, x, eps=eps, norm=norm)
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(x + delta)
        if loss == "kl":
            objective = F.kl_div(F.log_softmax(logits, 1), F.softmax(clean_logits, 1), reduction="sum")
        else:
            objective = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(objective, [delta])
        with torch.no_grad():
            delta = delta + step * grad / _l2_norm(grad) if norm == "l2" else delta + step * grad.sign()
            delta = project(delta, x, eps=eps, norm=norm)
    return (x + delta).detach()


@torch.no_grad()
def accuracy(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, x.shape[0], batch_size))
    return correct / max(x.shape[0], 1)
