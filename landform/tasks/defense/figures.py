"""Figures of the defense report: robust accuracy against defense steps, and example images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from landform.report import save_figure
from landform.tasks.defense.data import CLASSES


def plot_robust_accuracy(path: Path, rows: dict) -> None:
    """One panel per model: baseline and ours against defense steps, each with its noise control (dotted), and
    no defense and clean as lines."""
    fig, axes = plt.subplots(1, len(rows), figsize=(4.6 * len(rows), 3.6), squeeze=False)
    for ax, (name, row) in zip(axes[0], rows.items(), strict=True):
        for key, label, marker in (("baseline_steps", "baseline (optimize r)", "o"),
                                   ("landscape_steps", "ours (optimize z, r = Θ(z))", "s")):
            steps = [int(t) for t in row[key]]
            line, = ax.plot(steps, [100 * v["accuracy"] for v in row[key].values()], marker + "-", label=label)
            ax.plot(steps, [100 * v["noise"]["accuracy"] for v in row[key].values()], marker + ":",
                    color=line.get_color(), alpha=0.6, label=f"noise of the same norm ({label.split()[0]})")
        ax.axhline(100 * row["no_defense"]["accuracy"], color="gray", ls="--", label="no defense")
        ax.axhline(100 * row["clean"]["accuracy"], color="green", ls=":", label="clean")
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.set_xlim(0.8, 1.25 * max(steps))
        ax.set_title(name)
        ax.set_xlabel("defense steps")
        ax.set_ylabel("robust accuracy (%)")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path, bbox_inches="tight")


def plot_examples(path: Path, pictures: dict[str, torch.Tensor]) -> None:
    """Rows: clean, attacked, reversal vector (scaled to its own range), defended; labels in titles."""
    k = pictures["clean"].shape[0]
    fig, axes = plt.subplots(4, k, figsize=(1.6 * k, 7.0), squeeze=False)
    rows = ("clean", "attacked", "reversal", "defended")
    for i, key in enumerate(rows):
        for j in range(k):
            ax = axes[i][j]
            image = pictures[key][j, 0]
            if key == "reversal":
                bound = float(image.abs().max()) or 1.0
                ax.imshow(image, cmap="seismic", vmin=-bound, vmax=bound)
                ax.set_title(f"‖r‖={float(image.norm()):.2f}", fontsize=7)
            else:
                ax.imshow(image.clamp(0, 1), cmap="gray", vmin=0, vmax=1)
                if key == "clean":
                    ax.set_title(CLASSES[int(pictures["labels"][j])], fontsize=7)
                elif key == "attacked":
                    ax.set_title(f"→ {CLASSES[int(pictures['pred_attacked'][j])]}", fontsize=7)
                else:
                    ax.set_title(f"→ {CLASSES[int(pictures['pred_defended'][j])]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(key, fontsize=8)
    save_figure(fig, path, bbox_inches="tight")
