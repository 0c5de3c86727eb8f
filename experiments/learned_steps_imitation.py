"""Where the pose task's learned update steps stop short of the answer, and four ways tried to take them further.

In distribution the shipped pose_params landscape ends its five learned steps 1.05x the swept baseline's step-200
loss (the answer), and needs five more steps of descent to get within 1% of it. This study asks why, and whether
the steps train further with more to go on:

- ``diagnose``: how the excess after the steps is spread over the test frames, and whether descent from where
  the steps end reaches the baseline's per-frame loss on the frames that hold most of it;
- ``loss``: the steps as the recipe trains them (the mean loss after each step, weighed k/K), for a fixed
  number of iterations (not seconds: the result does not depend on the machine's load);
- ``imitate``: the same plus a term pulling x_k towards x*, where descent ends on the same training observation
  (Song et al. 2020 supervise their learned body-fitting steps with the true parameters; x* stands in for
  them, so any Problem has one): x* from the learned start (``--star start``) or the baseline's own descent from 0
  (``--star origin``: its basin, where the baseline's answer lies);
- ``secant``: U also sees the previous move and the change of gradient since (quasi-Newton information);
- ``distill``: the learned start (and its error-feedback step) fine-tuned towards the baseline's answers on the
  training observations, then the steps trained from it.

    python experiments/learned_steps_imitation.py --variant diagnose loss secant --threads 1
    python experiments/learned_steps_imitation.py --variant imitate --weight 1 --star start --threads 1

Prints one JSON line per variant (the held-out mean loss after each step as a ratio to the swept baseline's
step-200 loss, on 256 in-distribution and 256 out-of-distribution test frames); the committed lines are
experiments/results/learned_steps_imitation.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from collections.abc import Callable

import torch
from torch import nn

from landform.problem import Problem
from landform.start import RefinedStart
from landform.steps import LearnedSteps, held_out_losses, starts_of
from landform.tuning import baseline_sweep, final_loss

SPLITS = ("in_distribution", "ood")


class SecantSteps(LearnedSteps):
    """Learned steps whose U also sees the previous move and the change of the gradient since (both as unit
    vectors in x's spread units, zero at the first step), inserted before the step index."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        x_dim = math.prod(self.x_shape)
        width = self.body[0].in_features + 2 * x_dim
        self.body[0] = nn.Linear(width, self.hidden)
        self.feature_mean, self.feature_scale = torch.zeros(width), torch.ones(width)
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def _features(self, x, y, forward, loss, k, create_graph):
        features, values, grad = super()._features(x, y, forward, loss, k, create_graph)
        flat = x.reshape(x.shape[0], -1)
        if k == 0 or self.previous is None:
            extra = torch.zeros(x.shape[0], 2 * flat.shape[1])
        else:
            move = (flat - self.previous[0]) / self.move_scale
            change = (grad - self.previous[1]) * self.move_scale
            extra = torch.cat([move / move.norm(dim=1, keepdim=True).clamp_min(1e-30),
                               change / (grad * self.move_scale).norm(dim=1, keepdim=True).clamp_min(1e-30)], 1)
        self.previous = (flat, grad)
        return torch.cat([features[:, :-self.count], extra, features[:, -self.count:]], 1), values, grad

    @torch.no_grad()
    def standardize_with(self, x0, y, forward, loss) -> None:
        super().standardize_with(x0, y, forward, loss)
        columns = slice(-self.count - 2 * math.prod(self.x_shape), -self.count)
        self.feature_mean[columns], self.feature_scale[columns] = 0.0, 1.0  # unit vectors, zero at step 0


def pose_setup(kind: str, pool: int):
    """The pose task of loss ``kind``: its Problem, the shipped landscape, training observations and the test
    observations of each split (256 frames, seeded)."""
    from landform.tasks.pose.load import load_landscape
    from landform.tasks.pose.model import load_vae
    from landform.tasks.pose.problem import observe, pose_problem, split_poses

    vae = load_vae()
    problem = pose_problem(kind, vae)
    train = problem.train_observations(pool, torch.Generator().manual_seed(0))
    tests = {split: observe(kind, vae, split_poses(split, count=256, seed=0)) for split in SPLITS}
    return problem, load_landscape(kind), train, tests


def descend(problem: Problem, x0: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """Where Adam on x from ``x0`` ends after ``steps`` steps, per example (losses summed), in chunks."""
    out = []
    for xa, ya in zip(x0.split(1024), y.split(1024), strict=True):
        x = xa.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            problem.loss(problem.forward(x), ya).sum().backward()
            optimizer.step()
        out.append(x.detach())
    return torch.cat(out)


def train(problem: Problem, steps: LearnedSteps, x_train, y_train, x_val, y_val, *, iterations: int,
          x_star: torch.Tensor | None = None, weight: float = 0.0, batch: int = 256, lr: float = 1e-3) -> None:
    """Adam on Σ_k (k/K) [L(F(x_k), y) / L̄ + weight · |(x_k − x*) / s|² / d] through the unroll (first order,
    as the recipe trains them), the loss scaled by its mean at the start (L̄) so that ``weight`` means the same
    on every task; the weights of the best held-out check (every 100 iterations) are kept."""
    steps.train().requires_grad_(True)
    steps.standardize_with(x_train[:2048], y_train[:2048], problem.forward, problem.loss)
    with torch.no_grad():
        scale = float(problem.loss(problem.forward(x_train[:2048]), y_train[:2048]).mean())
    optimizer = torch.optim.Adam(steps.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    weights = torch.arange(1, steps.count + 1, dtype=torch.float32) / steps.count
    best, best_state = math.inf, None
    for iteration in range(1, iterations + 1):
        pick = torch.randint(x_train.shape[0], (batch,), generator=generator)
        x, y, terms = x_train[pick], y_train[pick], []
        for k in range(steps.count):
            x, _ = steps.step(x, y, problem.forward, problem.loss, k)
            term = problem.loss(problem.forward(x), y).mean() / scale
            if weight and x_star is not None:
                term = term + weight * (((x - x_star[pick]) / steps.move_scale) ** 2).mean()
            terms.append(term)
        objective = (torch.stack(terms) * weights).sum() / weights.sum()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(steps.parameters(), 1.0)
        optimizer.step()
        if iteration % 100 == 0:
            steps.eval()
            value = float(held_out_losses(steps, problem.forward, problem.loss, x_val, y_val)[-1])
            steps.train()
            if value < best:
                best, best_state = value, copy.deepcopy(steps.state_dict())
    if best_state is not None:
        steps.load_state_dict(best_state)
    steps.eval().requires_grad_(False)


def ratios(problem: Problem, start: Callable, steps: LearnedSteps, tests: dict, answers: dict) -> dict:
    """The mean test loss at the start and after each step, as ratios to each split's answer."""
    out = {}
    for split, y in tests.items():
        curve = held_out_losses(steps, problem.forward, problem.loss, starts_of(start, y, "cpu"), y)
        out[split] = [round(float(c) / answers[split], 4) for c in curve]
    return out


def diagnose(problem: Problem, landscape, tests: dict, answers: dict, runs: dict) -> dict:
    """How the excess over the baseline's per-frame step-200 loss is spread after the shipped steps, and whether
    300 more steps of Adam (lr 0.01) from there reach the baseline's loss on the frames that hold most of it."""
    y = tests["in_distribution"]
    baseline = runs["in_distribution"]
    x0 = starts_of(landscape.start_of(problem), y, "cpu")
    x5, rows, _ = landscape.steps.run(x0, y, problem.forward, problem.loss)
    excess = rows[-1] - baseline.losses[-1]
    worst = excess.argsort(descending=True)[: max(1, y.shape[0] // 10)]
    rest = torch.ones_like(excess, dtype=torch.bool)
    rest[worst] = False
    further = descend(problem, x5, y, 300, 0.01)
    with torch.no_grad():
        after = problem.loss(problem.forward(further), y)
    return {"variant": "diagnose", "frames": y.shape[0], "after_steps": round(float(rows[-1].mean()) / answers[
        "in_distribution"], 4), "worst_tenth_share_of_excess": round(float(excess[worst].sum() / excess.clamp_min(
            0).sum()), 3), "frames_below_baseline": int((excess < 0).sum()),
        "worst_tenth": {"after_steps": float(rows[-1][worst].mean()), "baseline_200": float(
            baseline.losses[-1][worst].mean()), "after_300_more": float(after[worst].mean())},
        "after_300_more": round(float(after.mean()) / answers["in_distribution"], 4),
        "distance_to_baseline_x": {"worst_tenth": float((x5[worst] - baseline.x[worst]).norm(dim=1).mean()),
                                   "rest": float((x5[rest] - baseline.x[rest]).norm(dim=1).mean())}}


def distilled_start(problem: Problem, landscape, y_train: torch.Tensor, x_star: torch.Tensor, *, iterations: int,
                    weight: float) -> Callable:
    """The landscape's start and error-feedback step fine-tuned (Adam, lr 1e-4) on the loss plus ``weight`` times
    the squared distance to the baseline's answers ``x_star`` (in their spread's units)."""
    start, refiner = copy.deepcopy(landscape.start), copy.deepcopy(landscape.refiner)
    parts = [m for m in (start, refiner) if m is not None]
    for part in parts:
        part.train().requires_grad_(True)
    full = RefinedStart(start, problem.forward, refiner) if refiner is not None else start
    spread = x_star.std(0)
    with torch.no_grad():
        scale = float(problem.loss(problem.forward(full(y_train[:2048])), y_train[:2048]).mean())
    optimizer = torch.optim.Adam([p for part in parts for p in part.parameters()], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(iterations):
        pick = torch.randint(y_train.shape[0], (256,), generator=generator)
        x = full(y_train[pick])
        objective = problem.loss(problem.forward(x), y_train[pick]).mean() / scale \
            + weight * (((x - x_star[pick]) / spread) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
    for part in parts:
        part.eval().requires_grad_(False)
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pose_params", help="the pose loss (default pose_params)")
    parser.add_argument("--variant", nargs="+", default=["diagnose", "loss"],
                        choices=["diagnose", "loss", "imitate", "secant", "distill"])
    parser.add_argument("--iterations", type=int, default=1800, help="the steps' training iterations (of 256)")
    parser.add_argument("--weight", type=float, default=1.0, help="imitate / distill: the distance term's weight")
    parser.add_argument("--star", choices=["start", "origin"], default="start",
                        help="imitate: x* from the learned start (Adam, lr 0.02, 400 steps) or from 0 (the "
                             "baseline's lr 0.5, 200 steps)")
    parser.add_argument("--shared-rank", type=int, default=0,
                        help="loss / secant: the rank of a preconditioner shared by every example (default 0)")
    parser.add_argument("--pool", type=int, default=8192, help="training observations (default 8192)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem, landscape, pool, tests = pose_setup(args.task, args.pool + 512)
    y_train, y_val = pool[:-512], pool[-512:]
    runs = {split: min(baseline_sweep(problem, y, seed=0, device="cpu").values(), key=final_loss)
            for split, y in tests.items()}
    answers = {split: final_loss(run) for split, run in runs.items()}
    start = landscape.start_of(problem)
    x_train, x_val = starts_of(start, y_train, "cpu"), starts_of(start, y_val, "cpu")
    common = {"task": args.task, "iterations": args.iterations, "answers": answers}

    for variant in args.variant:
        torch.manual_seed(0)
        size = {"hidden": 256, "shared_rank": args.shared_rank}
        if variant == "diagnose":
            shipped = ratios(problem, start, landscape.steps, tests, answers)
            print(json.dumps({**diagnose(problem, landscape, tests, answers, runs), "task": args.task,
                              "shipped_per_step": shipped}), flush=True)
            continue
        line: dict = {"variant": variant, **common, "shared_rank": args.shared_rank}
        if variant in ("loss", "secant"):
            steps = (SecantSteps if variant == "secant" else LearnedSteps)(problem.x_shape, tuple(y_train.shape[1:]),
                                                                           **size)
            train(problem, steps, x_train, y_train, x_val, y_val, iterations=args.iterations)
            line["per_step"] = ratios(problem, start, steps, tests, answers)
        elif variant == "imitate":
            x_star = descend(problem, x_train, y_train, 400, 0.02) if args.star == "start" else \
                descend(problem, torch.zeros_like(x_train), y_train, 200, 0.5)
            steps = LearnedSteps(problem.x_shape, tuple(y_train.shape[1:]), **size)
            train(problem, steps, x_train, y_train, x_val, y_val, iterations=args.iterations, x_star=x_star,
                  weight=args.weight)
            line.update(weight=args.weight, star=args.star, per_step=ratios(problem, start, steps, tests, answers))
        else:  # distill
            x_star = descend(problem, torch.zeros_like(x_train), y_train, 200, 0.5)
            new_start = distilled_start(problem, landscape, y_train, x_star, iterations=args.iterations,
                                        weight=args.weight)
            x_new, x_new_val = starts_of(new_start, y_train, "cpu"), starts_of(new_start, y_val, "cpu")
            steps = LearnedSteps(problem.x_shape, tuple(y_train.shape[1:]), **size)
            train(problem, steps, x_new, y_train, x_new_val, y_val, iterations=args.iterations)
            line.update(weight=args.weight, per_step=ratios(problem, new_start, steps, tests, answers))
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
