"""Which parts of a landscape transfer between deepinv operators, and does landform reach CSGM's 2,500-step
quality if it runs longer? (experiments/results/deepinv_part_transfer.{json,md})

    python experiments/deepinv_part_transfer.py --threads 1

Reuses the landscapes `benchmarks/deepinv_solvers.py` fitted (its cache: the Fashion-MNIST GAN's at 480 s with
learned steps, the MNIST VAE's at 180 s; run the benchmark first) and its committed results for CSGM's 2,500 steps
on the same 256 test images and measurements, so no landscape is fitted and no CSGM runs here. Per generator and
operator, each variant's tuned inference after each of ``STEPS`` (0 to 200), PSNR paired against CSGM's 2,500
steps:

- ``refit``: the operator's own landscape (the benchmark's ``landform`` row, reproduced: checked at 10 steps);
- ``fitted once``: the landscape fitted with no operator (the benchmark's ``landform (identity)``);
- ``refit, S from once`` for each part S (start, learned steps, Θ) the two have in common: the operator's
  landscape with that part of the once-fitted one (its settings kept; the once-fitted steps run their own
  count); ``once, start refit``: the once-fitted landscape led by the operator's start, where the two
  landscapes' settings differ (where both descend on δ alone at one step size, as the GAN's do, it is the same
  composition as ``refit, steps from once``).

A part that reads the measurements (the start; the learned steps, which read y and the residual) is swapped only
where the operator's measurements are images (blur, inpainting); Θ (z to x) is swapped under every operator.
The rows past 20 steps tell a miss of speed (landform gets there later) from a miss of quality (it never gets there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from deepinv_solvers import (
    CSGM_STEPS,
    GENERATOR_LABELS,
    GENERATORS,
    LABELS,
    OPERATORS,
    ImageSpace,
    bootstrap,
    make_physics,
    scores,
)

from landform.errors import LandformError
from landform.integrations.deepinv import measure, problem_from_physics
from landform.io import write_bytes, write_json
from landform.recipe import Landscape
from landform.report import markdown_table
from landform.tasks import runs_dir
from landform.tasks.images.data import seeded_subset

ROOT = Path(__file__).resolve().parents[1]
# Each generator's landscapes (the benchmark's cache folder suffix) and its committed results.
SOURCES = {"fashion-gan": ("-480s-steps", ROOT / "benchmarks/results/deepinv-n256-fit480s-t1.json"),
           "mnist-vae": ("-180s-steps", ROOT / "benchmarks/results/deepinv-mnist-vae-n256-fit180s-t1.json")}
STEPS = (0, 5, 10, 20, 50, 100, 200)
CHECKED_STEPS = 10  # the refit row at this step count is compared with the benchmark's own
BATCH = 256


def cached_landscape(prefix: str, name: str, suffix: str) -> Landscape:
    """The benchmark's cached landscape for operator ``name``; a one-line error where it is absent."""
    directory = runs_dir() / "deepinv-landscapes" / f"{prefix}{name}{suffix}"
    if not (directory / "landscape.json").exists():
        raise LandformError(f"no landscape in {directory}: run benchmarks/deepinv_solvers.py first (see its "
                            "results' command)")
    return Landscape.load(directory)


def variants(refit: Landscape, once: Landscape, images_measured: bool) -> dict[str, tuple[Landscape, bool]]:
    """The variants to run: name -> (landscape, posed in image space). See the module docstring."""
    out = {"refit": (refit, False), "fitted once": (once, not images_measured)}
    uses_theta = refit.settings.mode != "start"
    if uses_theta:
        out["refit, Θ from once"] = (refit.with_(mapping=once.mapping), False)
    if images_measured:
        out["refit, start from once"] = (refit.with_(start=once.start, refiner=once.refiner), False)
        if once.steps is not None:
            count = once.settings.learned_steps
            out["refit, steps from once"] = (refit.with_(steps=once.steps, settings=replace(
                refit.settings, learned_steps=count)), False)
        if once.settings != refit.settings:  # else it is "refit, steps from once" again
            out["once, start refit"] = (once.with_(start=refit.start, refiner=refit.refiner), False)
    return out


