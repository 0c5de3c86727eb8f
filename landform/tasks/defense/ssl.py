"""The contrastive self-supervised task of Mao et al. 2021: InfoNCE over several augmented views.

Views come from kornia's differentiable augmentations (the defense descends through them), following
SimCLR/Mao et al.'s recipe adapted to 28x28 grayscale clothing: a random resized crop (the view a strong
crop gives is where an attack crafted on the whole image loses its grip, which is what makes the
contrastive loss see the attack), a horizontal flip (clothes keep their class in a mirror), and brightness
and contrast jitter (there is no colour). ``VIEWS`` is the dict stored in every model's config.
"""

from __future__ import annotations

from typing import Any

import torch

VIEWS: dict[str, Any] = {"views": 4, "temperature": 0.2, "crop_scale": [0.35, 1.0], "flip": 0.5,
                         "brightness": 0.3, "contrast": 0.3, "jitter_p": 0.8}


def augmenter(settings: dict[str, Any] | None = None):
    """The kornia pipeline that draws one view of each image (torch's global RNG decides the parameters)."""
    import kornia.augmentation as K

    s = {**VIEWS, **(settings or {})}
    steps = [K.RandomResizedCrop((28, 28), scale=tuple(s["crop_scale"]), ratio=(0.75, 4 / 3))]
    if s["flip"]:
        steps.append(K.RandomHorizontalFlip(p=s["flip"]))
    if s["brightness"] or s["contrast"]:
        steps.append(K.ColorJitter(brightness=s["brightness"], contrast=s["contrast"], p=s["jitter_p"]))
    return K.AugmentationSequential(*steps)


_CACHE: dict[str, Any] = {}


def augment(x: torch.Tensor, settings: dict[str, Any] | None = None) -> torch.Tensor:
    """One random view of each image of x [B, 1, 28, 28], in [0, 1], differentiable with respect to x."""
    key = repr(sorted({**VIEWS, **(settings or {})}.items()))
    if key not in _CACHE:
        _CACHE[key] = augmenter(settings)
    return _CACHE[key](x).clamp(0.0, 1.0)


def info_nce(embeddings: torch.Tensor, temperature: float = VIEWS["temperature"],
             bank: torch.Tensor | None = None, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image InfoNCE loss [B] from unit embeddings [V, B, D]: every view is an anchor, the other views
    of its image are positives; the negatives are all views of the other images in the batch (SimCLR, and
    Mao et al.'s defense) or, with ``bank`` [K, D], a fixed set of embeddings of other images. ``groups`` [B]
    marks rows that come from the same image (a batch may hold one attacked image at several points of its
    reversal): those are no one's negatives."""
    v, b, d = embeddings.shape
    if bank is None:
        flat = embeddings.reshape(v * b, d)
        logits = flat @ flat.T / temperature
        eye = torch.eye(v * b, dtype=torch.bool, device=flat.device)
        excluded = eye
        if groups is not None:
            group = groups.to(flat.device).repeat(v)
            row = torch.arange(b, device=flat.device).repeat(v)
            excluded = eye | ((group[:, None] == group[None, :]) & (row[:, None] != row[None, :]))
        logits = logits.masked_fill(excluded, float("-inf"))
        log_prob = logits.log_softmax(dim=1)
        image = torch.arange(b, device=flat.device).repeat(v)
        positive = (image[:, None] == image[None, :]) & ~eye
        per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1)) / (v - 1)
        return per_anchor.view(v, b).mean(0)
    own = torch.einsum("vbd,wbd->bvw", embeddings, embeddings) / temperature  # [B, V, V]
    eye = torch.eye(v, dtype=torch.bool, device=embeddings.device)
    own = own.masked_fill(eye, float("-inf"))
    others = torch.einsum("vbd,kd->bvk", embeddings, bank.to(embeddings)) / temperature  # [B, V, K]
    log_prob = torch.cat([own, others], dim=2).log_softmax(dim=2)[:, :, :v]
    per_anchor = -log_prob.masked_fill(eye, 0.0).sum(2) / (v - 1)
    return per_anchor.mean(1)


def ssl_loss(model, x: torch.Tensor, *, views: int | None = None, settings: dict[str, Any] | None = None,
             in_batch: bool = False, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image contrastive loss [B] of ``model.embed`` over ``views`` augmented views of x (the model's own
    view settings unless ``settings`` is given), against the model's negative bank (``model.bank``) unless
    ``in_batch`` or the model has none."""
    s = {**VIEWS, **(getattr(model, "views", None) or {}), **(settings or {})}
    count = views or s["views"]
    batch = torch.cat([augment(x, s) for _ in range(count)])
    embeddings = model.embed(batch).view(count, x.shape[0], -1)
    bank = None if in_batch else getattr(model, "bank", None)
    return info_nce(embeddings, s["temperature"], bank=bank if bank is not None and bank.abs().sum() > 0 else None,
                    groups=groups)


@torch.no_grad()
def negative_bank(model, images: torch.Tensor, *, seed: int = 0,
                  settings: dict[str, Any] | None = None) -> torch.Tensor:
    """Unit embeddings [K, D] of one augmented view of each of ``images``: the fixed negatives of the defense."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model.embed(augment(images, {**VIEWS, **(getattr(model, "views", None) or {}), **(settings or {})}))


def ssl_gap(model, clean: torch.Tensor, attacked: torch.Tensor, *, seed: int = 0, chunk: int = 100,
            in_batch: bool = True) -> torch.Tensor:
    """Per-image SSL(attacked) − SSL(clean), both in chunks of ``chunk`` images with the same augmentation
    draws (the same seed per chunk), so the difference is the attack's alone; with in-batch negatives (the
    defense's loss) unless ``in_batch`` is False."""
    out = []
    with torch.no_grad(), torch.random.fork_rng():
        for i in range(0, clean.shape[0], chunk):
            torch.manual_seed(seed + i)
            before = ssl_loss(model, clean[i:i + chunk], in_batch=in_batch)
            torch.manual_seed(seed + i)
            out.append(ssl_loss(model, attacked[i:i + chunk], in_batch=in_batch) - before)
    return torch.cat(out)


@torch.no_grad()
def view_vote(model, clean: torch.Tensor, attacked: torch.Tensor, labels: torch.Tensor, *, views: int = 16,
              seed: int = 0) -> dict[str, float]:
    """Accuracy of the classifier's majority vote over ``views`` SSL views, on clean and attacked images: what a
    view-consistency objective could at best restore if the attack does not survive the views."""
    out = {}
    for name, x in (("clean", clean), ("attacked", attacked)):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            probs = sum(model(augment(x, model.views)).softmax(1) for _ in range(views))
        out[name] = float((probs.argmax(1) == labels).double().mean())
    return out
