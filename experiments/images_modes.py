"""Every inference variant we tried on the image task, on in-distribution, MNIST and unseen image sets.

Issue 8 asks for inference that is never worse than descent on X, chosen by measurement. This script runs
each variant on the same images (disjoint from the demo's: the last ``--count`` of each set's seeded
permutation, Fashion-MNIST from the validation split) and writes report/images/variants/.

    .venv/bin/python experiments/images_modes.py --threads 1 --count 24
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from landform import Mapping, invert
from landform.report import plot_curves, write_json, write_text
from landform.tasks.images.data import (
    HELD_OUT_PHOTOS,
    faces,
    load_fashion_mnist,
    load_mnist,
    photo_crops,
    seeded_subset,
)
from landform.tasks.images.task import LR_Z, load_models

STEPS_SHOWN = (0, 1, 2, 5, 10, 20, 50, 100, 200)


def image_sets(count: int) -> dict[str, torch.Tensor]:
    """The probe's images: never the demo's (which takes the first images of the same permutations)."""
    return {"fashion (val)": seeded_subset(load_fashion_mnist("val")[0], 5000, 0)[-count:],
            "mnist": seeded_subset(load_mnist(), 5000, 0)[-count:],
            "photos (held out)": photo_crops(HELD_OUT_PHOTOS, count, 1234),
            "faces (LFW)": faces(200, 0)[-count:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--anchored", default=None, help="an additive Θ for x = E(y) + Θ(z) (issue 15); "
                                                          "'zoo' for the shipped images-landscape-anchored")
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--out", default="report/images/variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = load_models()
    anchored = (models.anchored if args.anchored == "zoo" else Mapping.load(args.anchored)) if args.anchored else None
    g, loss = models.generator, models.loss
    mean_w = g.w_mean.detach().cpu()

    def mean_start(y):
        return mean_w.expand(y.shape[0], -1)

    def baseline(lr):
        return lambda y: invert(g, loss, y, lr=lr, init=mean_start(y).clone(), steps=args.steps)

    def encoder_init(lr):
        return lambda y: invert(g, loss, y, lr=lr, base=models.encoder, x_shape=(64,), steps=args.steps)

    def landscape(mapping, mode, lr_x=0.1, starts=(), base=None, **kw):
        return lambda y: invert(g, loss, y, mapping=mapping, mode=mode, lr=LR_Z, lr_x=lr_x,
                                starts=[s(y) for s in starts], base=base, steps=args.steps, **kw)

    variants = {
        "baseline lr 0.5": baseline(0.5), "baseline lr 0.1": baseline(0.1),
        "encoder_init lr 0.5": encoder_init(0.5), "encoder_init lr 0.1": encoder_init(0.1),
        "encoder_init lr 0.05": encoder_init(0.05),
        "pure (Eq. 3)": landscape(models.mapping, "pure"),
        "residual lr_x 0.1": landscape(models.mapping, "residual"),
        "residual lr_x 0.05": landscape(models.mapping, "residual", 0.05),
        "residual lr_x 0.5": landscape(models.mapping, "residual", 0.5),
        "handoff@10 lr_x 0.1": landscape(models.mapping, "handoff", handoff=10),
        "residual + start {mean w}": landscape(models.mapping, "residual", starts=(mean_start,)),
        "residual + start {mean w, E(y)}": landscape(models.mapping, "residual",
                                                     starts=(mean_start, models.encoder)),
    }
    if anchored is not None:
        variants.update({
            "anchored pure": landscape(anchored, "pure", base=models.encoder),
            "anchored residual lr_x 0.1": landscape(anchored, "residual", base=models.encoder),
            "anchored residual lr_x 0.05": landscape(anchored, "residual", 0.05, base=models.encoder),
            "anchored residual + start {mean w}": landscape(anchored, "residual", starts=(mean_start,),
                                                            base=models.encoder),
            "anchored residual lr_x 0.3": landscape(anchored, "residual", 0.3, base=models.encoder),
            "anchored residual + start {E(y)} moving z": landscape(anchored, "residual", starts=(models.encoder,),
                                                                   base=models.encoder, from_start="both"),
            "anchored residual lr_x 0.2": landscape(anchored, "residual", 0.2, base=models.encoder),
            "anchored residual lr_x 0.1 warmup 20": landscape(anchored, "residual", 0.1, base=models.encoder,
                                                              warmup=20),
            "anchored residual lr_x 0.3 warmup 20": landscape(anchored, "residual", 0.3, base=models.encoder,
                                                              warmup=20),
            "anchored residual lr_x 0.5 warmup 20": landscape(anchored, "residual", 0.5, base=models.encoder,
                                                              warmup=20),
            "anchored handoff@10 lr_x 0.1": landscape(anchored, "handoff", base=models.encoder, handoff=10),
            "anchored handoff@10 lr_x 0.3": landscape(anchored, "handoff", 0.3, base=models.encoder, handoff=10),
        })
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    out = Path(args.out)
    results: dict = {}
    previous = out / "variants.json"
    if previous.exists():
        results = json.loads(previous.read_text()).get("sets", {})
    for set_name, images in image_sets(args.count).items():
        curves = {}
        for name, run in variants.items():
            started = time.perf_counter()
            result = run(images)
            curve = result.losses.mean(1)
            results.setdefault(set_name, {})[name] = {
                "curve": [float(curve[s]) for s in STEPS_SHOWN if s <= args.steps],
                "seconds_per_step": result.seconds_per_step, "evaluations": result.evaluations,
                "start_counts": None if result.start is None else torch.bincount(result.start).tolist()}
            curves[name] = result.losses
            print(f"{set_name:18s} {name:38s} " + " ".join(f"{v:.3f}" for v in results[set_name][name]["curve"])
                  + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        plot_curves(out / f"variants_{set_name.split()[0]}.png", {set_name: curves}, ylabel="mean loss (Eq. 5)")
    write_report(out, results, args.count, "the shipped images-landscape-anchored" if args.anchored else None)


def write_report(out: Path, results: dict, count: int, anchored: str | None) -> None:
    """variants.json and variants.md from the per-set results."""
    write_json(out / "variants.json", {"count": count, "steps": list(STEPS_SHOWN), "sets": results,
                                       "anchored": anchored})
    lines = [f"# Inference variants on the image task ({count} images per set)", "",
             "Written by `experiments/images_modes.py`; mean Eq. 5 loss at each step. Variants named 'anchored' "
             "use images-landscape-anchored (x = E(y) + Θ(z) [+ δ]); the others the paper's images-landscape "
             "(x = Θ(z) [+ δ]).", ""]
    for set_name, rows in results.items():
        lines += [f"## {set_name}", "", "| variant | " + " | ".join(f"{s}" for s in STEPS_SHOWN) + " |",
                  "|---" * (len(STEPS_SHOWN) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in row["curve"]) + " |" for name, row in rows.items()]
        lines.append("")
    write_text(out / "variants.md", "\n".join(lines))

if __name__ == "__main__":
    main()
