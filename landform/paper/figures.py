"""Figures 3 and 8 of the paper on landform's image task."""

from __future__ import annotations

from pathlib import Path

import torch

from landform.comparison import SWEEP_LRS, Method, compare, summarize_methods
from landform.errors import LandformError
from landform.metrics import bootstrap_ci, improvement_at
from landform.paper.curves import cached_losses, weights_digest
from landform.paper.registry import ReproductionScale, register
from landform.paper.tables import finish_table, image_sets, paper_models, runs_root
from landform.report import format_interval, markdown_table, plot_curves, save_figure
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.task import LR_Z, ImageModels, load_models
from landform.tasks.images.train import PAPER_FIT, PAPER_NAME, paper_theta, theta_label

FIG3_STEPS = (20, 200, 2000)
LONG_BASELINE = "baseline_long"  # the baseline with its step size swept at long_steps (``_long_baseline``)


def _losses(models: ImageModels, method: Method, split: str, images: torch.Tensor, steps: int, scale: ReproductionScale,
            reference_lr: float | None = None) -> torch.Tensor:
    """``method``'s [steps + 1, n] loss table on the split's images, kept in RUNS/paper/curves (fig3 and scaling
    share the tables they both need: the baseline's, pure Eq. 3's with the paper-budget Θ)."""
    lr_x = reference_lr if method.lr_x == "baseline" else method.lr_x
    key = {"images": scale.images, "seed": scale.seed, "device": scale.device, "method": method.name,
           "theta": weights_digest(method.mapping) if method.mapping is not None else "none", "split": split,
           "lr": method.lr, "lr_x": lr_x, "mode": method.mode, "warmup": method.warmup}
    return cached_losses(key, steps, lambda n: method.run(models.problem(), images, method.lr, steps=n,
                                                          seed=scale.seed, device=scale.device,
                                                          reference_lr=reference_lr).losses,
                         folder=runs_root() / "curves")


def _long_baseline(models: ImageModels, sets: dict[str, torch.Tensor], scale: ReproductionScale
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    """The baseline with its step size swept at ``scale.long_steps`` (lowest last loss on the validation images,
    as every sweep judges) and its loss tables on ``sets``. The step size swept at 200 steps is too large for
    2000 (at lr 0.5 the baseline climbs again after step 200), so a comparison at 2000 gets its own sweep."""
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if scale.quick else 8, scale.seed)
    finals = {}
    for lr in (0.5, 0.1) if scale.quick else SWEEP_LRS:
        curve = _losses(models, Method("baseline", init=models.mean_start, lr=lr), "val", val, scale.long_steps,
                        scale).mean(1)
        finals[lr] = float(torch.nan_to_num(curve, nan=float("inf"))[-1])
    lr = min(finals, key=finals.get)
    method = Method("baseline", init=models.mean_start, lr=lr)
    return lr, {split: _losses(models, method, split, y, scale.long_steps, scale) for split, y in sets.items()}


def _gain(base: torch.Tensor, ours: torch.Tensor, k: int, scale: ReproductionScale) -> dict:
    """Improvement of ``ours`` over ``base`` at step ``k``, with its 95% bootstrap interval over images."""
    return {"improvement": improvement_at(base, ours, k),
            "ci95": None if scale.quick else bootstrap_ci(lambda b, o: improvement_at(b, o, k), base, ours,
                                                           seed=scale.seed)}


