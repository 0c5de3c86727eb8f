"""The paper's Table 2 ablation on a Problem: full Algorithm 1, online (no alternation, no buffer),
an untrained random Θ, and the baseline, compared at 20 and 200 steps on the same test observations.

    .venv/bin/python experiments/ablation.py --out experiments/results/ablation-synthetic
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from landform import Mapping, fit, invert, sweep_lr
from landform.problem import load_problem
from landform.report import plot_curves, write_curves_csv, write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="landform.synthetic:synthetic_problem")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results/ablation-synthetic")
    args = parser.parse_args()
    problem = load_problem(args.problem)
    out = Path(args.out)
    x_dim = math.prod(problem.x_shape)
    y = problem.test_observations(args.count, torch.Generator().manual_seed(args.seed))
    y_val = problem.train_observations(args.count, torch.Generator().manual_seed(args.seed + 1))
    curves, seconds = {}, {}
    for method in ("buffer", "online", "random"):
        torch.manual_seed(args.seed)
        mapping = Mapping(x_dim, problem.x_shape, hidden=args.hidden)
        started = time.perf_counter()
        fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=args.rounds,
            trajectories=args.trajectories, steps=args.steps, lr=args.lr, batch_size=args.trajectories,
            method=method, seed=args.seed, progress=False)
        seconds[method] = time.perf_counter() - started
        curves[method] = invert(problem.forward, problem.loss, y, mapping=mapping, steps=200).losses.mean(1)
    best_lr, _ = sweep_lr(problem.forward, problem.loss, y_val, steps=200, x_shape=problem.x_shape)
    curves["baseline"] = invert(problem.forward, problem.loss, y, x_shape=problem.x_shape, steps=200,
                                lr=best_lr).losses.mean(1)
    names = {"buffer": "Full model (Algorithm 1)", "online": "Without AO and buffer", "random": "Random Θ",
             "baseline": f"Baseline (X, lr {best_lr})"}
    table = ["| steps | " + " | ".join(names.values()) + " |", "|---" * 5 + "|"]
    for step in (2, 20, 200):
        table.append(f"| {step} | " + " | ".join(f"{float(curves[m][step]):.4g}" for m in names) + " |")
    text = (f"# Ablation on {args.problem}\n\nMean loss over {args.count} test observations; Θ fitted with "
            f"B={args.rounds}, N={args.trajectories}, T={args.steps}, AdamW lr {args.lr}. Fit seconds: "
            + ", ".join(f"{m} {s:.1f}" for m, s in seconds.items()) + ".\n\n" + "\n".join(table) + "\n")
    write_text(out / "summary.md", text)
    write_json(out / "summary.json", {"losses": {m: {str(s): float(curves[m][s]) for s in (2, 20, 200)}
                                                 for m in names}, "fit_seconds": seconds, "baseline_lr": best_lr})
    write_curves_csv(out / "curves.csv", curves)
    plot_curves(out / "curves.png", {"ablation": {names[m]: c for m, c in curves.items()}})
    print(text)


if __name__ == "__main__":
    main()
