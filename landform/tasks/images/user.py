"""The image task on a user's own images: ``landform invert --task images`` and ``landform compare``.

``compare`` sweeps each method's step size on Fashion-MNIST validation images (the report's §7.2 protocol).
That sweep depends only on the shipped models, the seed, the steps and the mode, never on the user's images,
so its result is kept: ``STEP_SIZES`` ships the one for the default settings, and any other sweep is stored
in RUNS/images-step-sizes.json on first use. A record is used only when its key (the models' fingerprints and
every setting of the sweep) equals the run's. ``STEP_SIZES`` is that cache file after a run on an empty RUNS:
``LANDFORM_RUNS=/tmp/r landform compare --task images PHOTO --out /tmp/o --threads 1``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from landform import zoo
from landform.comparison import DEFAULT_MODE, SWEEP_LRS, Comparison, Method
from landform.errors import LandformError
from landform.io import atomic_outputs, read_json
from landform.report import plot_curves, summary_table, write_curves_csv, write_json
from landform.tasks import runs_dir
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.figures import save_labeled_grid
from landform.tasks.images.generator import ZOO_NAME as GENERATOR_NAME
from landform.tasks.images.task import (
    ANCHORED_NAME,
    LR_X,
    STEPS_NAME,
    ImageModels,
    load_models,
    run_comparison,
    shipped_settings,
    summary_block,
)
from landform.zoo import save_pair

STEP_SIZES = Path(__file__).resolve().parent / "step_sizes.json"
STEP_SIZES_CACHE = "images-step-sizes.json"
VAL_COUNT = 8  # validation images of the sweep (as in `landform demo`)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# The output sets of ``invert_inputs`` and ``compare_inputs``, each replaced as one unit
# (``landform.io.atomic_outputs``): an interrupted run leaves the previous set whole.
INVERT_FILES = ("latents.safetensors", "latents.json", "reconstructions.png")
COMPARE_FILES = ("curves.csv", "curves.png", "reconstructions.png", "summary.json")


def image_files(inputs: list[str]) -> list[Path]:
    """The image files named, with folders expanded to the images they hold."""
    if not inputs:
        raise LandformError("give at least one image file or folder")
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.exists():
            files.append(item)
        else:
            raise LandformError(f"no such image or folder: {item}")
    if not files:
        raise LandformError(f"no images found in {', '.join(inputs)}")
    return files


def load_images(files: list[Path], announce: bool = True) -> torch.Tensor:
    """Images as [N, 1, 28, 28] in [0, 1]: any size or colour is converted to 28x28 grayscale, with a message."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("L") if opened.mode != "L" else opened.copy()
                mode, size = opened.mode, opened.size
        except (UnidentifiedImageError, OSError) as error:
            raise LandformError(f"cannot read image {file}: {error}") from None
        if announce and (mode != "L" or size != (28, 28)):
            print(f"{file}: converted {mode} {size[0]}x{size[1]} to grayscale 28x28")
        image = image.resize((28, 28), Image.BILINEAR)
        images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None])
    return torch.stack(images)


def invert_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = 200,
                  progress: bool = True, mode: str = DEFAULT_MODE) -> None:
    """Invert a user's images with the default landscape (or ``mode``); write reconstructions, latents and
    losses as one set (``INVERT_FILES``)."""
    files = image_files(inputs)
    images = load_images(files)
    models = load_models(device)
    # No validation sweep here: the landscape's tuned step sizes (δ's is what the sweep of `landform demo` chose).
    method = models.pure_method() if mode == "pure" else models.default_method(mode)
    result = method.run(models.problem(), images, method.lr, steps=steps, seed=seed, device=device, progress=progress)
    out = Path(out)
    grid = [[images[i], result.y_hat[i].cpu()] for i in range(len(files))]
    with atomic_outputs(out, INVERT_FILES) as stage:  # the old set or the new one, never a mix
        save_pair(stage / "latents.safetensors", {"w": result.x, "z": result.z, "reconstruction": result.y_hat},
                  {"files": [str(f) for f in files], "steps": steps, "mode": mode,
                   "final_loss": result.losses[-1].tolist()})
        save_labeled_grid(stage / "reconstructions.png", grid, [f.name for f in files],
                          ["input", f"ours, step {steps}"])
    for file, loss in zip(files, result.losses[-1].tolist(), strict=True):
        print(f"{file}: loss {loss:.4f}")
    print(f"wrote {out / 'latents.safetensors'} and {out / 'reconstructions.png'}")