@register("fig3", figures=("fig3.png",))
def fig3(scale: ReproductionScale, out: Path) -> dict:
    """Fig. 3a: mean loss against step, to convergence (``scale.long_steps``: 2000, as in the paper), for the
    baseline, encoder-initialized descent, the encoder's flat line and ours (default mode, and the paper's Eq. 3
    with the paper-budget Θ), in and out of distribution. Step sizes are swept on validation images at
    ``scale.steps`` (200), as in every report, and the baseline's again at 2000 for the comparison there
    (``_long_baseline``); the curves are kept (``_losses``), so a rerun only adds what changed."""
    models, theta = paper_models(scale)
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if scale.quick else 8, scale.seed)
    swept = compare(models.problem(), val, models.methods(lrs=(0.5, 0.1) if scale.quick else SWEEP_LRS), y_val=val,
                    steps=scale.steps, seed=scale.seed, device=scale.device, bootstrap=0)
    methods, reference_lr = swept.tuned(), swept.lrs["baseline"]
    steps = scale.long_steps
    shown = sorted({min(k, steps) for k in FIG3_STEPS})
    sets = image_sets(scale)
    long_lr, long_baseline = _long_baseline(models, sets, scale)
    panels, hlines, summary = {}, {}, {}
    for split, images in sets.items():
        tables = {m.name: _losses(models, m, split, images, steps, scale, reference_lr) for m in methods}
        block = summarize_methods(tables, steps=shown, bootstrap=0 if scale.quick else 1000, seed=scale.seed,
                                  extra={"lr": swept.lrs, "lr_sweep": swept.summary["lr_sweep"]})
        tables[LONG_BASELINE] = long_baseline[split]
        with torch.no_grad():
            encoder = float(models.loss(models.generator(models.encoder(images)), images).mean())
        title = "in distribution (Fashion-MNIST)" if split == "in_distribution" else "out of distribution (MNIST)"
        panels[title] = tables
        hlines[title] = {"encoder (one pass)": encoder}
        pure = tables["landscape_pure"]
        summary[split] = {**block, "encoder": encoder, "long_baseline_lr": long_lr,
                          "pure_improvement": {str(k): _gain(tables["baseline"], pure, k, scale) for k in shown},
                          "pure_improvement_vs_long_baseline": {
                              str(steps): _gain(tables[LONG_BASELINE], pure, steps, scale)},
                          "loss_at": {name: {str(k): float(table.mean(1)[k]) for k in shown}
                                      for name, table in tables.items()}}
    plot_curves(out / "fig3.png", panels, hlines=hlines, ylabel="mean loss (Eq. 5)")
    names = ("baseline", LONG_BASELINE, "encoder_init", "landscape", "landscape_pure")

    def percent(gain: dict | None) -> str:
        return "" if gain is None else f"{100 * gain['improvement']:.1f}%{format_interval(gain['ci95'], percent=True)}"

    rows = []
    for split, block in summary.items():
        for k in shown:
            rows.append([split, k, *[block["loss_at"][m][str(k)] for m in names], block["encoder"],
                         percent(block["pure_improvement"][str(k)]),
                         percent(block["pure_improvement_vs_long_baseline"].get(str(k)))])
    markdown = markdown_table(["split", "step", "baseline", f"baseline, lr swept at {steps}", "encoder_init",
                               "ours (default)", "ours (Eq. 3)", "encoder", "Eq. 3 vs baseline",
                               f"Eq. 3 vs baseline swept at {steps}"], rows)
    markdown += (f"\n\nMean loss at steps {', '.join(map(str, shown))}, {scale.images} images per split; "
                 "improvement of pure Eq. 3 over the baseline [95% bootstrap interval over images]. Step sizes "
                 f"are swept at {scale.steps} steps (baseline lr {reference_lr}); the baseline's is swept again at "
                 f"{steps} steps (lr {long_lr}), for the comparison at {steps}. Eq. 3 runs "
                 f"{theta_label(theta)}. The paper (Fig. 3a, CelebA-HQ / LSUN-cat): ours at 2 steps matches the "
                 "baseline at 20 (10x), +15% / +10% after convergence (2000 steps); ours beats the encoder at step 11 "
                 "(in distribution) and 3 (OOD). Figure: fig3.png.")
    return finish_table(out, "fig3", {"title": "Figure 3a: optimization performance", "blocks": summary, "theta": theta,
                                 "steps": steps}, markdown)


def snapshot_dir() -> Path:
    """Where the paper-budget fit keeps a snapshot of Θ per saved round (RUNS/images-landscape/snapshots)."""
    from landform.tasks import runs_dir

    return runs_dir() / PAPER_NAME / "snapshots"


