"""GAN inversion with a learned landscape (paper §4.1), on models we train on Fashion-MNIST.

F is the shipped generator (x = its intermediate latent w), L is Eq. 5 (perceptual + MSE). The baseline
optimizes w from the mean w with Adam at the learning rate the §7.2 sweep picks on validation images;
ours optimizes z from 0 with x = Θ(z), Adam lr 0.1. The encoder gives the flat line of Fig. 3a.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import torch

from landform import Mapping, invert, zoo
from landform.comparison import DEFAULT_MODE, DEFAULT_WARMUP, SWEEP_LRS, Comparison, Method, compare
from landform.errors import LandformError
from landform.io import atomic_outputs, read_json
from landform.landscape import InferenceSettings, Landscape
from landform.metrics import step_reached
from landform.problem import Problem
from landform.progress import progress_bar
from landform.report import (
    format_interval,
    markdown_table,
    plot_curves,
    summary_table,
    write_curves_csv,
    write_json,
    write_text,
)
from landform.start import StartEncoder
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
from landform.tasks.images.encoder import FITTED_ON, load_encoder
from landform.tasks.images.encoder import ZOO_NAME as ENCODER_NAME
from landform.tasks.images.figures import save_labeled_grid
from landform.tasks.images.generator import W_DIM, Generator, load_generator
from landform.tasks.images.perceptual import ImageLoss

LANDSCAPE_NAME = "images-landscape"
ANCHORED_NAME = "images-landscape-anchored"
STEPS_NAME = "images-steps"
ROUNDS_ANCHORED = 299  # the rounds of the shipped fit (382,720 trajectory steps)
PROCESS_STEPS = (0, 1, 2, 4, 8, 16, 200)
ENCODER_GRID_STEP = 5
LR_Z = 0.1  # Adam's step size on z: every image Θ is fitted with it (Algorithm 1), and Eq. 3 inverts with it
LR_X = (0.5, 0.3, 0.1)  # δ's step sizes, swept on validation images like the baselines' (largest first)
# The default landscape's tuned inference: Adam on z at LR_Z and on δ at 0.5, what the sweep over LR_X chose in
# report/images (`landform invert --task images` has no validation images to sweep on), δ warmed up over the 20
# steps Θ was fitted for.
SETTINGS = InferenceSettings(mode=DEFAULT_MODE, lr_z=LR_Z, lr_x=0.5, warmup=DEFAULT_WARMUP, steps=200)


@dataclass
class ImageModels:
    """Everything the image task runs on, loaded from the zoo: ``landscape`` is the default mode's (the encoder's
    learned start, the Θ anchored at it, ``SETTINGS``: x = E(y) + Θ(z) + δ), ``mapping`` the paper's Θ of
    Eq. 3 (x = Θ(z))."""

    generator: Generator
    loss: ImageLoss
    mapping: Mapping
    landscape: Landscape

    @property
    def encoder(self) -> StartEncoder:
        """The learned start E(y): the encoder's guess of w."""
        return cast(StartEncoder, self.landscape.start)

    @property
    def anchored(self) -> Mapping:
        """The default mode's Θ, anchored at the encoder's guess."""
        return self.landscape.mapping

    def problem(self) -> Problem:
        """The shipped models as a ``Problem`` whose base is the encoder's guess."""
        return Problem(forward=self.generator, loss=self.loss, x_shape=(W_DIM,), train_observations=_no_sampler,
                       test_observations=_no_sampler, base=self.encoder, name="images")

    def mean_start(self, y: torch.Tensor) -> torch.Tensor:
        """The generator's mean w for every observation: where GAN inversion usually starts."""
        return self.generator.w_mean.detach().cpu().expand(y.shape[0], -1).clone()

    def default_method(self, mode: str | None = None) -> Method:
        """The landscape's tuned inference (``Landscape.method``), in ``mode`` where given, with the mean w as a
        second candidate start, image by image (a photograph far from Fashion-MNIST can start better there)."""
        method = self.landscape.method("landscape")
        return replace(method, mode=mode or method.mode, starts=(self.mean_start,))

    def pure_method(self) -> Method:
        """The paper's Eq. 3: z from 0, x = Θ(z) with the pure Θ, Adam at ``LR_Z``."""
        return Method("landscape_pure", mapping=self.mapping, mode="pure", lr=LR_Z)

    def methods(self, mode: str = DEFAULT_MODE, *, lrs: tuple[float, ...] = SWEEP_LRS) -> list[Method]:
        """What every image report compares: descent on w from the mean w (``baseline``) and from the
        encoder's guess (``encoder_init``, the practitioners' pipeline), each with its own step-size sweep;
        the default landscape (``landscape``: ``default_method`` in ``mode``, δ's step size swept over
        ``LR_X``) and the paper's Eq. 3 (``landscape_pure``)."""
        return [Method("baseline", init=self.mean_start, lr=lrs), Method("encoder_init", use_base=True, lr=lrs),
                replace(self.default_method(mode), lr_x=LR_X), self.pure_method()]


