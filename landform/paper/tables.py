"""Tables 2-6 of the paper on landform's image task (and the synthetic problem), with the paper's numbers.

The paper inverts StyleGAN on CelebA-HQ (X = 512); ours inverts a small generator trained on
Fashion-MNIST (X = 64), with MNIST as the out-of-distribution set. Absolute losses are not comparable,
the direction and size of each effect are.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from landform.compare import SWEEP_LRS, Method, compare
from landform.fitting import fit
from landform.mapping import Mapping
from landform.paper import Budget, register
from landform.report import format_interval, write_json, write_text
from landform.synthetic import synthetic_problem
from landform.tasks.images.data import (
    HELD_OUT_PHOTOS,
    faces,
    load_fashion_mnist,
    load_mnist,
    photo_crops,
    seeded_subset,
    white_noise,
    with_noise,
)
from landform.tasks.images.generator import W_DIM
from landform.tasks.images.task import LR_Z, NOISE_SIGMAS, SPECTRUM_METHODS, ImageModels, load_models, spectrum

PAPER = {
    "table2": {"in_distribution": {20: [3.082, 3.583, 4.417, 4.456], 200: [1.964, 3.034, 2.723, 2.569]},
               "ood": {20: [4.932, 5.127, 5.135, 5.292], 200: [3.498, 4.756, 3.823, 4.617]}},
    "table3": {"z": [16, 32, 64, 128, 256, 512, 2048], "x": 512,
               "in_distribution": [3.157, 2.797, 2.489, 2.489, 2.212, 1.964, 1.920], "baseline_in": 2.569,
               "ood": [4.872, 4.592, 4.277, 3.916, 3.618, 3.498, 3.392], "baseline_ood": 4.617},
    "table4": {"sigma": [0.0, 0.1, 0.2, 0.3, 0.4], "improvement": [29.53, 18.95, 12.57, 6.30, 6.72]},
    "table5": {"sets": ["CelebA-HQ", "AFHQ-Cat", "LSUN-Cat", "Container-Ship", "N(0.5, 0.5^2)"],
               "improvement": [29.53, 35.99, 24.36, 16.87, 6.60]},
    "table6": {"CelebA-HQ": [2.569, 2.396, 6.72], "LSUN-Cat": [4.617, 3.717, 19.49]},
}
ABLATIONS = {"buffer": "full model", "online": "without AO and buffer", "random": "random Θ"}


def runs_root() -> Path:
    """Where the suite's fits keep their resumable checkpoints: RUNS/paper, RUNS being the runs folder of every
    command (``landform.tasks.runs_dir``: $LANDFORM_RUNS, else a per-user cache; `reproduce --runs-dir`)."""
    from landform.tasks import runs_dir

    return runs_dir() / "paper"


def _finish(out: Path, name: str, summary: dict, markdown: str) -> dict:
    """Write summary.json and summary.md, print the table, return the summary."""
    command = f"landform reproduce {name}"
    summary["command"] = command
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", f"# {summary['title']}\n\nWritten by `{command}`.\n\n{markdown}\n")
    print(f"{summary['title']}\n{markdown}\n(wrote {out})")
    return summary


def _markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _image_sets(budget: Budget) -> dict[str, torch.Tensor]:
    return {"in_distribution": seeded_subset(load_fashion_mnist("test")[0], budget.images, budget.seed),
            "ood": seeded_subset(load_mnist(), budget.images, budget.seed)}


def _baseline_lr(models: ImageModels, budget: Budget) -> float:
    """The baseline's step size, swept on validation images as in every report."""
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if budget.quick else 8, budget.seed)
    lrs = (0.5, 0.1) if budget.quick else SWEEP_LRS
    result = compare(models.problem(), val, [Method("baseline", init=models.mean_start, lr=lrs)], y_val=val,
                     steps=budget.steps, seed=budget.seed, device=budget.device, bootstrap=0)
    return result.lrs["baseline"]


