"""Scaling curve for the image task's anchored Θ: loss at steps 2, 20 and 200 against trajectory steps fitted.

Evaluates snapshots of one fit of `images-landscape-anchored` (Θ saved at several rounds; round 0 is its
initialization, i.e. x = E(y) + ~0) in the default mode with a fixed δ step size (no sweep, so only Θ
changes), and pure Eq. 3, on validation images disjoint from the demo's.

    .venv/bin/python experiments/images_scaling.py --threads 1 ROUNDS:PATH ... --out report/images/scaling
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from landform import Mapping, invert
from landform.report import save_figure, write_json, write_text
from landform.tasks.images.data import load_fashion_mnist, load_mnist, seeded_subset
from landform.tasks.images.task import LR_Z, load_models

STEPS = (2, 20, 200)


def initial_theta(z_dim: int = 256, seed: int = 0) -> Mapping:
    """Θ as `train_anchored_landscape` initializes it (round 0)."""
    torch.manual_seed(seed)
    mapping = Mapping(z_dim, (64,), hidden=1024, additive=True)
    with torch.no_grad():
        mapping.net[-1].weight.mul_(0.01)
        mapping.net[-1].bias.zero_()
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshots", nargs="+", help="ROUNDS:PATH of saved Θ (round 0 is built here)")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trajectory-steps-per-round", type=int, default=64 * 20)
    parser.add_argument("--out", default="report/images/scaling")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = load_models()
    sets = {"fashion (val)": seeded_subset(load_fashion_mnist("val")[0], 5000, 0)[-2 * args.count:-args.count],
            "mnist": seeded_subset(load_mnist(), 5000, 0)[-2 * args.count:-args.count]}
    snapshots = {0: initial_theta()}
    for item in args.snapshots:
        rounds, path = item.split(":", 1)
        snapshots[int(rounds)] = Mapping.load(path)
    rows = {}
    for rounds, mapping in sorted(snapshots.items()):
        for set_name, images in sets.items():
            for mode in ("residual", "pure"):
                result = invert(models.generator, models.loss, images, mapping=mapping, mode=mode, lr=LR_Z, lr_x=0.3,
                                warmup=20, base=models.encoder, steps=200)
                curve = result.losses.mean(1)
                rows.setdefault(str(rounds), {}).setdefault(set_name, {})[mode] = \
                    {str(s): float(curve[s]) for s in STEPS}
                print(rounds, set_name, mode, [round(float(curve[s]), 4) for s in STEPS], flush=True)
    out = Path(args.out)
    per_round = args.trajectory_steps_per_round
    write_json(out / "scaling.json", {"trajectory_steps_per_round": per_round, "count": args.count, "rows": rows})
    lines = ["# Scaling: the anchored Θ against trajectory steps fitted", "",
             f"`experiments/images_scaling.py`, {args.count} validation images per set, default mode with δ at 0.3 "
             "(warm-up 20) and pure Eq. 3; mean Eq. 5 loss.", "",
             "| rounds | trajectory steps | set | mode | step 2 | step 20 | step 200 |",
             "|---|---|---|---|---|---|---|"]
    for rounds, sets_ in rows.items():
        for set_name, modes in sets_.items():
            for mode, values in modes.items():
                lines.append(f"| {rounds} | {int(rounds) * per_round:,} | {set_name} | {mode} | "
                             + " | ".join(f"{values[str(s)]:.4f}" for s in STEPS) + " |")
    write_text(out / "scaling.md", "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    for axis, set_name in zip(axes[0], sets, strict=True):
        for step in STEPS:
            xs = [int(r) * per_round for r in rows]
            axis.plot(xs, [rows[r][set_name]["residual"][str(step)] for r in rows], "-o", label=f"default, step {step}")
            axis.plot(xs, [rows[r][set_name]["pure"][str(step)] for r in rows], "--x", label=f"Eq. 3, step {step}")
        axis.set_xlabel("trajectory steps fitted")
        axis.set_ylabel("mean loss (Eq. 5)")
        axis.set_yscale("log")
        axis.set_title(set_name)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, out / "scaling.png")


if __name__ == "__main__":
    main()