def _no_sampler(n: int, rng: torch.Generator) -> torch.Tensor:
    raise LandformError("the shipped image models carry no observation sampler; use image_problem()")


def image_problem(device: str = "cpu", perceptual: bool = True, generator: Generator | None = None,
                  fast: bool = False) -> Problem:
    """The image task as a ``Problem``: invert the shipped generator on Fashion-MNIST images (the encoder's
    guess is its base, for x = E(y) + ... ). ``fast``: the models as fitting runs them (``fast_models``)."""
    generator = generator or load_generator(device=device)
    if fast:
        generator = fast_generator(generator)
    train, _ = load_fashion_mnist("train")
    test, _ = load_fashion_mnist("test")

    def sampler(images: torch.Tensor):
        def draw(n: int, rng: torch.Generator) -> torch.Tensor:
            return images[torch.randint(images.shape[0], (n,), generator=rng)]
        return draw

    return Problem(forward=generator, loss=ImageLoss(perceptual=perceptual, device=device, fast=fast), x_shape=(W_DIM,),
                   train_observations=sampler(train), test_observations=sampler(test), base=load_encoder(device),
                   name="images")


def fast_generator(generator: Generator) -> Generator:
    """A frozen copy of ``generator`` with channels-last weights (oneDNN's preferred layout on a CPU): the same
    function up to float rounding, faster forward and backward. Fitting uses it with ``ImageLoss(fast=True)``.
    (Sub-pixel convolutions for the upsampling blocks, 0.5x the multiply-adds, measured no faster here.)"""
    import copy

    return copy.deepcopy(generator).to(memory_format=torch.channels_last).requires_grad_(False)


def load_landscape(device: str = "cpu") -> Landscape:
    """The default mode's landscape, built from its shipped parts (``zoo.load_landscape``): the anchored Θ, the
    encoder as its learned start, the learned update steps where ``images-steps`` is shipped and kept them (with
    the step sizes its judge chose after them), and ``SETTINGS``, each part checked to be fitted on the shipped
    generator."""
    settings = shipped_settings()
    return zoo.load_landscape(ANCHORED_NAME, FITTED_ON, start=ENCODER_NAME,
                              steps=STEPS_NAME if settings.learned_steps else None, settings=settings, device=device)


def shipped_settings() -> InferenceSettings:
    """``SETTINGS``, led by the learned steps where ``images-steps`` is shipped and kept them, at the step sizes
    its judge chose after them."""
    steps_config = zoo.path(STEPS_NAME).with_suffix(".json")
    config = read_json(steps_config, "zoo config") if steps_config.exists() else {}
    learned = int(config.get("learned_steps", 0))
    if not learned:
        return SETTINGS
    chosen = config.get("settings", {})
    return replace(SETTINGS, learned_steps=learned,
                   **{key: float(chosen[key]) for key in ("lr_z", "lr_x") if key in chosen})


def load_theta(device: str = "cpu") -> Mapping:
    """The paper's Θ of Eq. 3 (``images-landscape``), checked to be fitted on the shipped generator."""
    path = zoo.ZOO_DIR / LANDSCAPE_NAME
    if not path.with_suffix(".safetensors").exists():
        raise LandformError(f"missing zoo model {LANDSCAPE_NAME}; train it with `landform zoo train {LANDSCAPE_NAME}`")
    zoo.check_fitted_on(LANDSCAPE_NAME, Mapping.config_of(path), FITTED_ON)
    return Mapping.load(path, map_location=device)


def load_models(device: str = "cpu") -> ImageModels:
    """The shipped generator, Eq. 5 loss, the paper's Θ and the default landscape."""
    return ImageModels(generator=load_generator(device=device), loss=ImageLoss(device=device),
                       mapping=load_theta(device), landscape=load_landscape(device))


