"""Benchmark (not a test): Θ's share of an inversion step, and ``fit`` throughput.

For a Problem (``--problem package.module:factory``) it times, per inversion step on a batch:
F's forward+backward alone (the baseline's step), the landscape step (Θ and F), and Θ's own
forward+backward; then runs a few rounds of ``fit`` and reports trajectory steps per second.

    .venv/bin/python benchmarks/overhead.py --problem landform.synthetic:synthetic_problem
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from landform import Mapping, fit, invert
from landform.problem import load_problem


def time_theta(mapping: Mapping, batch: int, repeats: int, base: torch.Tensor | None) -> float:
    """Seconds for one forward+backward of Θ alone on a batch."""
    z = torch.zeros(batch, mapping.z_dim, requires_grad=True)
    start = time.perf_counter()
    for _ in range(repeats):
        x = mapping(z, base) if mapping.additive else mapping(z)
        x.sum().backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="landform.synthetic:synthetic_problem")
    parser.add_argument("--mapping", default=None, help="a fitted Θ; default: a fresh one, hidden 1024")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--fit-rounds", type=int, default=2)
    parser.add_argument("--trajectories", type=int, default=64)
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = load_problem(args.problem)
    x_dim = math.prod(problem.x_shape)
    torch.manual_seed(0)
    mapping = Mapping.load(args.mapping) if args.mapping else \
        Mapping(x_dim, problem.x_shape, hidden=1024, additive=problem.base is not None)
    y = problem.test_observations(args.batch, torch.Generator().manual_seed(0))
    base = problem.base(y) if problem.base is not None else None
    common = {"steps": args.steps, "x_shape": problem.x_shape, "base": problem.base}
    invert(problem.forward, problem.loss, y, **{**common, "steps": 2})  # warm-up
    baseline = invert(problem.forward, problem.loss, y, **common).seconds_per_step
    landscape = invert(problem.forward, problem.loss, y, mapping=mapping, **common).seconds_per_step
    theta = time_theta(mapping, args.batch, args.steps, base)
    started = time.perf_counter()
    history = fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=args.fit_rounds,
                  trajectories=args.trajectories, steps=args.fit_steps, batch_size=args.trajectories,
                  progress=False).history
    fit_seconds = time.perf_counter() - started
    result = {
        "problem": args.problem, "batch": args.batch, "threads": args.threads, "machine": platform.processor()
        or platform.machine(), "torch": torch.__version__, "theta_hidden": mapping.hidden,
        "seconds_per_step": {"baseline_F": baseline, "landscape_theta_and_F": landscape, "theta_alone": theta},
        "theta_share_of_F_step": theta / baseline,
        "landscape_step_over_baseline_step": landscape / baseline,
        "fit": {"rounds": args.fit_rounds, "trajectories": args.trajectories, "steps": args.fit_steps,
                "collect_trajectory_steps_per_second": sum(h.trajectory_steps_per_second for h in history)
                / len(history),
                "trajectory_steps_per_second_with_training": args.fit_rounds * args.trajectories * args.fit_steps
                / fit_seconds},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