def _curves(models: ImageModels, mapping: Mapping | None, images: torch.Tensor, budget: Budget,
            baseline_lr: float) -> dict[str, torch.Tensor]:
    """Per-image loss tables of the baseline and of pure Eq. 3 with ``mapping`` (the paper's protocol)."""
    methods = [Method("baseline", init=models.mean_start, lr=baseline_lr)]
    if mapping is not None:
        methods.append(Method("landscape", mapping=mapping, mode="pure", lr=LR_Z))
    result = compare(models.problem(), images, methods, steps=budget.steps, seed=budget.seed, device=budget.device,
                     bootstrap=0)
    return {name: r.losses for name, r in result.results.items()}


def fit_image_theta(models: ImageModels, observations, budget: Budget, run_name: str, *, z_dim: int = 256,
                    method: str = "buffer", seed: int | None = None) -> tuple[Mapping, float]:
    """Fit a pure Θ (x = Θ(z)) for the shipped generator with Algorithm 1 (or an ablation); returns it and
    the fit's wall time. Checkpoints in ``runs_root()`` make it resumable."""
    seed = budget.seed if seed is None else seed
    torch.manual_seed(seed)
    mapping = Mapping(z_dim, (W_DIM,), hidden=64 if budget.quick else 1024)
    run_dir = None if budget.quick else runs_root() / run_name  # --quick: nothing to resume
    result = fit(mapping, models.generator, models.loss, observations, rounds=budget.fit_rounds,
                 trajectories=budget.fit_trajectories, steps=budget.fit_steps, lr_z=LR_Z, lr=1e-3,
                 batch_size=budget.fit_trajectories, method=method, checkpoint_dir=run_dir, resume=True, seed=seed,
                 device=budget.device, progress=budget.progress)
    return mapping, sum(h.get("seconds", 0.0) for h in result.history)


def _fashion_sampler():
    train = load_fashion_mnist("train")[0]

    def draw(n: int, rng: torch.Generator) -> torch.Tensor:
        return train[torch.randint(train.shape[0], (n,), generator=rng)]
    return draw


def _at(table: torch.Tensor, step: int) -> float:
    return float(table.mean(1)[min(step, table.shape[0] - 1)])


@register("table2")
def table2(budget: Budget, out: Path) -> dict:
    """Ablation: full Algorithm 1, without alternation and buffer (online), random Θ, baseline; on the image
    task (one seed: each image fit takes minutes) and the synthetic problem (three seeds, mean ± std)."""
    models = load_models(budget.device)
    lr = _baseline_lr(models, budget)
    sets = _image_sets(budget)
    images: dict = {}
    for method in ABLATIONS:
        mapping, seconds = fit_image_theta(models, _fashion_sampler(), budget, f"table2-{method}", method=method)
        images[method] = {"fit_seconds": seconds}
        for split, y in sets.items():
            curves = _curves(models, mapping, y, budget, lr)
            images[method][split] = {str(s): _at(curves["landscape"], s) for s in (20, 200)}
            images.setdefault("baseline", {})[split] = {str(s): _at(curves["baseline"], s) for s in (20, 200)}
    synthetic = _synthetic_ablation(budget)
    rows = []
    for split in ("in_distribution", "ood"):
        for step in ("20", "200"):
            ours = [images[m][split][step] for m in (*ABLATIONS, "baseline")]
            paper = PAPER["table2"][split][int(step)]
            rows.append([split, step, *ours, " / ".join(f"{v}" for v in paper)])
    for step in ("20", "200"):
        values = [f"{synthetic[m][step]['mean']:.4f} ± {synthetic[m][step]['std']:.4f}"
                  for m in (*ABLATIONS, "baseline")]
        rows.append(["synthetic", step, *values, ""])
    markdown = _markdown_table(["data", "steps", "full", "without AO + buffer", "random Θ", "baseline",
                                "paper (full / no AO / random / baseline)"], rows)
    markdown += (f"\n\nImage task: {budget.images} images per split, one fit per ablation ({budget.fit_rounds} rounds "
                 f"x {budget.fit_trajectories} trajectories x {budget.fit_steps} steps; one seed, since each fit "
                 f"takes minutes on 2 CPU cores), pure Eq. 3, baseline lr {lr} (swept). Synthetic: "
                 f"{len(budget.seeds)} seeds, mean ± std over seeds.")
    return _finish(out, "table2", {"title": "Table 2: ablation of Algorithm 1", "images": images,
                                   "synthetic": synthetic, "baseline_lr": lr, "paper": PAPER["table2"]}, markdown)