def run_comparison(models: ImageModels, images: torch.Tensor, val: torch.Tensor | None, *, steps: int, seed: int,
                   device: str, progress: bool, mode: str = DEFAULT_MODE, snapshots: tuple[int, ...] = (),
                   methods: list[Method] | None = None) -> tuple[Comparison, dict]:
    """Every method of ``models.methods`` on ``images`` (step sizes swept on ``val``), or ``methods`` already
    tuned by an earlier comparison, and the encoder's one-pass guess (loss per image, reconstruction,
    seconds)."""
    comparison = compare(models.problem(), images, methods or models.methods(mode), y_val=val, steps=steps,
                         seed=seed, device=device, progress=progress, snapshots=snapshots)
    started = time.perf_counter()
    with torch.no_grad():
        target = images.to(device)
        encoded = models.generator(models.encoder(target))
        encoder_losses = models.loss(encoded, target).cpu()
    encoder = {"losses": encoder_losses, "encoded": encoded.cpu(), "seconds": time.perf_counter() - started}
    return comparison, encoder


def summary_block(comparison: Comparison, encoder: dict) -> dict:
    """The report keys: each method's losses at the report steps, the default mode's speedup, improvement
    and time-to-quality (95% bootstrap intervals), and where the encoder's flat line is beaten."""
    block = dict(comparison.summary)
    block["encoder"] = float(encoder["losses"].mean())
    block["seconds_per_step"] = {**block["seconds_per_step"], "encoder": encoder["seconds"]}
    block["encoder_init_lr"] = comparison.lrs["encoder_init"]
    block["landscape_lr"] = comparison.lrs["landscape"]
    block["landscape_lr_x"] = block["lr_x"].get("landscape")
    for name, result in comparison.results.items():
        key = "steps_to_beat_encoder" if name == "landscape" else f"{name}_steps_to_beat_encoder"
        block[key] = step_reached(result.losses, block["encoder"])
    block["landscape_start_counts"] = torch.bincount(comparison.results["landscape"].start, minlength=2).tolist()
    return block


PROCESS_METHODS = {"baseline": "baseline (w from mean w)", "encoder_init": "encoder_init (w from E(y))",
                   "landscape": "ours (default)", "landscape_pure": "ours (Eq. 3)"}


def process_grid(path: Path, models: ImageModels, results: dict, images: torch.Tensor, rows: int, title: str) -> None:
    """Fig. 4: the generated image at steps 0, 1, 2, 4, 8, 16, 200 for every method, target at the end."""
    rows = min(rows, images.shape[0])
    shown = sorted(results["landscape"].snapshots.keys() & set(PROCESS_STEPS))
    grid, labels = [], []
    with torch.no_grad():
        for i in range(rows):
            for method, label in PROCESS_METHODS.items():
                shots = [models.generator(results[method].snapshots[s][i:i + 1]).cpu()[0] for s in shown]
                grid.append([*shots, images[i]])
                labels.append(f"#{i} {label}")
    save_labeled_grid(path, grid, labels, [f"step {s}" for s in shown] + ["target"], title)


def encoder_grid(path: Path, models: ImageModels, results: dict, encoder: dict, images: torch.Tensor, rows: int,
                 title: str, ours_step: int) -> None:
    """Fig. 7: target, the encoder's guess, encoder-initialized descent and ours after a few steps and at
    the end (the practitioners' pipeline beside ours)."""
    rows, last = min(rows, images.shape[0]), results["landscape"].losses.shape[0] - 1
    ours_step = min(ours_step, last)
    with torch.no_grad():
        pair = ("encoder_init", "landscape")
        columns = [models.generator(results[m].snapshots[ours_step][:rows]).cpu() for m in pair]
        finals = [results[m].y_hat[:rows].cpu() for m in pair]
    grid = [[images[i], encoder["encoded"][i], columns[0][i], columns[1][i], finals[0][i], finals[1][i]]
            for i in range(rows)]
    save_labeled_grid(path, grid, [f"#{i}" for i in range(rows)],
                      ["target", "encoder", f"enc.+descent, {ours_step}", f"ours, step {ours_step}",
                       f"enc.+descent, {last}", f"ours, step {last}"], title)


