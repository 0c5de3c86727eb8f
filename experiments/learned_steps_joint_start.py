"""Whether the learned start, trained on with the learned steps through the unroll, takes them closer to the answer.

The recipe trains its parts one after the other: the start E(y) for its own loss, then the steps from E's guesses.
Only the loss after the fifth step counts towards "within 1% in 5 steps", and a start that is worse on its own can be
a better place for the steps to begin. This study trains on from the shipped image models (the encoder and
``images-steps``) for a fixed number of iterations (not seconds: the result does not depend on the machine's
load), on the broad observations the steps were trained on, with the steps' objective (the mean loss after each
step, weighed k/K, or after the last alone):

- ``steps``: the steps alone, trained on (the control: what more training of the shipped parts gives);
- ``joint``: the encoder and the steps together, the encoder's guess differentiated through the unroll.

    python experiments/learned_steps_joint_start.py --variant steps --threads 1
    python experiments/learned_steps_joint_start.py --variant joint --threads 1

The committed lines ran from the steps shipped at commit a93cd08 (trained with a constant step size; those shipped
since were trained with a cosine one, so a rerun starts lower). Prints one JSON line per variant: the held-out
mean loss after each step (the 256 validation images the shipped steps were checked on) at the best check, and
the same on 256 MNIST digits (out of distribution).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from landform.steps import LearnedSteps, held_out_losses, starts_of
from landform.tasks.images.data import load_fashion_mnist, load_mnist, seeded_subset
from landform.tasks.images.task import image_problem, load_landscape
from landform.tasks.images.train import STEPS_POOL, broad_observations


def per_step(start: torch.nn.Module, steps: LearnedSteps, problem, y: torch.Tensor) -> list[float]:
    """Mean loss at x_0 ... x_K on ``y`` from ``start``'s guesses."""
    start.eval(), steps.eval()
    x0 = starts_of(start, y, torch.device("cpu"))
    return [round(float(v), 5) for v in held_out_losses(steps, problem.forward, problem.loss, x0, y)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=("steps", "joint"), required=True)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam's step size for the steps")
    parser.add_argument("--start-lr", type=float, default=1e-4, help="... and for the encoder (joint)")
    parser.add_argument("--weights", choices=("linear", "last"), default="linear")
    parser.add_argument("--check-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    problem = image_problem("cpu", fast=True)
    landscape = load_landscape("cpu")
    start, steps = copy.deepcopy(landscape.start), copy.deepcopy(landscape.steps)
    rng = torch.Generator().manual_seed(args.seed)
    train_y = broad_observations(problem.forward, seed=args.seed)(STEPS_POOL, rng)
    val_y = seeded_subset(load_fashion_mnist("val")[0], 256, args.seed)
    ood_y = seeded_subset(load_mnist(), 256, args.seed)
    before = {"val": per_step(start, steps, problem, val_y), "ood": per_step(start, steps, problem, ood_y)}
    print(json.dumps({"variant": "shipped", **before}), flush=True)

    groups = [{"params": list(steps.parameters()), "lr": args.lr}]
    if args.variant == "joint":
        groups.append({"params": list(start.parameters()), "lr": args.start_lr})
    for group in groups:
        for p in group["params"]:
            p.requires_grad_(True)
    optimizer = torch.optim.Adam(groups)
    weights = torch.arange(1, steps.count + 1, dtype=torch.float32)
    if args.weights == "last":
        weights = (weights == steps.count).float()
    best = (before["val"][-1], copy.deepcopy(start.state_dict()), copy.deepcopy(steps.state_dict()), 0)
    curve, began = [(0, before["val"][-1])], time.perf_counter()
    for iteration in range(1, args.iterations + 1):
        steps.train(), start.train(args.variant == "joint")
        pick = torch.randint(train_y.shape[0], (args.batch,), generator=rng)
        y = train_y[pick]
        if args.variant == "joint":
            x0 = start(y)
        else:
            with torch.no_grad():
                x0 = start(y)
        _, losses, _ = steps.run(x0, y, problem.forward, problem.loss)
        objective = (losses[1:].mean(1) * weights).sum() / weights.sum()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        if iteration % args.check_every == 0:
            value = per_step(start, steps, problem, val_y)[-1]
            curve.append((iteration, value))
            print(json.dumps({"iteration": iteration, "val_last": value,
                              "seconds": round(time.perf_counter() - began)}), flush=True)
            if value < best[0]:
                best = (value, copy.deepcopy(start.state_dict()), copy.deepcopy(steps.state_dict()), iteration)
    start.load_state_dict(best[1])
    steps.load_state_dict(best[2])
    after = {"val": per_step(start, steps, problem, val_y), "ood": per_step(start, steps, problem, ood_y)}
    print(json.dumps({"variant": args.variant, "weights": args.weights, "iterations": args.iterations,
                      "batch": args.batch, "lr": args.lr, "start_lr": args.start_lr, "best_iteration": best[3],
                      "seconds": round(time.perf_counter() - began), "curve": curve, "before": before, **after}))


if __name__ == "__main__":
    main()
