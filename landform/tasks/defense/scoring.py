"""How the deployed defense scores images, and the numbers every defense evaluation reports.

The defended classifier is a function of a batch (the contrastive loss takes its negatives from the other
images of the chunk), so the defense always runs on the same fixed chunks of ``CHUNK`` images: ``scored``
judges attacked images with it, and ``Defended`` is the same defense as one module that an attack can
differentiate (through the unrolled steps, or with BPDA). ``accuracy`` and ``difference`` make the report's
blocks (a mean over images with its 95% bootstrap interval) and ``percent`` writes one in a table.

The demo's report (``landform.tasks.defense.task``) and the adaptive-attack studies under experiments/ both
use these, so that their numbers are computed, keyed and written one way.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from landform import zoo
from landform.errors import LandformError
from landform.metrics import bootstrap_ci
from landform.tasks import runs_dir
from landform.tasks.defense.defense import defended_logits, reverse

CHUNK = 100  # the defense runs on fixed chunks of images: the contrastive loss takes its negatives from the chunk


# ----------------------------------------------------------------------------------------------- numbers
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's predicted class of every image (no gradients)."""
    return model(x).argmax(1)


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image, 1.0 where the classifier predicts the label ``y`` and 0.0 elsewhere (float64, on the CPU)."""
    return (predict(model, x) == y).double().cpu()


def accuracy(hits: torch.Tensor, seed: int = 0) -> dict:
    """The share of images scored right (``hits``: per image, bool or 0/1) with its 95% bootstrap interval
    over images: ``{"accuracy", "ci95", "count"}``."""
    hits = hits.double()
    ci = bootstrap_ci(lambda c: float(c[0]), hits[None], seed=seed)
    return {"accuracy": float(hits.mean()), "ci95": ci, "count": int(hits.numel())}


def difference(first: torch.Tensor, second: torch.Tensor, seed: int = 0) -> dict:
    """The paired difference of two per-image scorings of the same images (mean of ``first`` minus mean of
    ``second``) with its 95% bootstrap interval over images: ``{"difference", "ci95", "count"}``."""
    first, second = first.double(), second.double()
    ci = bootstrap_ci(lambda a, b: float(a[0] - b[0]), first[None], second[None], seed=seed)
    return {"difference": float(first.mean() - second.mean()), "ci95": ci, "count": int(first.numel())}


def percent(block: dict | float | None, ci: bool = True) -> str:
    """An ``accuracy`` or ``difference`` block (or a bare share) in %, as the reports' tables show it: the
    difference signed, its interval in brackets (an end the bootstrap left open reads "open")."""
    if block is None:
        return "n/a"
    if isinstance(block, (int, float)):
        return f"{100 * block:.1f}"
    value = block.get("accuracy", block.get("difference"))
    text = f"{100 * value:+.1f}" if "difference" in block else f"{100 * value:.1f}"
    if ci and block.get("ci95"):
        low, high = block["ci95"]
        text += f" [{'open' if low is None else f'{100 * low:.1f}'}, {'open' if high is None else f'{100 * high:.1f}'}]"
    return text


def noise_like(r: torch.Tensor, seed: int) -> torch.Tensor:
    """Gaussian noise with, per image, the same L2 norm as ``r`` (the noise control)."""
    noise = torch.randn(r.shape, generator=torch.Generator().manual_seed(seed)).to(r)
    norm = noise.flatten(1).norm(dim=1).clamp_min(1e-12)
    return noise * (r.flatten(1).norm(dim=1) / norm).view(-1, 1, 1, 1)


# ------------------------------------------------------------------------------------------------ scoring
def scored(model: nn.Module, mapping: nn.Module | None, a: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int,
           seed: int, start_scale: float = 1.0) -> dict:
    """The deployed defense (``reverse`` with ``mapping``, or the baseline's reversal on r where it is None) on
    attacked images ``a``, in chunks of CHUNK. Per image (bool masks, under keys starting with ``_`` since no
    report keeps them): ``_correct`` with the defense, ``_noise`` for the noise control (a + Gaussian noise of
    each image's reversal norm) and ``_undefended``; ``reversal_norm``, the reversal's mean L2 norm. Each
    chunk is cached (RUNS/defense-adaptive/scores) by its images, labels, the weights and the settings, so
    that the studies that score the same examples run the defense once."""
    parts = [_scored_chunk(model, mapping, a[i:i + CHUNK], y[i:i + CHUNK], lr=lr, steps=steps, seed=seed,
                           start_scale=start_scale) for i in range(0, a.shape[0], CHUNK)]
    out = {k: torch.cat([p[k] for p in parts]) for k in ("_correct", "_noise", "_undefended")}
    sizes = [p["_correct"].numel() for p in parts]
    out["reversal_norm"] = sum(p["reversal_norm"] * n for p, n in zip(parts, sizes, strict=True)) / sum(sizes)
    return out


def scored_over_draws(model: nn.Module, mapping: nn.Module | None, a: torch.Tensor, y: torch.Tensor, *,
                      lr: float, steps: int, seeds: list[int], start_scale: float = 1.0) -> dict:
    """A randomized defense scored as the field scores one (the repeated evaluation the AutoAttack maintainers
    ask of randomized defenses): ``scored`` on ``a`` once per draw in ``seeds``, and per image whether it is
    right on the first draw (``_first``), on every draw (``_every``: robust only if no draw lets it through) and on
    more than half of them (``_majority``)."""
    hits = torch.stack([scored(model, mapping, a, y, lr=lr, steps=steps, seed=seed,
                               start_scale=start_scale)["_correct"] for seed in seeds])
    return {"_first": hits[0], "_every": hits.all(0), "_majority": hits.double().mean(0) > 0.5, "draws": len(seeds)}


def _scored_chunk(model, mapping, a: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int, seed: int,
                  start_scale: float = 1.0) -> dict:
    digest = hashlib.sha256(a.detach().cpu().numpy().tobytes())
    digest.update(y.cpu().numpy().tobytes())
    for part in (list(model.state_dict().values()) + ([] if mapping is None else list(mapping.state_dict().values()))):
        digest.update(part.detach().cpu().numpy().tobytes())
    key = {"lr": lr, "steps": steps, "seed": seed, "mapping": mapping is not None}
    if start_scale != 1.0:  # keyed only when not the default, so that earlier scores stay cached
        key["start_scale"] = start_scale
    digest.update(json.dumps(key).encode())
    path = runs_dir() / "defense-adaptive" / "scores" / f"{digest.hexdigest()[:24]}.safetensors"
    if path.exists():
        try:
            tensors, meta = zoo.load_pair(path)
            return {**{k: v.bool() for k, v in tensors.items()}, "reversal_norm": float(meta["reversal_norm"])}
        except (LandformError, KeyError):
            pass
    with torch.enable_grad():
        defended = torch.cat([reverse(model, c, mapping=mapping, steps=steps, lr=lr, seed=seed,
                                      start_scale=start_scale).x for c in a.split(CHUNK)])
    defended = defended.detach()
    r = defended - a
    result = {"_correct": (predict(model, defended) == y).cpu(),
              "_noise": (predict(model, (a + noise_like(r, seed + 7)).clamp(0, 1)) == y).cpu(),
              "_undefended": (predict(model, a) == y).cpu()}
    norm = float(r.flatten(1).norm(dim=1).mean())
    zoo.save_pair(path, {k: v.to(torch.uint8) for k, v in result.items()}, {"reversal_norm": norm})
    return {**result, "reversal_norm": norm}


# ------------------------------------------------------------------------------------------ the composite
class Defended(nn.Module):
    """Defense + classifier as one module (what an attack sees): logits of the classifier on the defended
    images, chunk by chunk. ``seed`` fixes the defense's draw (random start z0 or r0, and the views); ``None``
    draws a fresh one at every call (what EOT averages over). ``bpda``: the defense is the identity on the
    backward pass (Athalye et al. 2018); else the gradient goes through the unrolled steps. ``start_scale``: the
    standard deviation of the random start z0."""

    def __init__(self, model: nn.Module, mapping: nn.Module | None, *, lr: float, steps: int, seed: int | None,
                 bpda: bool = False, draw_seed: int = 1, start_scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.mapping, self.lr, self.steps = model, mapping, lr, steps
        self.seed, self.bpda, self.start_scale = seed, bpda, start_scale
        self.draws = torch.Generator().manual_seed(draw_seed)
        self.calls = 0

    def _seed(self) -> int:
        if self.seed is not None:
            return self.seed
        return int(torch.randint(2**31 - 1, (1,), generator=self.draws))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in a.split(CHUNK):
            self.calls += 1
            seed = self._seed()
            if self.bpda or not torch.is_grad_enabled():
                with torch.enable_grad():
                    defended = reverse(self.model, chunk.detach(), mapping=self.mapping, steps=self.steps,
                                       lr=self.lr, seed=seed, start_scale=self.start_scale).x.detach()
                out.append(self.model(chunk + (defended - chunk).detach()))
            else:
                out.append(defended_logits(self.model, self.mapping, chunk, lr=self.lr, steps=self.steps, seed=seed,
                                           start_scale=self.start_scale))
        return torch.cat(out)