def completions(path: Path, models: ImageModels, images: torch.Tensor, *, hypotheses: int, steps: int,
                seed: int, device: str) -> dict:
    """Figs. 6 and 9: only part of each image observed; several random z0 give several completions."""
    masks = {"top half observed": torch.zeros(1, 28, 28, dtype=torch.bool),
             "all but a band observed": torch.ones(1, 28, 28, dtype=torch.bool)}
    masks["top half observed"][:, :14] = True
    masks["all but a band observed"][:, 10:18] = False
    grid, labels, spread = [], [], {}
    for name, mask in masks.items():
        repeated = images.repeat_interleave(hypotheses, dim=0)
        result = invert(models.generator, models.loss, repeated, mapping=models.mapping, steps=steps, lr=LR_Z,
                        init="gaussian", seed=seed, mask=mask, device=device)
        outputs = result.y_hat.cpu().view(images.shape[0], hypotheses, 1, 28, 28)
        hidden = ~mask
        spread[name] = float(outputs[:, :, hidden].std(dim=1).mean())
        for i in range(images.shape[0]):
            shown = torch.where(mask, images[i], torch.full_like(images[i], 0.5))
            grid.append([shown, *outputs[i]])
            labels.append(f"{name.split(' observed')[0]} #{i}")
    save_labeled_grid(path, grid, labels, ["observed"] + [f"z0 #{k}" for k in range(hypotheses)],
                      "Completions of partly observed images (grey: hidden, gives no gradient)")
    return {"hidden_pixel_std_across_hypotheses": spread, "hypotheses": hypotheses, "steps": steps}


SPECTRUM_METHODS = ("baseline", "landscape", "landscape_pure")
NOISE_SIGMAS = (0.1, 0.2, 0.3, 0.4)


def spectrum_sets(count: int, seed: int) -> dict[str, torch.Tensor]:
    """The paper's Tables 4 and 5 beyond the demo's two splits: Fashion-MNIST test images with Gaussian
    noise of growing sigma, held-out photographs, faces and pure noise (none of them seen in training)."""
    fashion = seeded_subset(load_fashion_mnist("test")[0], count, seed + 1)
    sets = {f"fashion + noise {sigma}": with_noise(fashion, sigma, seed) for sigma in NOISE_SIGMAS}
    sets.update({"photos (held out)": photo_crops(HELD_OUT_PHOTOS, count, seed + 2), "faces (LFW)": faces(count, seed),
                 "white noise": white_noise(count, seed)})
    return sets


def spectrum(models: ImageModels, tuned: list[Method], *, count: int, steps: int, seed: int, device: str,
             splits: dict | None = None, progress: bool = False, sets: dict[str, torch.Tensor] | None = None) -> dict:
    """Improvement at the last step over the baseline (95% interval) for the default and the pure mode
    along the spectrum of ``sets`` (default ``spectrum_sets``), with the ``tuned`` methods of an earlier
    comparison; ``splits`` adds summary blocks already computed (the demo's in-distribution and MNIST
    splits), so nothing is computed twice."""
    rows = {}
    for name, block in (splits or {}).items():
        rows[name] = _spectrum_row(block)
    sets = spectrum_sets(count, seed) if sets is None else sets
    for name, images in progress_bar(sets.items(), enabled=progress, desc="spectrum", leave=False):
        methods = [m for m in tuned if m.name in SPECTRUM_METHODS]
        comparison = compare(models.problem(), images, methods, steps=steps, seed=seed, device=device)
        rows[name] = _spectrum_row(comparison.summary)
    return {"count": count, "steps": steps, "rows": rows}


def _spectrum_row(block: dict) -> dict:
    pure = block.get("methods", {}).get("landscape_pure", {})
    return {"count": block["count"], "baseline_final": block["baseline"][-1], "landscape_final": block["landscape"][-1],
            "improvement_at_200": block["improvement_at_200"],
            "improvement_at_200_ci95": block.get("improvement_at_200_ci95"),
            "pure_improvement_at_200": pure.get("improvement_at_200"),
            "pure_improvement_at_200_ci95": pure.get("improvement_at_200_ci95"),
            "speedup_at_20": block["speedup_at_20"], "pure_speedup_at_20": pure.get("speedup_at_20")}


# The demo's report, replaced as one unit (``landform.io.atomic_outputs``): a figure per split and method
# comparison, the spectrum, the completions, the curves and the summary.
REPORT_FILES = ("process_in_distribution.png", "process_ood.png", "encoder_vs_ours_in_distribution.png",
                "encoder_vs_ours_ood.png", "spectrum.png", "completions.png", "curves.png", "curves.csv",
                "summary.json", "summary.md")


