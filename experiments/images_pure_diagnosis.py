"""What limits pure Eq. 3 (x = Θ(z), z from 0) against the baseline on the image task: range, step size or budget.

For each Θ given (the shipped images-landscape, the paper-budget fit so far, ...) and Fashion-MNIST test images
(in distribution) and MNIST (OOD), it measures:

- the baseline (Adam on w from the mean w, lr ``--lr-x``) and pure Eq. 3 (Adam on z from 0, lr 0.1 and the
  ``--lr-z`` alternatives) at steps 20 / 200;
- **range**: z* = argmin_z |Θ(z) − w_b|² (Adam from z = 0, ``--fit-steps`` steps, F not involved), the point of Θ's
  range nearest the baseline's end point w_b; its residual relative to |w_b − mean w|, and the loss there,
  L(F(Θ(z*)), y), against the baseline's: if Θ's range holds the baseline's solutions, Eq. 3's deficit is the
  landscape or the step size, not the range;
- **reach**: |z*| against |z_200| of Eq. 3 (how far z must travel, and how far 200 steps of Adam at lr 0.1 took it);
- Eq. 3 continued from z* for 200 steps (does descent in Z keep the baseline's solution, or leave it?).

Means over images with 95% bootstrap intervals.

    .venv/bin/python experiments/images_pure_diagnosis.py --threads 1 --count 12 \
        r80:r80 paper-r500:landform/zoo/images-landscape --out report/paper/diagnosis

(``r80``: the 80-round pure Θ shipped before the paper-budget one, ``git show
18bb03a~1:landform/zoo/images-landscape.safetensors > r80.safetensors``, and the same for ``.json``.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from landform import Mapping, invert
from landform.metrics import bootstrap_ci
from landform.report import format_interval, markdown_table, write_json, write_text
from landform.tasks.images.data import load_fashion_mnist, load_mnist, seeded_subset
from landform.tasks.images.task import LR_Z, load_models


def mean_ci(values: torch.Tensor) -> dict:
    """Mean over images and its 95% bootstrap interval."""
    table = values.detach().double().reshape(1, -1)
    return {"mean": float(table.mean()), "ci95": bootstrap_ci(lambda curve: float(curve[0]), table, seed=0)}


def text(entry: dict, digits: int = 3) -> str:
    return f"{entry['mean']:.{digits}f}{format_interval(entry['ci95'])}"


def preimage(theta: Mapping, target: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """z* = argmin |Θ(z) − target|², Adam from z = 0 (each image on its own: the loss is summed)."""
    z = torch.zeros(target.shape[0], theta.z_dim, requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (theta(z) - target).pow(2).sum().backward()
        optimizer.step()
    return z.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("thetas", nargs="+", help="NAME:PATH of pure Θ (a zoo stem or a fit's checkpoint folder)")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr-x", type=float, default=0.5, help="the baseline's step size (the sweep's choice)")
    parser.add_argument("--lr-z", type=float, nargs="*", default=[0.03, 0.3], help="Eq. 3 step sizes besides 0.1")
    parser.add_argument("--fit-steps", type=int, default=1000, help="Adam steps of the preimage fit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="report/paper/diagnosis")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    models = load_models()
    forward, loss = models.generator, models.loss
    sets = {"in_distribution": seeded_subset(load_fashion_mnist("test")[0], args.count, 7),
            "ood": seeded_subset(load_mnist(), args.count, 7)}
    results: dict = {"settings": vars(args), "thetas": {}}
    rows = []
    for split, y in sets.items():
        baseline = invert(forward, loss, y, init=models.mean_start(y), lr=args.lr_x, steps=args.steps)
        w_b = baseline.x.detach()
        spread = (w_b - models.mean_start(y)).norm(dim=1)
        results.setdefault("baseline", {})[split] = {"loss_20": mean_ci(baseline.losses[20]),
                                                    f"loss_{args.steps}": mean_ci(baseline.losses[-1])}
        for spec in args.thetas:
            name, path = spec.split(":", 1)
            theta = Mapping.load(Path(path).expanduser())
            entry: dict = {"path": path, "config": theta.config()}
            for lr in (LR_Z, *args.lr_z):
                run = invert(forward, loss, y, mapping=theta, lr=lr, steps=args.steps)
                entry[f"eq3_lr{lr}"] = {"loss_20": mean_ci(run.losses[20]),
                                        f"loss_{args.steps}": mean_ci(run.losses[-1]),
                                        "z_norm": mean_ci(run.z.norm(dim=1))}
            z_star = preimage(theta, w_b, args.fit_steps, 0.05)
            with torch.no_grad():
                reached = theta(z_star)
                at_star = loss(forward(reached), y)
            residual = (reached - w_b).norm(dim=1) / spread
            continued = invert(forward, loss, y, mapping=theta, lr=LR_Z, steps=args.steps, init=z_star)
            entry.update({"range_residual": mean_ci(residual), "loss_at_preimage": mean_ci(at_star),
                          "preimage_z_norm": mean_ci(z_star.norm(dim=1)),
                          f"eq3_from_preimage_loss_{args.steps}": mean_ci(continued.losses[-1])})
            results["thetas"].setdefault(name, {})[split] = entry
            base = results["baseline"][split]
            rows.append([name, split, text(base[f"loss_{args.steps}"]),
                         text(entry[f"eq3_lr{LR_Z}"][f"loss_{args.steps}"]),
                         " / ".join(text(entry[f"eq3_lr{lr}"][f"loss_{args.steps}"]) for lr in args.lr_z),
                         text(entry["range_residual"]), text(entry["loss_at_preimage"]),
                         text(entry[f"eq3_from_preimage_loss_{args.steps}"]),
                         f"{text(entry['preimage_z_norm'], 1)} vs {text(entry[f'eq3_lr{LR_Z}']['z_norm'], 1)}"])
            print(rows[-1], flush=True)
    results["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    write_json(out / "summary.json", results)
    steps = args.steps
    markdown = markdown_table(
        ["Θ", "split", f"baseline @{steps}", f"Eq. 3 @{steps} (lr 0.1)",
         f"Eq. 3 @{steps} (lr {' / '.join(map(str, args.lr_z))})", "range residual ‖Θ(z*) − w_b‖ / ‖w_b − w̄‖",
         "loss at Θ(z*)", f"Eq. 3 from z*, @{steps}", "‖z*‖ vs ‖z_200‖ (Eq. 3)"], rows)
    write_text(out / "summary.md", f"# What limits pure Eq. 3: range, step size, reach\n\nWritten by "
               f"`experiments/images_pure_diagnosis.py` ({args.threads} thread(s), {args.count} images per split, "
               f"{results['seconds'] / 60:.1f} min).\n\n{markdown}\n\nMean over images [95% bootstrap interval]. "
               "z* is the preimage under Θ of the baseline's end point w_b (Adam from 0, F not involved).\n")
    print(markdown)


if __name__ == "__main__":
    main()
