"""Figures 3 and 8 of the paper on landform's image task."""

from __future__ import annotations

from pathlib import Path

import torch

from landform.compare import SWEEP_LRS, compare
from landform.paper.registry import Budget, register
from landform.paper.tables import _finish, _image_sets
from landform.report import markdown_table, plot_curves, save_figure
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.task import LR_Z, ImageModels, load_models


@register("fig3")
def fig3(budget: Budget, out: Path) -> dict:
    """Fig. 3a: mean loss against step for the baseline, encoder-initialized descent, the encoder's flat line
    and ours (default mode and the paper's Eq. 3), in and out of distribution."""
    models = load_models(budget.device)
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if budget.quick else 8, budget.seed)
    methods = models.methods(lrs=(0.5, 0.1) if budget.quick else SWEEP_LRS)
    panels, hlines, summary = {}, {}, {}
    for split, images in _image_sets(budget).items():
        result = compare(models.problem(), images, methods, y_val=val, steps=budget.steps, seed=budget.seed,
                         device=budget.device, bootstrap=0 if budget.quick else 1000)
        methods, val = result.tuned(), None  # swept once, on validation images, for both splits
        with torch.no_grad():
            encoder = float(models.loss(models.generator(models.encoder(images)), images).mean())
        title = "in distribution (Fashion-MNIST)" if split == "in_distribution" else "out of distribution (MNIST)"
        panels[title] = {name: r.losses for name, r in result.results.items()}
        hlines[title] = {"encoder (one pass)": encoder}
        summary[split] = {**result.summary, "encoder": encoder}
    plot_curves(out / "fig3.png", panels, hlines=hlines, ylabel="mean loss (Eq. 5)")
    rows = [[split, *[block[m][-1] for m in ("baseline", "encoder_init", "landscape", "landscape_pure")],
             block["encoder"], f"{block['speedup_at_20']:.1f}x"] for split, block in summary.items()]
    markdown = markdown_table(["split", "baseline", "encoder_init", "ours (default)", "ours (Eq. 3)", "encoder",
                                "speedup at 20 (default)"], rows)
    markdown += (f"\n\nLoss at step {budget.steps}, {budget.images} images per split. The paper (Fig. 3a, CelebA-HQ "
                 "/ LSUN-cat): ours at 2 steps matches the baseline at 20 (10x), +15% / +10% after convergence; "
                 "ours beats the encoder at step 11 (in distribution) and 3 (OOD). Figure: fig3.png.")
    return _finish(out, "fig3", {"title": "Figure 3a: optimization performance", "blocks": summary}, markdown)


def _trajectory(models: ImageModels, images: torch.Tensor, space: str, steps: int, lr: float) -> torch.Tensor:
    """The optimized variable at every step, [steps + 1, B, d]: w for X (from the mean w), z for Z (from 0)."""
    from landform.inference import invert

    if space == "X":
        result = invert(models.generator, models.loss, images, init=models.mean_start(images), lr=lr, steps=steps,
                        snapshots=tuple(range(steps + 1)))
        return torch.stack([result.snapshots[t] for t in range(steps + 1)])
    points = [torch.zeros(images.shape[0], models.mapping.z_dim)]
    for t in range(1, steps + 1):  # z_t itself: rerun t steps (cheap at this size) to read z, not Θ(z)
        points.append(invert(models.generator, models.loss, images, mapping=models.mapping, lr=LR_Z, steps=t).z)
    return torch.stack(points)


def _surface(models: ImageModels, image: torch.Tensor, space: str, center: torch.Tensor, directions: torch.Tensor,
             extent: float, size: int) -> torch.Tensor:
    """The loss on a size x size grid center + a d1 + b d2, a and b in [-extent, extent]."""
    axis = torch.linspace(-extent, extent, size)
    a, b = torch.meshgrid(axis, axis, indexing="xy")
    points = center + a.reshape(-1, 1) * directions[0] + b.reshape(-1, 1) * directions[1]
    with torch.no_grad():
        x = points if space == "X" else models.mapping(points)
        values = models.loss(models.generator(x), image.expand(points.shape[0], -1, -1, -1))
    return values.reshape(size, size)


@register("fig8")
def fig8(budget: Budget, out: Path) -> dict:
    """Fig. 8: the loss on the plane of the two principal directions of 20-step optimization trajectories, in X
    (w) and in Z, centred at the last step, with each example's trajectory drawn on it; two Fashion-MNIST and
    two MNIST images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = load_models(budget.device)
    steps, size = (3, 9) if budget.quick else (20, 41)
    sets = _image_sets(budget)
    examples = torch.cat([sets["in_distribution"][:2], sets["ood"][:2]])
    labels = ["Fashion-MNIST #0", "Fashion-MNIST #1", "MNIST #0 (OOD)", "MNIST #1 (OOD)"]
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if budget.quick else 16, budget.seed)
    figure, axes = plt.subplots(2, 4, figsize=(16, 7.6))
    record = {}
    for row, space in enumerate(("Z", "X")):
        lr = 0.5 if space == "X" else LR_Z
        ends = _trajectory(models, val, space, steps, lr)[-1]  # the recovered latents of validation images
        centered = ends - ends.mean(0)
        directions = torch.linalg.svd(centered, full_matrices=False).Vh[:2]
        paths = _trajectory(models, examples, space, steps, lr)
        for column in range(4):
            path = paths[:, column]
            center = path[-1]
            coords = (path - center) @ directions.T
            extent = float(coords.abs().max()) * 1.3 + 1e-3
            surface = _surface(models, examples[column:column + 1], space, center, directions, extent, size)
            axis = axes[row, column]
            grid = torch.linspace(-extent, extent, size)
            contour = axis.contourf(grid, grid, surface.log10().numpy(), levels=20, cmap="viridis")
            figure.colorbar(contour, ax=axis, label="log10 loss")
            axis.plot(coords[:, 0], coords[:, 1], "-o", color="white", markersize=2.5, linewidth=1.2,
                      label=f"{steps}-step trajectory")
            axis.plot(coords[0, 0], coords[0, 1], "s", color="red", label="start")
            axis.plot(0, 0, "*", color="orange", markersize=11, label=f"step {steps}")
            axis.set_title(f"{labels[column]}, space {space}")
            axis.set_xlabel("principal direction 1")
            axis.set_ylabel("principal direction 2")
            if column == 0:
                axis.legend(loc="lower left", fontsize=7)
            record[f"{space} {labels[column]}"] = {"final_loss": float(surface[size // 2, size // 2]),
                                                   "grid_min": float(surface.min()), "grid_max": float(surface.max())}
    figure.suptitle("Loss landscape on the plane of the trajectories' two principal directions (top: Z, bottom: X)")
    figure.tight_layout()
    save_figure(figure, out / "fig8.png")
    rows = [[key, v["final_loss"], v["grid_min"], v["grid_max"]] for key, v in record.items()]
    markdown = markdown_table(["space, example", f"loss at step {steps}", "grid min", "grid max"], rows)
    markdown += "\n\nFigure: fig8.png (the paper's Fig. 8 shows the same construction on StyleGAN/CelebA-HQ)."
    return _finish(out, "fig8", {"title": "Figure 8: loss landscapes in X and Z", "examples": record,
                                 "steps": steps, "grid": size}, markdown)