def demo(out: Path, *, device: str = "cpu", seed: int = 0, progress: bool = True, count: int = 128,
         val_count: int = 8, steps: int = 200, mode: str = DEFAULT_MODE, spectrum_count: int = 16) -> dict:
    """The main job: baseline, encoder-initialized descent, the default landscape and the paper's Eq. 3,
    in distribution (Fashion-MNIST test) and out of distribution (MNIST), then the spectrum of unseen
    data; curves, image grids, completions and ``summary.json``/``.md``, all replaced as one unit: an interrupted
    run leaves the previous report whole."""
    started = time.perf_counter()
    models = load_models(device)  # before the report folder is touched: a missing model changes nothing there
    with atomic_outputs(out, REPORT_FILES) as stage:  # the old report or the new one, never a mix
        return _report(stage, models, started=started, device=device, seed=seed, progress=progress, count=count,
                       val_count=val_count, steps=steps, mode=mode, spectrum_count=spectrum_count)


def _report(out: Path, models: ImageModels, *, started: float, device: str, seed: int, progress: bool, count: int,
            val_count: int, steps: int, mode: str, spectrum_count: int) -> dict:
    """The demo's computation (see ``demo``), its files written to ``out``, the report's staging folder."""
    datasets = {"in_distribution": seeded_subset(load_fashion_mnist("test")[0], count, seed),
                "ood": seeded_subset(load_mnist(), count, seed)}
    val = seeded_subset(load_fashion_mnist("val")[0], val_count, seed)
    stages = progress_bar(total=4, enabled=progress, desc="images demo")
    summary: dict = {}
    panels, hlines, csv_curves, tuned = {}, {}, {}, None
    for split, images in datasets.items():
        stages.set_postfix_str(split)
        comparison, encoder = run_comparison(models, images, val, steps=steps, seed=seed, device=device,
                                             progress=False, mode=mode, methods=tuned,
                                             snapshots=(*PROCESS_STEPS, ENCODER_GRID_STEP, steps))
        tuned = comparison.tuned()  # swept once, on Fashion-MNIST validation images, for every split
        summary[split] = summary_block(comparison, encoder)
        title = "in distribution (Fashion-MNIST test)" if split == "in_distribution" else "out of distribution (MNIST)"
        results = comparison.results
        panels[title] = {label: results[name].losses for name, label in PROCESS_METHODS.items()}
        hlines[title] = {"encoder (one pass)": summary[split]["encoder"]}
        csv_curves.update({f"{split}_{name}": result.losses for name, result in results.items()})
        csv_curves[f"{split}_encoder"] = torch.full((steps + 1,), summary[split]["encoder"])
        process_grid(out / f"process_{split}.png", models, results, images, rows=3, title=f"Optimization, {title}")
        encoder_grid(out / f"encoder_vs_ours_{split}.png", models, results, encoder, images, rows=6,
                     title=f"Encoder vs ours, {title}", ours_step=ENCODER_GRID_STEP)
        stages.update()
    stages.set_postfix_str("spectrum")
    summary["spectrum"] = spectrum(models, tuned, count=spectrum_count, steps=steps, seed=seed, device=device,
                                   splits={"fashion (in distribution)": summary["in_distribution"],
                                           "mnist": summary["ood"]}, progress=progress)
    plot_spectrum(out / "spectrum.png", summary["spectrum"])
    stages.update()
    stages.set_postfix_str("completions")
    summary["completions"] = completions(out / "completions.png", models, datasets["in_distribution"][:3],
                                         hypotheses=5, steps=steps, seed=seed, device=device)
    stages.update()
    stages.close()
    plot_curves(out / "curves.png", panels, hlines=hlines, ylabel="mean loss (Eq. 5)")
    write_curves_csv(out / "curves.csv", csv_curves)
    settings = models.landscape.settings
    lead = f"{settings.learned_steps} learned steps (images-steps), then " if settings.learned_steps else ""
    summary["settings"] = {"count": count, "val_count": val_count, "steps": steps, "seed": seed, "device": device,
                           "mode": mode, "threads": torch.get_num_threads(),
                           "loss": "EfficientNet-Lite0 perceptual + MSE (Eq. 5)", "x": f"generator w ({W_DIM}-d)",
                           "baseline": "Adam on w from the mean w, lr swept on validation images",
                           "encoder_init": "Adam on w from the encoder's guess, lr swept on validation images",
                           "landscape": f"{lead}{mode}: x = E(y) + Θ(z) + δ (images-landscape-anchored), Adam on "
                                        f"z at lr {settings.lr_z:g} and on δ at the step size swept over {LR_X} on "
                                        f"validation images (warmed up over {DEFAULT_WARMUP} steps), the mean w as a "
                                        "second candidate start",
                           "landscape_pure": f"Eq. 3: x = Θ(z) (images-landscape), Adam on z from 0, lr {LR_Z}",
                           "seconds": time.perf_counter() - started}
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", summary_markdown(summary))
    return summary


