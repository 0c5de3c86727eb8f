"""landform against deepinv's CSGM on two image generators, under four deepinv operators
(benchmarks/results/deepinv-*.{json,md}).

    python benchmarks/deepinv_solvers.py [--generator fashion-gan|mnist-vae] [--count 256] [--fit-seconds 180]
        [--threads 1] [--csgm-count 16] [--learned-steps] [--refit]

Generators: ``fashion-gan``, the image task's shipped GAN (Fashion-MNIST), and ``mnist-vae``, a VAE decoder
trained here on MNIST digits (benchmarks/mnist_vae.py: another kind, other data, a 16-number latent).

Operators (deepinv physics on 1x28x28 images, Gaussian noise σ = 0.05 on every measurement): Gaussian blur
(σ = 1.5 px, circular padding), random inpainting (50% of pixels kept), compressed sensing with m = 100 and
m = 300 of 784. The GAN runs channels-last, as the image task fits it (the same function up to float rounding,
faster), inverted in its intermediate latent w (64 numbers); the VAE in its latent: F = A ∘ G, for every method.
Ground truths are test images of G's data (a seeded subset), so every method is bounded by what G can draw.

- ``csgm``: deepinv's ``CSGMGenerator`` on G (Adam on the latent, lr 1e-2, from Unif[-1, 1], stopped where the
  loss changes by under 1e-4; its latent is one image, so it runs image by image), stopped after 1, 5, 10 and 20
  steps (every image), and at its default 2,500 steps: on every image by ``run_csgm_batched``, the same
  algorithm on the whole batch at once (4x faster than image by image on the GAN), checked
  against deepinv's own on the first ``--csgm-count`` images, whose one-at-a-time seconds the table shows.
- ``landform``: one landscape fitted per operator (``landform.recipe.learn`` on G's train images
  measured by that physics), its tuned inference after 0 (the learned start alone), 1, 5, 10 and 20 steps.
- ``landform (identity)``: one landscape fitted with no operator (``deepinv.physics.Denoising``, same noise) and
  reused under each operator: does a landscape learned for G alone transfer? Its learned start reads an image,
  so compressed sensing is posed in image space (y' = A†y, F' = A†A ∘ G: the same data fit, whitened).

Per row: mean PSNR and SSIM (deepinv's metrics, images in [0, 1]) with 95% percentile-bootstrap intervals over
images, the paired PSNR difference to CSGM's 2,500 steps on the images both ran, and wall-clock seconds per
image (landform: the whole batch at once, and one image at a time on up to 16 images; CSGM: one at a time).
Landscapes are cached in landform's runs directory (``landform.tasks.runs_dir``), under
deepinv-landscapes/<operator>-<seconds>s, and reused (``--refit`` fits anew).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import mnist_vae as mnist_vae_module
import torch
from torch import nn

from landform.errors import LandformError
from landform.integrations.deepinv import dinv, measure, problem_from_physics
from landform.io import write_bytes, write_json
from landform.problem import Problem
from landform.recipe import Landscape, learn
from landform.report import markdown_table
from landform.tasks import runs_dir
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.generator import W_DIM, load_generator
from landform.tasks.images.task import fast_generator

OPERATORS = ("blur", "inpainting", "cs100", "cs300")
LABELS = {"blur": "Gaussian blur σ=1.5", "inpainting": "inpainting 50%", "cs100": "compressed sensing m=100",
          "cs300": "compressed sensing m=300", "identity": "none (denoising)"}
NOISE = 0.05
LANDFORM_STEPS = (0, 1, 5, 10, 20)
CSGM_SHORT = (1, 5, 10, 20)
CSGM_STEPS = 2500  # CSGMGenerator's default inf_max_iter
LATENCY_IMAGES = 16
BATCH = 256
RESAMPLES = 2000


def fashion_gan(log) -> tuple[nn.Module, int, tuple[torch.Tensor, torch.Tensor]]:
    """The image task's shipped generator (channels-last), its latent size, Fashion-MNIST (train, test)."""
    return fast_generator(load_generator()), W_DIM, (load_fashion_mnist("train")[0], load_fashion_mnist("test")[0])