def compare_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = 200,
                   progress: bool = True, mode: str = DEFAULT_MODE) -> dict:
    """Every method of the image report (baseline, encoder_init, ours in ``mode`` and pure Eq. 3) on a
    user's images, step sizes swept on Fashion-MNIST validation images; writes curves, reconstructions and
    summary.json as one set (``COMPARE_FILES``)."""
    files = image_files(inputs)
    images = load_images(files)
    models = load_models(device)
    key = sweep_key(seed=seed, steps=steps, mode=mode)
    record, source = stored_step_sizes(key)
    if record is None:
        val = seeded_subset(load_fashion_mnist("val")[0], VAL_COUNT, seed)
        comparison, encoder = run_comparison(models, images, val, steps=steps, seed=seed, device=device,
                                             progress=progress, mode=mode)
        source = store_step_sizes(key, comparison)
        print(f"step sizes swept on {VAL_COUNT} validation images, kept in {source} for later runs")
    else:
        comparison, encoder = run_comparison(models, images, None, steps=steps, seed=seed, device=device,
                                             progress=progress, methods=tuned_methods(models, mode, record))
        comparison.summary.lr_sweep = record["sweeps"]
    block = summary_block(comparison, encoder)
    block["step_sizes_from"] = str(source)
    out = Path(out)
    curves = {name: result.losses for name, result in comparison.results.items()}
    results = comparison.results
    rows = [[images[i], results["baseline"].y_hat[i].cpu(), results["encoder_init"].y_hat[i].cpu(),
             results["landscape"].y_hat[i].cpu(), results["landscape_pure"].y_hat[i].cpu(), encoder["encoded"][i]]
            for i in range(len(files))]
    summary = {"user": block, "files": [str(f) for f in files]}
    with atomic_outputs(out, COMPARE_FILES) as stage:  # the old set or the new one, never a mix
        write_curves_csv(stage / "curves.csv", {**curves, "encoder": torch.full((steps + 1,), block["encoder"])})
        plot_curves(stage / "curves.png", {"your images": curves},
                    hlines={"your images": {"encoder": block["encoder"]}})
        save_labeled_grid(stage / "reconstructions.png", rows, [f.name for f in files],
                          ["input", "baseline", "encoder_init", "ours", "ours (Eq. 3)", "encoder"])
        write_json(stage / "summary.json", summary)
    print(f"your {len(files)} images: mean loss (Eq. 5)")
    print(summary_table(block, [s for s in (0, 1, 2, 5, 10, 20, 200) if s in block["steps"]]))
    print(f"wrote {out}/curves.csv, curves.png, reconstructions.png, summary.json")
    return summary


def sweep_key(*, seed: int, steps: int, mode: str) -> dict:
    """Everything the step-size sweep of ``compare_inputs`` depends on: the models of the swept methods (their
    fingerprints; pure Eq. 3 has a fixed step size), the validation images (``VAL_COUNT`` drawn with ``seed``),
    the steps, the mode and the rates swept."""
    settings = shipped_settings()
    models = (GENERATOR_NAME, "images-encoder", ANCHORED_NAME, *((STEPS_NAME,) if settings.learned_steps else ()))
    return {"models": {name: zoo.fingerprint(name) for name in models}, "seed": seed, "steps": steps,
            "mode": mode, "val_count": VAL_COUNT, "optimizer": "adam", "lrs": list(SWEEP_LRS),
            "lr_x": list(LR_X), "lr_z": settings.lr_z}


def _records(path: Path) -> list[dict]:
    return read_json(path, "step-size file").get("records", []) if path.exists() else []


def stored_step_sizes(key: dict) -> tuple[dict | None, Path | None]:
    """The kept sweep whose key equals ``key`` (the shipped file first, then the RUNS cache), and its file."""
    for path in (STEP_SIZES, runs_dir() / STEP_SIZES_CACHE):
        for record in _records(path):
            if record.get("key") == key:
                return record, path
    return None, None


def store_step_sizes(key: dict, comparison: Comparison) -> Path:
    """Add this comparison's sweep under ``key`` to the RUNS cache (replacing a record of the same key)."""
    path = runs_dir() / STEP_SIZES_CACHE
    record = {"key": key, "lr": comparison.lrs, "sweeps": comparison.summary["lr_sweep"],
              "lr_x": {name: method.lr_x for name, method in comparison.methods.items()}}
    write_json(path, {"records": [r for r in _records(path) if r.get("key") != key] + [record]})
    return path


def tuned_methods(models: ImageModels, mode: str, record: dict) -> list[Method]:
    """``models.methods(mode)`` with every step size fixed to the kept sweep's choice."""
    return [replace(method, lr=record["lr"][method.name], lr_x=record["lr_x"][method.name])
            for method in models.methods(mode)]