def psnr_after(landscape: Landscape, problem: Any, generator: torch.nn.Module, y: torch.Tensor,
               truth: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-image PSNR of G(x) after ``steps`` steps of the landscape's tuned inference."""
    images = []
    for chunk in y.split(BATCH):
        with warnings.catch_warnings():  # a once-fitted part under another operator: used on purpose
            warnings.simplefilter("ignore")
            x = landscape.invert(chunk, problem, steps=steps, allow_other_model=True).x
        with torch.no_grad():
            images.append(generator(x))
    return scores(torch.cat(images), truth)["psnr"]


def study(generator_name: str, log) -> dict[str, Any]:
    """Every variant on every operator for one generator."""
    suffix, results_file = SOURCES[generator_name]
    committed = json.loads(results_file.read_text())
    generator, latent, data = GENERATORS[generator_name](log)
    prefix = "" if generator_name == "fashion-gan" else f"{generator_name}-"
    truth = seeded_subset(data[1], committed["count"], committed["seed"])
    once = cached_landscape(prefix, "identity", suffix)
    rows, csgm_psnr, landscapes = [], {}, {"identity": once.describe()}
    for index, name in enumerate(OPERATORS):
        physics = make_physics(name)
        y = measure(physics, truth, seed=committed["seed"] * 1000 + index)
        reference = {(r["method"], r["steps"]): torch.tensor(r["per_image_psnr"]) for r in committed["rows"]
                     if r["operator"] == name}
        csgm = reference["csgm", CSGM_STEPS]
        csgm_psnr[name] = bootstrap(csgm)
        refit = cached_landscape(prefix, name, suffix)
        landscapes[name] = refit.describe()
        images_measured = y.shape[1:] == truth.shape[1:]
        image_space = ImageSpace(physics)
        for label, (landscape, in_image_space) in variants(refit, once, images_measured).items():
            operator = image_space if in_image_space else physics
            observed = physics.A_dagger(y) if in_image_space else y
            problem = problem_from_physics(operator, generator, latent_shape=(latent,),
                                           name=f"deepinv-{prefix}{name}", data=data)
            for steps in STEPS:
                psnr = psnr_after(landscape, problem, generator, observed, truth, steps)
                row = {"generator": generator_name, "operator": name, "variant": label, "steps": steps,
                       "psnr": bootstrap(psnr), "psnr_minus_csgm": bootstrap(psnr - csgm)}
                if label == "refit" and steps == CHECKED_STEPS:
                    row["max_abs_difference_to_benchmark"] = float(
                        (psnr - reference["landform", steps]).abs().max())
                rows.append(row)
            log(f"{generator_name} {name}: {label} done")
    return {"rows": rows, "count": committed["count"], "csgm_psnr": csgm_psnr, "landscapes": landscapes,
            "benchmark": str(results_file.relative_to(ROOT))}


def render(record: dict[str, Any]) -> str:
    """The study's markdown: one table per generator, ΔPSNR against CSGM's 2,500 steps by step count."""
    counts = " / ".join(str(part["count"]) for part in record["generators"].values())
    lines = ["# Which parts of a landscape transfer between deepinv operators", "",
             f"`{record['command']}`: {counts} test images per operator, "
             f"{record['threads']} thread(s), {record['seconds'] / 60:.1f} min. ΔPSNR (dB) paired against CSGM's "
             "2,500 steps (from the benchmark's committed results on the same images and measurements), "
             "[95% bootstrap interval over images]. *refit*: the operator's own landscape; *fitted once*: the "
             "landscape fitted with no operator (compressed sensing posed in image space, y' = A†y); *refit, S "
             "from once*: the operator's landscape with part S of the once-fitted one; *once, start refit*: the "
             "once-fitted landscape led by the operator's start (shown where the two landscapes' settings differ; "
             "where both descend on δ alone at one step size, as the GAN's do, it is the same composition as "
             "*refit, steps from once*). Parts that read the measurements are swapped only under blur and "
             "inpainting.", ""]
    for generator, part in record["generators"].items():
        lines += [f"## {GENERATOR_LABELS[generator]}", ""]
        lines += [f"- {LABELS[name]}: {text}" for name, text in part["landscapes"].items()]
        checks = [r["max_abs_difference_to_benchmark"] for r in part["rows"] if "max_abs_difference_to_benchmark"
                  in r]
        lines += ["", f"The refit rows reproduce the benchmark's at {CHECKED_STEPS} steps within "
                  f"{max(checks):.3g} dB (largest per-image difference).", ""]
        header = ["operator", "CSGM 2,500 steps (dB)", "variant", *[f"Δ at {s}" for s in STEPS]]
        table = []
        for name in OPERATORS:
            labels = dict.fromkeys(r["variant"] for r in part["rows"] if r["operator"] == name)
            for label in labels:
                cells = {r["steps"]: r["psnr_minus_csgm"] for r in part["rows"]
                         if r["operator"] == name and r["variant"] == label}
                csgm = part["csgm_psnr"][name]
                table.append([LABELS[name], f"{csgm[0]:.2f}", label,
                              *[f"{cells[s][0]:+.2f} [{cells[s][1]:+.2f}, {cells[s][2]:+.2f}]" for s in STEPS]])
        lines += [markdown_table(header, table), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--generators", nargs="+", choices=tuple(SOURCES), default=list(SOURCES))
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {line}", file=sys.stderr, flush=True)

    try:
        generators = {name: study(name, log) for name in args.generators}
    except LandformError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = {"command": " ".join(["python", "experiments/deepinv_part_transfer.py", *(argv or sys.argv[1:])]),
              "threads": args.threads, "steps": list(STEPS), "seconds": time.perf_counter() - started,
              "generators": generators}
    write_json(args.out / "deepinv_part_transfer.json", record)
    write_bytes(args.out / "deepinv_part_transfer.md", render(record).encode())
    print(render(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