def mnist_vae(log) -> tuple[nn.Module, int, tuple[torch.Tensor, torch.Tensor]]:
    """The MNIST VAE decoder (trained now if not cached), its latent size, its (train, test) digits."""
    return mnist_vae_module.load_decoder(log=log), mnist_vae_module.LATENT, mnist_vae_module.split()


GENERATORS = {"fashion-gan": fashion_gan, "mnist-vae": mnist_vae}
GENERATOR_LABELS = {"fashion-gan": "Fashion-MNIST GAN", "mnist-vae": "MNIST VAE"}


def make_physics(name: str) -> Any:
    """The deepinv physics of operator ``name`` (its random mask or matrix fixed by a seed)."""
    noise = dinv.physics.GaussianNoise(sigma=NOISE)
    rng = torch.Generator().manual_seed(0)
    if name == "identity":
        return dinv.physics.Denoising(noise_model=noise)
    if name == "blur":
        kernel = dinv.physics.functional.gaussian_blur(sigma=(1.5, 1.5))
        return dinv.physics.Blur(filter=kernel, padding="circular", noise_model=noise)
    if name == "inpainting":
        return dinv.physics.Inpainting(img_size=(1, 28, 28), mask=0.5, noise_model=noise, rng=rng)
    return dinv.physics.CompressedSensing(m=int(name[2:]), img_size=(1, 28, 28), noise_model=noise, rng=rng)


