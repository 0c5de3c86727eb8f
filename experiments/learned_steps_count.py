"""How many learned steps to run before Adam, and at which step size, on a fitted landscape's start: steps to
within 1% of the swept baseline's step-200 loss and the largest step-over-step rise, for each count of learned
steps and each Adam step size (optionally ramped up over a few steps).

    python experiments/learned_steps_count.py PROBLEM_SPEC FIT_DIR [--out FILE] [--count 512]

FIT_DIR is a ``landform fit`` output folder; its ``steps.safetensors`` (the learned steps, kept or dropped) is
used. The compressed-sensing line of experiments/results/learned_steps_count.json ran on
``landform fit --problem probe_problems:sensing --out DIR --threads 1`` (PYTHONPATH=benchmarks), one thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from landform.io import load_pair
from landform.landscape import Landscape
from landform.metrics import max_rise
from landform.problem import load_problem
from landform.steps import LearnedSteps
from landform.tuning import baseline_sweep, final_loss

ADAM_LRS = (3e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)
WARMUPS = (0, 10, 40)


def adam_curve(problem, x0: torch.Tensor, y: torch.Tensor, lr: float, warmup: int, steps: int) -> torch.Tensor:
    """Mean loss at each of ``steps`` + 1 Adam steps on x from ``x0`` (its step size ramped over ``warmup``)."""
    x = x0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    curve = []
    for step in range(steps + 1):
        losses = problem.loss(problem.forward(x), y)
        curve.append(float(losses.detach().mean()))
        if step == steps:
            break
        optimizer.param_groups[0]["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()
    return torch.tensor(curve, dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem")
    parser.add_argument("fit_dir")
    parser.add_argument("--out", default="experiments/results/learned_steps_count.json")
    parser.add_argument("--count", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem, landscape = load_problem(args.problem), Landscape.load(args.fit_dir)
    state, config = load_pair(Path(args.fit_dir) / "steps.safetensors")
    steps = LearnedSteps.from_config(config["steps"], args.fit_dir)
    steps.load_state_dict(state)
    steps.eval()
    y = problem.test_observations(args.count, torch.Generator().manual_seed(5))
    answer = min(final_loss(run) for run in baseline_sweep(problem, y, seed=0, device="cpu").values())
    target = answer * 1.01
    with torch.no_grad():
        x0 = landscape.start_of(problem)(y)
    rows = []
    for count in range(1, steps.count + 1):
        x_k, losses, _ = steps.run(x0, y, problem.forward, problem.loss, count=count)
        lead = losses.detach().double().mean(1)
        for lr in ADAM_LRS:
            for warmup in WARMUPS:
                curve = torch.cat([lead[:-1], adam_curve(problem, x_k, y, lr, warmup, 200 - count)])
                reached = torch.nonzero(curve <= target)
                rows.append({"learned_steps": count, "lr": lr, "warmup": warmup,
                             "after_learned_steps": float(lead[-1]) / answer,
                             "steps_to_answer_1pct": int(reached[0, 0]) if len(reached) else None,
                             "max_rise": round(max_rise(curve), 4), "final_ratio": float(curve[-1]) / answer})
                print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"problem": args.problem, "observations": args.count, "answer": answer,
                                          "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