def _snapshots(scale: ReproductionScale) -> list[tuple[int, Path | None]]:
    """(trajectory steps fitted, Θ's weights) along the paper-budget fit: the untrained Θ (None), the trainer's
    snapshots (RUNS/images-landscape/snapshots), the Θ the paper suite runs (``paper_theta``: the shipped
    entry, or the fit's latest checkpoint where it went further)."""
    per_round = PAPER_FIT["trajectories"] * PAPER_FIT["steps"]
    points: dict[int, Path | None] = {0: None}
    for path in sorted(snapshot_dir().glob("round-*.safetensors")):
        points[int(path.stem.split("-")[1]) * per_round] = path
    _, info = paper_theta(scale.device)
    if info.get("trajectories") == PAPER_FIT["trajectories"] and info.get("lr") == PAPER_FIT["lr"]:
        points.setdefault(info["trajectory_steps"], Path(info["path"]))
    return sorted(points.items())


@register("scaling", figures=("scaling.png",))
def scaling(scale: ReproductionScale, out: Path) -> dict:
    """Pure Eq. 3's loss at 20 and 200 steps (``scale.steps``) against the trajectory steps Θ was fitted for,
    along the paper-budget fit (0 to 2.56M), and at 2000 (``scale.long_steps``) for Θ at the full budget, in and out of
    distribution, with 95% bootstrap intervals over images; the baseline's losses as flat lines. Every loss table
    is kept (``landform.paper.curves``): a rerun, or one after the fit went on, computes only what is new."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landform.mapping import Mapping
    from landform.paper.tables import swept_baseline_lr

    points = _snapshots(scale)
    if not scale.quick and len(points) < 3:  # only the untrained Θ and the shipped one: no curve to draw
        raise LandformError(f"the paper-budget fit's snapshots are not in {snapshot_dir()}: refit them (`landform "
                            f"zoo train {PAPER_NAME}`, about 200 minutes on 2 threads), or run --quick")
    models = load_models(scale.device)
    shown = sorted({min(k, scale.long_steps) for k in FIG3_STEPS})
    sets = image_sets(scale)
    lr = swept_baseline_lr(models, scale)
    baseline_method = Method("baseline", init=models.mean_start, lr=lr)
    baseline = {split: _losses(models, baseline_method, split, y, scale.long_steps, scale)
                for split, y in sets.items()}
    if scale.quick:
        points = points[:1] + points[-1:] if len(points) > 1 else points
    full_budget = PAPER_FIT["rounds"] * PAPER_FIT["trajectories"] * PAPER_FIT["steps"]
    torch.manual_seed(scale.seed)
    untrained = Mapping(256, (models.mapping.x_dim,), hidden=1024)  # the trainer's initialization

    def interval(table: torch.Tensor, k: int) -> list:
        return bootstrap_ci(lambda curve: float(curve[k]), table, resamples=200 if scale.quick else 1000,
                            seed=scale.seed)

    def cells(block: dict) -> list[str]:
        return [f"{block[str(k)]['mean']:.4f}{format_interval(block[str(k)]['ci95'])}" if str(k) in block else "—"
                for k in shown]

    long_lr, long_baseline = _long_baseline(models, sets, scale)
    rows, record = [], {"points": [], "baseline": {}, "long_baseline": {}, "long_baseline_lr": long_lr}
    for split, table in baseline.items():
        record["baseline"][split] = {str(k): {"mean": float(table.mean(1)[k]), "ci95": interval(table, k)}
                                     for k in shown}
        last = scale.long_steps
        record["long_baseline"][split] = {str(last): {"mean": float(long_baseline[split].mean(1)[last]),
                                                      "ci95": interval(long_baseline[split], last)}}
    for index, (fitted, path) in enumerate(points):
        theta = untrained if path is None else Mapping.load(path, map_location=scale.device)
        method = Method("landscape_pure", mapping=theta, mode="pure", lr=LR_Z)
        full = index == len(points) - 1 if scale.quick else fitted >= full_budget
        steps = scale.long_steps if full else scale.steps
        entry = {"trajectory_steps": fitted, "path": None if path is None else str(path), "steps": steps}
        for split, y in sets.items():
            curve = _losses(models, method, split, y, steps, scale)
            entry[split] = {str(k): {"mean": float(curve.mean(1)[k]), "ci95": interval(curve, k)}
                            for k in shown if k <= steps}
            rows.append([f"{fitted:,}", split, *cells(entry[split])])
        record["points"].append(entry)
    for split in sets:
        rows.append(["baseline", split, *cells(record["baseline"][split])])
    for split in sets:
        rows.append([f"baseline, lr {long_lr} (swept at {scale.long_steps})", split,
                     *cells(record["long_baseline"][split])])
    figure, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2), squeeze=False)
    for axis, split in zip(axes[0], sets, strict=True):
        for k, color in zip(shown, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            kept = [p for p in record["points"] if str(k) in p[split]]
            x = [max(p["trajectory_steps"], 1) for p in kept]
            means = [p[split][str(k)]["mean"] for p in kept]
            lows = [p[split][str(k)]["ci95"][0] or m for p, m in zip(kept, means, strict=True)]
            highs = [p[split][str(k)]["ci95"][1] or m for p, m in zip(kept, means, strict=True)]
            axis.plot(x, means, "-o", color=color, label=f"Eq. 3, step {k}")
            axis.fill_between(x, lows, highs, color=color, alpha=0.2)
            base = record["long_baseline" if k == scale.long_steps else "baseline"][split][str(k)]["mean"]
            axis.axhline(base, color=color, linestyle="--", linewidth=1, label=f"baseline, step {k}")
        axis.set_xscale("symlog", linthresh=5000)
        axis.set_xlim(left=0)
        axis.set_xlabel("trajectory steps fitted (0 = untrained Θ)")
        axis.set_ylabel("mean loss (Eq. 5)")
        axis.set_title("in distribution (Fashion-MNIST)" if split == "in_distribution" else "OOD (MNIST)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"Pure Eq. 3 against Θ's fitting budget ({PAPER_NAME}; §7.1: 2.56M); 95% bootstrap intervals")
    figure.tight_layout()
    save_figure(figure, out / "scaling.png")
    markdown = markdown_table(["trajectory steps fitted", "split", *[f"loss at {k}" for k in shown]], rows)
    markdown += (f"\n\nPure Eq. 3 with Θ from the paper-budget fit ({PAPER_NAME}: N = {PAPER_FIT['trajectories']}, "
                 f"T = {PAPER_FIT['steps']}, lr {PAPER_FIT['lr']}) at each saved round, {scale.images} images per "
                 f"split, [95% bootstrap interval over images]; baseline lr {lr} (swept at {scale.steps} steps), and "
                 f"lr {long_lr} swept at {scale.long_steps} for the comparison there (the figure's line at step "
                 f"{scale.long_steps}). Every saved Θ runs {scale.steps} steps, the one at the paper's full budget "
                 f"{scale.long_steps} (—: not run that long). Figure: scaling.png.")
    return finish_table(out, "scaling", {"title": "Scaling: pure Eq. 3 against Θ's fitting budget", **record,
                                    "baseline_lr": lr, "steps": scale.steps, "long_steps": scale.long_steps},
                   markdown)


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


@register("fig8", figures=("fig8.png",))
def fig8(scale: ReproductionScale, out: Path) -> dict:
    """Fig. 8: the loss on the plane of the two principal directions of 20-step optimization trajectories, in X
    (w) and in Z, centred at the last step, with each example's trajectory drawn on it; two Fashion-MNIST and
    two MNIST images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = load_models(scale.device)
    steps, size = (3, 9) if scale.quick else (20, 41)
    sets = image_sets(scale)
    examples = torch.cat([sets["in_distribution"][:2], sets["ood"][:2]])
    labels = ["Fashion-MNIST #0", "Fashion-MNIST #1", "MNIST #0 (OOD)", "MNIST #1 (OOD)"]
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if scale.quick else 16, scale.seed)
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
    return finish_table(out, "fig8", {"title": "Figure 8: loss landscapes in X and Z", "examples": record,
                                 "steps": steps, "grid": size}, markdown)
