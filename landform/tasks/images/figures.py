"""Image grids for the image task's report (PNG via matplotlib, no extra dependency)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from landform.report import save_figure


def tile(images: torch.Tensor, rows: int) -> torch.Tensor:
    """[N, 1, H, W] images in [0, 1] to one [rows*H, cols*W] array with 1-pixel white gaps."""
    n, _, h, w = images.shape
    cols = -(-n // rows)
    canvas = torch.ones(rows * (h + 1) - 1, cols * (w + 1) - 1)
    for index in range(n):
        r, c = divmod(index, cols)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[index, 0].clamp(0, 1)
    return canvas


def save_grid(path: str | Path, images: torch.Tensor, rows: int) -> Path:
    """Save a plain grid of images (no labels) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    plt.imsave(tmp, tile(images.detach().cpu(), rows).numpy(), cmap="gray", vmin=0, vmax=1)
    os.replace(tmp, path)
    return path


def save_labeled_grid(path: str | Path, rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str],
                      column_labels: Sequence[str], title: str = "") -> Path:
    """A grid of single images [1, H, W] with row and column labels (the paper's Figs. 4, 6, 7)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols + 1.2, 1.1 * n_rows + 0.5), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if c < len(row):
                axis.imshow(row[c].detach().cpu()[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            if r == 0 and c < len(column_labels):
                axis.set_title(column_labels[c], fontsize=7)
            if c == 0:
                axis.set_ylabel(row_labels[r], fontsize=7, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)