def plot_spectrum(path: Path, block: dict) -> None:
    """Improvement at the last step over the baseline along the data spectrum, both modes, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landform.report import save_figure

    names = list(block["rows"])
    figure, axis = plt.subplots(figsize=(1.3 * len(names) + 2, 3.8))
    for offset, (key, label) in enumerate((("improvement_at_200", "default mode"),
                                           ("pure_improvement_at_200", "pure Eq. 3"))):
        values = [100 * (block["rows"][n][key] or 0.0) for n in names]
        errors = [[0, 0] if not block["rows"][n].get(f"{key}_ci95") else
                  [v - 100 * (block["rows"][n][f"{key}_ci95"][0] or 0),
                   100 * (block["rows"][n][f"{key}_ci95"][1] or 0) - v]
                  for n, v in zip(names, values, strict=True)]
        positions = [i + (offset - 0.5) * 0.38 for i in range(len(names))]
        axis.bar(positions, values, width=0.38, label=label, yerr=list(zip(*errors, strict=True)), capsize=3)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(names)), names, rotation=20, ha="right")
    axis.set_ylabel(f"improvement over the baseline at step {block['steps']} (%)")
    axis.set_title("Data spectrum (Tables 4, 5): 95% bootstrap intervals")
    axis.legend()
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    save_figure(figure, path)


def _improvement(value: float | None, interval: list | None) -> str:
    """A spectrum cell: the improvement in percent with its interval, empty where there is none."""
    return "" if value is None else f"{100 * value:.1f}%{format_interval(interval, percent=True)}"


def summary_markdown(summary: dict) -> str:
    """The human-readable report: one table per split from the shared renderer, then the spectrum."""
    settings = summary["settings"]
    lines = ["# GAN inversion with a learned landscape (Fashion-MNIST generator)", "",
             f"`landform demo` ({settings['threads']} threads, {settings['seconds'] / 60:.1f} min). Methods: "
             + "; ".join(f"**{k}**: {settings[k]}" for k in PROCESS_METHODS),
             ""]
    for split in ("in_distribution", "ood"):
        block = summary[split]
        lines += [f"## {split.replace('_', ' ')} ({block['count']} images)", "", summary_table(block), "",
                  f"- encoder alone (one pass): {block['encoder']:.4f}; beaten by ours at step "
                  f"{block['steps_to_beat_encoder']}, by the baseline at step "
                  f"{block['baseline_steps_to_beat_encoder']}",
                  f"- step sizes: {block['lr']}, δ of ours {block.get('landscape_lr_x')} (sweeps on validation "
                  f"images: {block.get('lr_sweep')})",
                  f"- ours started at E(y) + Θ(0) for {block['landscape_start_counts'][0]} images and at the mean w "
                  f"for {block['landscape_start_counts'][1]}", ""]
    rows = summary["spectrum"]["rows"]
    table = [[name, str(row["count"]), _improvement(row["improvement_at_200"], row["improvement_at_200_ci95"]),
              _improvement(row["pure_improvement_at_200"], row["pure_improvement_at_200_ci95"]),
              f"{row['speedup_at_20']:.1f} / {row['pure_speedup_at_20'] or 0:.1f}"] for name, row in rows.items()]
    lines += ["## Data spectrum (paper Tables 4 and 5)", "",
              "Improvement at the last step over the baseline [95% bootstrap interval over images]:", "",
              markdown_table(["data", "images", "default mode", "pure Eq. 3", "speedup at 20 (default / pure)"], table)]
    lines += ["", "Figures: curves.png (Fig. 3a), process_*.png (Fig. 4), encoder_vs_ours_*.png (Fig. 7), "
              "spectrum.png (Tables 4, 5), completions.png (Figs. 6, 9).", ""]
    return "\n".join(lines)
