"""The contrastive self-supervised task of Mao et al. 2021: InfoNCE over several augmented views.

Augmentations for 28x28 grayscale clothing (all differentiable, so the defense can descend through them):
- shifts of up to ±2 pixels with zero (black background) fill: items are centred, and a large crop or a
  rescale of a 28x28 image would cut away the garment's outline, which is most of its information;
- horizontal flip: clothes, bags and shoes keep their class in a mirror, while a vertical flip does not
  occur in the data (trousers upside down);
- brightness and contrast jitter (x -> c·x + b): fabrics differ in shade, and there is no colour to jitter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VIEWS = 4
TEMPERATURE = 0.2
MAX_SHIFT = 2
CONTRAST = (0.7, 1.3)
BRIGHTNESS = 0.1


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of each image of x [B, 1, H, W] (shift, flip, contrast, brightness)."""
    b, _, h, w = x.shape
    g = {"generator": generator} if generator is not None else {}
    shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (b, 2), **g).float()
    flip = torch.where(torch.rand(b, **g) < 0.5, -1.0, 1.0)
    contrast = torch.empty(b).uniform_(*CONTRAST, **g)
    brightness = torch.empty(b).uniform_(-BRIGHTNESS, BRIGHTNESS, **g)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = flip
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 2.0 * shift[:, 0] / w
    theta[:, 1, 2] = 2.0 * shift[:, 1] / h
    theta = theta.to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    view = moved * contrast.to(x).view(b, 1, 1, 1) + brightness.to(x).view(b, 1, 1, 1)
    return view.clamp(0.0, 1.0)


def info_nce(embeddings: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Per-image InfoNCE loss [B] from unit embeddings [V, B, D]: every view is an anchor, the other views
    of its image are positives, all views of the other images in the batch are negatives."""
    v, b, d = embeddings.shape
    flat = embeddings.reshape(v * b, d)
    logits = flat @ flat.T / temperature
    eye = torch.eye(v * b, dtype=torch.bool, device=flat.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits.log_softmax(dim=1)
    image = torch.arange(b, device=flat.device).repeat(v)
    positive = (image[:, None] == image[None, :]) & ~eye
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1)) / (v - 1)
    return per_anchor.view(v, b).mean(0)


def ssl_loss(model, x: torch.Tensor, *, views: int = VIEWS, temperature: float = TEMPERATURE,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image contrastive loss [B] of ``model.embed`` over ``views`` augmented views of x."""
    embeddings = torch.stack([model.embed(augment(x, generator)) for _ in range(views)])
    return info_nce(embeddings, temperature)