def _synthetic_ablation(budget: Budget) -> dict:
    problem = synthetic_problem()
    count = 16 if budget.quick else 256
    y = problem.test_observations(count, torch.Generator().manual_seed(budget.seed))
    y_val = problem.train_observations(count, torch.Generator().manual_seed(budget.seed + 1))
    per_seed: dict[str, dict[str, list[float]]] = {}
    for seed in budget.seeds:
        for method in ABLATIONS:
            torch.manual_seed(seed)
            mapping = Mapping(16, (16,), hidden=256)
            fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=2 if budget.quick else 60,
                trajectories=32 if budget.quick else 256, steps=20, lr=1e-3, method=method, seed=seed,
                device=budget.device, progress=False)
            result = compare(problem, y, [Method("baseline", lr=SWEEP_LRS),
                                          Method("landscape", mapping=mapping, mode="pure", lr=0.1)],
                             y_val=y_val, steps=budget.steps, seed=seed, bootstrap=0)
            for name, key in (("landscape", method), ("baseline", "baseline")):
                for step in (20, 200):
                    per_seed.setdefault(key, {}).setdefault(str(step), []).append(
                        _at(result.results[name].losses, step))
    return {key: {step: {"mean": sum(v) / len(v), "std": float(torch.tensor(v).std()) if len(v) > 1 else 0.0,
                         "values": v} for step, v in steps.items()} for key, steps in per_seed.items()}


@register("table3")
def table3(budget: Budget, out: Path) -> dict:
    """The dimension of Z: Θ fitted with Z from a quarter of X to 16x X, loss at the last step."""
    models = load_models(budget.device)
    lr = _baseline_lr(models, budget)
    sets = _image_sets(budget)
    dims = (16, 64) if budget.quick else (16, 64, 256)
    results: dict = {}
    baseline = {}
    for z_dim in dims:
        mapping, seconds = fit_image_theta(models, _fashion_sampler(), budget, f"table3-z{z_dim}", z_dim=z_dim)
        results[str(z_dim)] = {"fit_seconds": seconds}
        for split, y in sets.items():
            curves = _curves(models, mapping, y, budget, lr)
            results[str(z_dim)][split] = {str(s): _at(curves["landscape"], s) for s in (20, budget.steps)}
            baseline[split] = {str(s): _at(curves["baseline"], s) for s in (20, budget.steps)}
    last = str(budget.steps)
    rows = [[split, *[results[str(d)][split][last] for d in dims], baseline[split][last]]
            for split in ("in_distribution", "ood")]
    markdown = _markdown_table(["data (loss at the last step)", *[f"Z = {d}" for d in dims], "baseline"], rows)
    paper = PAPER["table3"]
    markdown += ("\n\nOurs: X = 64. Paper (X = 512), Z = " + ", ".join(map(str, paper["z"])) + ": in distribution "
                 + ", ".join(map(str, paper["in_distribution"])) + f" (baseline {paper['baseline_in']}); OOD "
                 + ", ".join(map(str, paper["ood"])) + f" (baseline {paper['baseline_ood']}). One fit per Z "
                 f"({budget.fit_rounds} rounds x {budget.fit_trajectories} x {budget.fit_steps}), one seed.")
    return _finish(out, "table3", {"title": "Table 3: dimension of Z", "z_dims": list(dims), "results": results,
                                   "baseline": baseline, "baseline_lr": lr, "paper": paper}, markdown)


