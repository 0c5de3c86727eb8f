"""The image task on a user's own images: ``landform invert --task images`` and ``landform compare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from landform import invert
from landform.compare import SWEEP_LRS, sweep_lr
from landform.errors import LandformError
from landform.report import plot_curves, write_curves_csv, write_json
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.figures import save_labeled_grid
from landform.tasks.images.task import LR_Z, _baseline_init, load_models, run_comparison, summary_block
from landform.zoo import save_pair

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


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
                  progress: bool = True) -> None:
    """Invert a user's images in the learned landscape; write reconstructions, latents and losses."""
    files = image_files(inputs)
    images = load_images(files)
    models = load_models(device)
    result = invert(models.generator, models.loss, images, mapping=models.mapping, steps=steps, lr=LR_Z,
                    seed=seed, device=device, progress=progress)
    out = Path(out)
    save_pair(out / "latents.safetensors", {"w": result.x, "z": result.z, "reconstruction": result.y_hat},
              {"files": [str(f) for f in files], "steps": steps, "final_loss": result.losses[-1].tolist()})
    grid = [[images[i], result.y_hat[i].cpu()] for i in range(len(files))]
    save_labeled_grid(out / "reconstructions.png", grid, [f.name for f in files], ["input", f"ours, step {steps}"])
    for file, loss in zip(files, result.losses[-1].tolist(), strict=True):
        print(f"{file}: loss {loss:.4f}")
    print(f"wrote {out / 'latents.safetensors'} and {out / 'reconstructions.png'}")


def compare_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = 200,
                   progress: bool = True) -> dict:
    """Baseline vs learned landscape vs encoder on a user's images; writes curves and summary.json."""
    files = image_files(inputs)
    images = load_images(files)
    models = load_models(device)
    val = seeded_subset(load_fashion_mnist("val")[0], 16, seed)
    baseline_lr, sweep = sweep_lr(models.generator, models.loss, val, lrs=SWEEP_LRS, steps=steps, seed=seed,
                                  init=_baseline_init(models, val.shape[0]), device=device)
    result = run_comparison(models, images, baseline_lr=baseline_lr, steps=steps, seed=seed, device=device,
                            progress=progress)
    block = summary_block(result, baseline_lr, sweep)
    out = Path(out)
    curves = {"baseline": result["baseline"].losses, "landscape": result["landscape"].losses}
    write_curves_csv(out / "curves.csv", {**curves, "encoder": torch.full((steps + 1,), block["encoder"])})
    plot_curves(out / "curves.png", {"your images": curves}, hlines={"your images": {"encoder": block["encoder"]}})
    rows = [[images[i], result["baseline"].y_hat[i].cpu(), result["landscape"].y_hat[i].cpu(), result["encoded"][i]]
            for i in range(len(files))]
    save_labeled_grid(out / "reconstructions.png", rows, [f.name for f in files],
                      ["input", f"baseline, step {steps}", f"ours, step {steps}", "encoder"])
    summary = {"user": block, "files": [str(f) for f in files]}
    write_json(out / "summary.json", summary)
    from landform.cli import print_table

    print_table(f"your {len(files)} images: mean loss (Eq. 5)", block)
    print(f"wrote {out}/curves.csv, curves.png, reconstructions.png, summary.json")
    return summary
