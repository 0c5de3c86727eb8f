"""Skeleton drawings for the pose report: optimization snapshots (Fig. 5) and completions (Fig. 6)."""

from __future__ import annotations

from pathlib import Path

import torch

from landform.report import save_figure
from landform.tasks.pose.kinematics import BONES, KEYPOINTS, PinholeCamera

VIEW = PinholeCamera(distance=4.0, yaw=55.0, pitch=10.0, focal=2.0)  # three-quarter view


def _project(points: torch.Tensor) -> torch.Tensor:
    """Keypoints [17, 3] (plus the root at the origin) -> image points [18, 2] for drawing, y up."""
    with_root = torch.cat([torch.zeros(1, 3, dtype=points.dtype), points.cpu()], dim=0)
    return VIEW(with_root[None].float())[0]


def _draw(axis, points: torch.Tensor, color: str, *, width: float = 2.0, alpha: float = 1.0,
          observed: torch.Tensor | None = None) -> None:
    image = _project(points)
    names = ("root", *KEYPOINTS)
    for a, b in BONES:
        i, j = names.index(a), names.index(b)
        axis.plot([image[i, 0], image[j, 0]], [image[i, 1], image[j, 1]], color=color, linewidth=width, alpha=alpha,
                  solid_capstyle="round")
    if observed is not None:
        shown = image[1:][observed.cpu()]
        axis.scatter(shown[:, 0], shown[:, 1], s=14, color="black", zorder=5)


def _finish(axis, title: str) -> None:
    axis.set_title(title, fontsize=8)
    axis.set_xlim(-0.45, 0.45)
    axis.set_ylim(-0.5, 0.45)
    axis.set_aspect("equal")
    axis.axis("off")


def plot_snapshots(path: Path, rows: dict[str, list[tuple[int, torch.Tensor]]], target: torch.Tensor,
                   title: str) -> Path:
    """One row per method: the skeleton at each (step, keypoints [17, 3]), over the target in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(v) for v in rows.values()) + 1
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.9 * len(rows)), squeeze=False)
    colors = {"baseline": "tab:red", "ours": "tab:blue"}
    for r, (method, snapshots) in enumerate(rows.items()):
        for c, (step, points) in enumerate(snapshots):
            _draw(axes[r, c], target, "0.75", width=4.0)
            _draw(axes[r, c], points, colors.get(method, f"C{r}"))
            _finish(axes[r, c], f"{method}, step {step}")
        _draw(axes[r, -1], target, "black")
        _finish(axes[r, -1], "target")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_completions(path: Path, rows: dict[str, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]],
                     title: str) -> Path:
    """Per row: the target with its observed keypoints, then completions from several random z0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 + max(len(v[2]) for v in rows.values())
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.9 * len(rows)), squeeze=False)
    for r, (name, (target, observed, completions)) in enumerate(rows.items()):
        _draw(axes[r, 0], target, "black", observed=observed)
        _finish(axes[r, 0], f"target, {name} observed")
        for c, points in enumerate(completions, start=1):
            _draw(axes[r, c], target, "0.8", width=4.0)
            _draw(axes[r, c], points, f"C{c}", observed=observed)
            _finish(axes[r, c], f"random z0 #{c}")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)