def _spectrum_table(budget: Budget, out: Path, name: str, title: str, sets: dict[str, torch.Tensor],
                    paper: list[float]) -> dict:
    """Tables 4 and 5 share the image task's ``spectrum`` (the same function the demo calls)."""
    models = load_models(budget.device)
    val = seeded_subset(load_fashion_mnist("val")[0], 4 if budget.quick else 8, budget.seed)
    methods = [m for m in models.methods(lrs=(0.5, 0.1) if budget.quick else SWEEP_LRS) if m.name in SPECTRUM_METHODS]
    sweep = compare(models.problem(), val, methods, y_val=val, steps=budget.steps, seed=budget.seed,
                    device=budget.device, bootstrap=0)
    block = spectrum(models, sweep.tuned(), count=budget.images, steps=budget.steps, seed=budget.seed,
                     device=budget.device, sets=sets, progress=budget.progress)
    lrs = sweep.lrs
    rows = []
    for (set_name, row), paper_value in zip(block["rows"].items(), paper, strict=True):
        ours = format_interval(row["improvement_at_200_ci95"], percent=True)
        pure = format_interval(row["pure_improvement_at_200_ci95"], percent=True)
        rows.append([set_name, f"{100 * row['improvement_at_200']:.1f}%{ours}",
                     f"{100 * (row['pure_improvement_at_200'] or 0):.1f}%{pure}",
                     f"{paper_value}%"])
    markdown = _markdown_table(["data", "ours, default mode", "ours, pure Eq. 3", "paper (pure)"], rows)
    markdown += (f"\n\nImprovement over the baseline at step {budget.steps} [95% bootstrap interval], "
                 f"{budget.images} images per set; the shipped models; baseline lr {lrs['baseline']} (swept).")
    return _finish(out, name, {"title": title, "spectrum": block, "paper": paper, "baseline_lr": lrs["baseline"]},
                   markdown)



@register("table4")
def table4(budget: Budget, out: Path) -> dict:
    """Fashion-MNIST test images with Gaussian noise of growing sigma."""
    fashion = seeded_subset(load_fashion_mnist("test")[0], budget.images, budget.seed + 1)
    sets = {f"sigma {sigma}": with_noise(fashion, sigma, budget.seed) for sigma in (0.0, *NOISE_SIGMAS)}
    return _spectrum_table(budget, out, "table4", "Table 4: synthetic spectrum (Gaussian noise)", sets,
                           PAPER["table4"]["improvement"])


@register("table5")
def table5(budget: Budget, out: Path) -> dict:
    """From the training distribution to pure noise: Fashion-MNIST, MNIST, held-out photographs, faces, noise."""
    count, seed = budget.images, budget.seed
    sets = {"Fashion-MNIST (in distribution)": seeded_subset(load_fashion_mnist("test")[0], count, seed + 1),
            "MNIST": seeded_subset(load_mnist(), count, seed + 1), "faces (LFW)": faces(count, seed),
            "photographs (held out)": photo_crops(HELD_OUT_PHOTOS, count, seed + 2),
            "white noise": white_noise(count, seed)}
    return _spectrum_table(budget, out, "table5", "Table 5: natural image spectrum", sets,
                           PAPER["table5"]["improvement"])


@register("table6")
def table6(budget: Budget, out: Path) -> dict:
    """Θ fitted on Gaussian-noise images only (N(0.5, 0.5^2), clipped), evaluated on Fashion-MNIST and MNIST."""
    models = load_models(budget.device)
    lr = _baseline_lr(models, budget)

    def noise(n: int, rng: torch.Generator) -> torch.Tensor:
        return (0.5 + 0.5 * torch.randn(n, 1, 28, 28, generator=rng)).clamp(0, 1)

    mapping, seconds = fit_image_theta(models, noise, budget, "table6-noise")
    rows, results = [], {}
    for (split, y), paper_key in zip(_image_sets(budget).items(), ("CelebA-HQ", "LSUN-Cat"), strict=True):
        curves = _curves(models, mapping, y, budget, lr)
        base, ours = _at(curves["baseline"], budget.steps), _at(curves["landscape"], budget.steps)
        improvement = 1 - ours / base if base else math.nan
        results[split] = {"baseline": base, "ours": ours, "improvement": improvement}
        paper = PAPER["table6"][paper_key]
        rows.append([split, base, ours, f"{100 * improvement:.1f}%",
                     f"{paper_key}: {paper[0]} / {paper[1]} / {paper[2]}%"])
    markdown = _markdown_table(["data", "baseline", "ours (Θ fitted on noise)", "improvement",
                                "paper (baseline / ours / improvement)"], rows)
    markdown += (f"\n\nLoss at step {budget.steps}, {budget.images} images per split, pure Eq. 3, one fit "
                 f"({budget.fit_rounds} rounds, {seconds / 60:.1f} min), baseline lr {lr} (swept).")
    return _finish(out, "table6", {"title": "Table 6: Θ fitted on Gaussian noise", "results": results,
                                   "fit_seconds": seconds, "baseline_lr": lr, "paper": PAPER["table6"]}, markdown)