class ImageSpace:
    """A physics posed in image space for a landscape whose start reads images: y' = A†(y), A' = A†A."""

    def __init__(self, physics: Any) -> None:
        self.physics = physics
        self.noise_model = getattr(physics, "noise_model", None)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A_dagger(self.physics.A(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A_dagger(self.physics(x))


class Backbone(nn.Module):
    """G as CSGMGenerator wants it: an ``nz`` attribute and latents shaped [B, nz, 1, 1]."""

    def __init__(self, generator: nn.Module, latent: int) -> None:
        super().__init__()
        self.generator = generator
        self.nz = latent

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z.flatten(1))


def bootstrap(values: torch.Tensor, seed: int = 0) -> list[float]:
    """The mean of ``values`` and its 95% percentile-bootstrap interval over them."""
    values = values.double()
    index = torch.randint(values.numel(), (RESAMPLES, values.numel()), generator=torch.Generator().manual_seed(seed))
    low, high = torch.quantile(values[index].mean(1), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [values.mean().item(), low, high]


def fitted(name: str, problem: Problem, seconds: float, refit: bool, learned_steps: bool,
           log) -> tuple[Landscape, float | None]:
    """The landscape for operator ``name``: cached, or fitted now (and the seconds the fit took). Without
    ``learned_steps``, ``learn`` trains no learned update steps (where its version has them): on this generator
    their training checks its time budget only every 100 iterations and ran minutes past a 60-second fit."""
    options = {} if learned_steps or "learned_steps" not in inspect.signature(learn).parameters \
        else {"learned_steps": False}
    directory = runs_dir() / "deepinv-landscapes" / f"{name}-{seconds:g}s{'-steps' if options == {} else ''}"
    if (directory / "landscape.json").exists() and not refit:
        try:
            landscape = Landscape.load(directory)
            log(f"{name}: reusing the landscape in {directory}")
            return landscape, None
        except LandformError as error:  # saved by another landform version: fit anew
            log(f"{name}: not reusing {directory} ({error})")
    if refit and directory.exists():  # the benchmark's own cache: --refit asks for it to be replaced
        shutil.rmtree(directory)
        log(f"{name}: removed the cached landscape in {directory} (--refit)")
    began = time.perf_counter()
    learn(problem, directory, seconds=seconds, progress=False, log=lambda line: log(f"{name}: {line}"), **options)
    return Landscape.load(directory), time.perf_counter() - began


def run_landform(landscape: Landscape, problem: Problem, generator: nn.Module, y: torch.Tensor, steps: int,
                 **options: Any) -> tuple[torch.Tensor, float, float]:
    """Images G(x*) after ``steps`` steps of the landscape's inference (``options`` go to ``invert``), seconds per
    image in batches of BATCH, and seconds per image one at a time (on the first LATENCY_IMAGES)."""
    began, images = time.perf_counter(), []
    for chunk in y.split(BATCH):
        x = landscape.invert(chunk, problem, steps=steps, **options).x
        with torch.no_grad():
            images.append(generator(x))
    batched = (time.perf_counter() - began) / y.shape[0]
    began = time.perf_counter()
    for i in range(min(LATENCY_IMAGES, y.shape[0])):
        x = landscape.invert(y[i:i + 1], problem, steps=steps, **options).x
        with torch.no_grad():
            generator(x)
    single = (time.perf_counter() - began) / min(LATENCY_IMAGES, y.shape[0])
    return torch.cat(images), batched, single


def run_csgm(generator: nn.Module, latent: int, physics: Any, y: torch.Tensor, steps: int,
             seed: int) -> tuple[torch.Tensor, float]:
    """deepinv's CSGMGenerator (its defaults but ``inf_max_iter=steps``), image by image: images, seconds per image."""
    model = dinv.models.CSGMGenerator(Backbone(generator, latent), inf_max_iter=steps).eval()
    images, began = [], time.perf_counter()
    for i in range(y.shape[0]):
        torch.manual_seed(seed * 1_000_003 + i)  # its Unif[-1, 1] start draws from torch's global generator
        with torch.no_grad():
            images.append(model(y[i:i + 1], physics))
    return torch.cat(images), (time.perf_counter() - began) / y.shape[0]


@torch.enable_grad()
def run_csgm_batched(generator: nn.Module, latent: int, physics: Any, y: torch.Tensor, steps: int, seed: int,
                     tolerance: float = 1e-4, lr: float = 1e-2) -> tuple[torch.Tensor, float]:
    """CSGMGenerator's algorithm on a whole batch at once, image by image in effect: each image's start drawn as
    ``run_csgm`` draws it, Adam on the summed per-image losses (each image's gradient is its own loss's, and Adam
    is per coordinate, so each row moves as it would alone), and each image frozen after the step at which its
    own loss changed by less than ``tolerance`` (CSGMGenerator's stop). Returns images and seconds per image.
    The same function as ``run_csgm`` up to float rounding (the benchmark measures how close, on the images
    both ran). On the GAN, 2,500 steps took 1.7 s per image in a batch of 256 on one loaded core, against 6.9 s
    one at a time."""
    began = time.perf_counter()
    starts = []
    for i in range(y.shape[0]):
        torch.manual_seed(seed * 1_000_003 + i)
        starts.append(torch.rand(1, latent, 1, 1) * 2 - 1)
    z = nn.Parameter(torch.cat(starts))
    optimizer = torch.optim.Adam([z], lr=lr)
    final = z.detach().clone()
    active = torch.ones(y.shape[0], dtype=torch.bool)
    previous = torch.full((y.shape[0],), 999.0)
    backbone = Backbone(generator, latent)
    for _ in range(steps):
        error = (physics.A(backbone(z)) - y).pow(2).flatten(1).mean(1)
        optimizer.zero_grad()
        error.sum().backward()
        optimizer.step()
        current = error.detach()
        with torch.no_grad():
            final[active] = z[active]
        active &= ~((current - previous).abs() / current < tolerance)
        previous = current
        if not active.any():
            break
    with torch.no_grad():
        images = backbone(final)
    return images, (time.perf_counter() - began) / y.shape[0]


def scores(images: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR and SSIM with deepinv's metrics (images clipped to [0, 1])."""
    images = images.clamp(0, 1)
    return {"psnr": dinv.metric.PSNR()(images, truth).flatten(), "ssim": dinv.metric.SSIM()(images, truth).flatten()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=256, help="test images (of the generator's data)")
    parser.add_argument("--fit-seconds", type=float, default=180.0, help="learn's budget per landscape")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--generator", choices=tuple(GENERATORS), default="fashion-gan",
                        help="the image generator: the image task's Fashion-MNIST GAN, or an MNIST VAE trained here")
    parser.add_argument("--csgm-count", type=int, default=16,
                        help=f"images deepinv's own CSGMGenerator runs one at a time for {CSGM_STEPS} steps (its "
                             "seconds per image, and the check against the batched run; about 7 s each on one core)")
    parser.add_argument("--operators", default=",".join(OPERATORS),
                        help="comma-separated subset of " + ", ".join(OPERATORS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learned-steps", action="store_true",
                        help="let learn train its learned update steps (off: their training overran its budget here)")
    parser.add_argument("--refit", action="store_true", help="fit the landscapes anew instead of reusing cached ones")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    operators = [name for name in args.operators.split(",") if name]
    if not operators or set(operators) - set(OPERATORS):
        parser.error(f"--operators must name some of {', '.join(OPERATORS)}")
    csgm_count = min(args.count, args.csgm_count)
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {line}", file=sys.stderr, flush=True)

    generator, latent, data = GENERATORS[args.generator](log)
    truth = seeded_subset(data[1], args.count, args.seed)
    prefix = "" if args.generator == "fashion-gan" else f"{args.generator}-"

    def problem_of(physics: Any, name: str) -> Problem:
        return problem_from_physics(physics, generator, latent_shape=(latent,), name=f"deepinv-{prefix}{name}",
                                    data=data)

    landscapes, fit_seconds = {}, {}
    for name in ["identity", *operators]:
        landscapes[name], fit_seconds[name] = fitted(prefix + name, problem_of(make_physics(name), name),
                                                     args.fit_seconds, args.refit, args.learned_steps, log)
        log(f"{name}: {landscapes[name].describe()}")

    rows: list[dict[str, Any]] = []
    checks: dict[str, dict[str, float]] = {}
    for index, name in enumerate(operators):
        physics = make_physics(name)
        y = measure(physics, truth, seed=args.seed * 1000 + index)
        per_image: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        seconds: dict[tuple[str, int], tuple[float, float | None]] = {}
        alone, single = run_csgm(generator, latent, physics, y[:csgm_count], CSGM_STEPS, args.seed)
        images, batched = run_csgm_batched(generator, latent, physics, y, CSGM_STEPS, args.seed)
        per_image["csgm", CSGM_STEPS], seconds["csgm", CSGM_STEPS] = scores(images, truth), (single, batched)
        gap = (scores(alone, truth[:csgm_count])["psnr"] - per_image["csgm", CSGM_STEPS]["psnr"][:csgm_count]).abs()
        checks[name] = {"images": csgm_count, "mean_abs_psnr_difference": gap.mean().item(),
                        "max_abs_psnr_difference": gap.max().item()}
        log(f"{name}: CSGM {CSGM_STEPS} steps, {single:.2f} s per image one at a time ({csgm_count} images), "
            f"{batched:.3f} batched ({y.shape[0]}); |ΔPSNR| batched vs deepinv's: mean {gap.mean():.3f}, "
            f"max {gap.max():.3f} dB")
        for steps in CSGM_SHORT:
            images, s = run_csgm(generator, latent, physics, y, steps, args.seed)
            per_image["csgm", steps], seconds["csgm", steps] = scores(images, truth), (s, None)
        transfer = physics if y.shape[1:] == truth.shape[1:] else ImageSpace(physics)
        y_transfer = y if transfer is physics else transfer.physics.A_dagger(y)
        for method, landscape, problem, observed, options in (
                ("landform", landscapes[name], problem_of(physics, name), y, {}),
                ("landform (identity)", landscapes["identity"], problem_of(transfer, name), y_transfer,
                 {"allow_other_model": True})):  # fitted for F = G: reused under A ∘ G on purpose
            for steps in LANDFORM_STEPS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    images, batched, single = run_landform(landscape, problem, generator, observed, steps, **options)
                per_image[method, steps], seconds[method, steps] = scores(images, truth), (single, batched)
        log(f"{name}: landform done")
        reference = per_image["csgm", CSGM_STEPS]["psnr"]
        for (method, steps), values in per_image.items():
            count = values["psnr"].numel()  # every row scores all the images, CSGM's 2,500 steps included
            rows.append({"operator": name, "method": method, "steps": steps, "images": count,
                         "psnr": bootstrap(values["psnr"]), "ssim": bootstrap(values["ssim"]),
                         "psnr_minus_csgm": bootstrap(values["psnr"] - reference), "paired_images": count,
                         "seconds_per_image": seconds[method, steps][0],
                         "seconds_per_image_batched": seconds[method, steps][1],
                         "per_image_psnr": [round(v, 3) for v in values["psnr"].tolist()],
                         "per_image_ssim": [round(v, 4) for v in values["ssim"].tolist()]})

    stem = f"deepinv-{prefix}n{args.count}-fit{args.fit_seconds:g}s-t{args.threads}"
    record = {"command": " ".join(["python", "benchmarks/deepinv_solvers.py", *(argv or sys.argv[1:])]),
              "generator": args.generator, "generator_label": GENERATOR_LABELS[args.generator],
              "count": args.count, "csgm_count": csgm_count, "csgm_check": checks, "fit_seconds": args.fit_seconds,
              "learned_steps": args.learned_steps, "threads": args.threads,
              "noise_sigma": NOISE, "seed": args.seed, "operators": {k: LABELS[k] for k in ["identity", *operators]},
              "landscapes": {k: {"describe": v.describe(), "tuned_steps": v.settings.steps,
                                 "fit_wall_seconds": fit_seconds[k]} for k, v in landscapes.items()},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "deepinv": dinv.__version__},
              "total_seconds": time.perf_counter() - started, "rows": rows}
    write_json(args.out / f"{stem}.json", record)
    write_bytes(args.out / f"{stem}.md", render(record).encode())
    log(f"wrote {args.out / stem}.json and .md")
    print(render(record))
    return 0


def _interval(value: list[float], digits: int) -> str:
    mean, low, high = value
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _seconds(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}" if value < 0.1 else f"{value:.2f}"


def render(record: dict[str, Any]) -> str:
    """The markdown table of a benchmark record."""
    label = record.get("generator_label", GENERATOR_LABELS["fashion-gan"])
    lines = [f"# landform vs deepinv's CSGM ({label} generator)", "",
             f"`{record['command']}`: {record['count']} test images (CSGM's {CSGM_STEPS} steps on all of them, "
             f"batched; deepinv's own CSGMGenerator one at a time on the first {record['csgm_count']}), "
             f"Gaussian noise σ={record['noise_sigma']} on every measurement, "
             f"{record['threads']} thread(s), landscapes fitted for {record['fit_seconds']:g} s each; "
             f"torch {record['machine']['torch']}, deepinv {record['machine']['deepinv']}, "
             f"{record['total_seconds'] / 60:.1f} min in all.", "",
             "Means with 95% bootstrap intervals over images. ΔPSNR: paired difference to CSGM's "
             f"{CSGM_STEPS} steps. Seconds per image: one image at a time (landform: on {LATENCY_IMAGES} images; "
             f"CSGM's {CSGM_STEPS} steps: deepinv's own, on {record['csgm_count']}) and the batch at once.", ""]
    checks = record.get("csgm_check", {})
    if checks:
        lines += [f"CSGM's {CSGM_STEPS}-step row is `run_csgm_batched` (its algorithm on the whole batch); against "
                  "deepinv's own CSGMGenerator on the same images, |ΔPSNR| mean / max: "
                  + "; ".join(f"{record['operators'][k]} {v['mean_abs_psnr_difference']:.3f} / "
                              f"{v['max_abs_psnr_difference']:.3f} dB ({v['images']} images)"
                              for k, v in checks.items()) + ".", ""]
    for name in dict.fromkeys(row["operator"] for row in record["rows"]):
        lines += [f"## {record['operators'][name]}", ""]
        table = [[row["method"], str(row["steps"]), str(row["images"]), _interval(row["psnr"], 2),
                  _interval(row["ssim"], 3), _interval(row["psnr_minus_csgm"], 2), _seconds(row["seconds_per_image"]),
                  _seconds(row["seconds_per_image_batched"])]
                 for row in record["rows"] if row["operator"] == name]
        lines += [markdown_table(["method", "steps", "images", "PSNR (dB)", "SSIM", "ΔPSNR vs CSGM",
                                  "s/image (1 at a time)", "s/image (batched)"], table), ""]
    lines += ["Landscapes:", ""]
    lines += [f"- {record['operators'][k]}: {v['describe']}" for k, v in record["landscapes"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
