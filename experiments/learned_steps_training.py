"""How the learned update steps train on a fitted landscape's start: the held-out loss after each step, as a ratio
to the swept baseline's step-200 loss (the answer), for one training variant.

    python experiments/learned_steps_training.py PROBLEM_SPEC FIT_DIR NAME SECONDS [key=value ...]

keys: pool (training observations, default 8192), iters, patience, halve (stalls per step-size halving), lr,
batch, hidden, layers, count, second (1: backpropagate through the gradients the steps are fed, 0: first order),
rank (the preconditioner's low-rank part), project (U reads the residual and the observation through a fixed
random projection to this many numbers each), seed (U's initial weights and the minibatches), schedule (Adam's step
size over the budget: a name of ``landform.steps.SCHEDULES``, default constant). Lines with other objectives, not
adopted, ran with options since removed: logobj-300 (each step's mean loss weighed on a log scale) with commit
034c771's ``objective=log``; colour-last and colour-uniform (the loss after the last step alone; every step's
weighed 1) with commit 558497a's ``weights=last`` and ``weights=uniform``; ups-mem-300 (the steps fed the last move
and the gradient's change over it) with commit c3baf3e's ``memory=1``.
Prints one JSON line (append it to experiments/results/learned_steps_training.jsonl).

The conv-decoder lines (batch256, batch64: the minibatch rule of ``landform.steps.affordable_batch``) ran on a
start fitted by ``learn(load_problem("probe_problems:conv_decoder"), DIR, seconds=150, learned_steps=False)``
(PYTHONPATH=benchmarks), one thread, beside one other single-thread job (load 2 on 2 cores). The upsampling-600s
line ran on the start of ``landform fit --problem heldout_problems:upsampling_decoder --out FIT --threads 1``
(the default 8-minute fit; its own steps trained 1,439 iterations of 32 in 118 s), with ``pool=38324 batch=32
second=0``: the fit's observations, minibatch and first order, for five times the time; ups-mem-300 and
ups-nomem-300 on the same start for 300 s, beside one other single-thread job. The mlp-* lines ran on the start
of ``landform fit --problem heldout_problems:mlp_decoder --out FIT --threads 1`` with ``pool=65536 batch=128
second=0`` (and ``project=64``), two at a time.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch

import landform.steps as steps_module
from landform.landscape import Landscape
from landform.problem import load_problem
from landform.recipe import VALIDATION_SIZE
from landform.start import observation_pool
from landform.steps import LearnedSteps, held_out_losses, starts_of, train_steps
from landform.stopping import EarlyStopping
from landform.tuning import baseline_sweep, final_loss


class ProjectedSteps(LearnedSteps):
    """Learned steps that read the residual and the observation through a fixed random projection to ``size``
    numbers each (U's first layer then scales with ``size``, not with the observation's size)."""

    def __init__(self, x_shape, y_shape, size: int, **kwargs) -> None:
        super().__init__(x_shape, y_shape, **kwargs)
        x_dim, self.y_dim = math.prod(self.x_shape), math.prod(self.y_shape)
        width = 2 * x_dim + 2 + 2 * size + self.count
        self.body[0] = torch.nn.Linear(width, self.hidden)
        self.feature_mean, self.feature_scale = torch.zeros(width), torch.ones(width)
        self.register_buffer("projection", torch.randn(self.y_dim, size, generator=torch.Generator().manual_seed(7))
                             / math.sqrt(self.y_dim))

    def _features(self, *args, **kwargs):
        features, values, grad = super()._features(*args, **kwargs)
        head, residual, y, index = features.split(
            [features.shape[1] - 2 * self.y_dim - self.count, self.y_dim, self.y_dim, self.count], dim=1)
        return torch.cat([head, residual @ self.projection, y @ self.projection, index], dim=1), values, grad


def step_milliseconds(module: LearnedSteps, problem, x0: torch.Tensor, y: torch.Tensor) -> float:
    """Milliseconds per learned step on a batch of 256 (the median of five runs of all K steps)."""
    times = []
    for _ in range(5):
        began = time.perf_counter()
        module.run(x0[:256], y[:256], problem.forward, problem.loss)
        times.append((time.perf_counter() - began) / module.count * 1e3)
    return sorted(times)[2]


def main() -> None:
    torch.set_num_threads(1)
    spec, fit_dir, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    opts = dict(arg.split("=", 1) for arg in sys.argv[5:])
    problem, landscape = load_problem(spec), Landscape.load(fit_dir)
    pool = observation_pool(problem.train_observations, torch.Generator().manual_seed(0),
                            int(opts.get("pool", 8192)) + VALIDATION_SIZE)
    train, val = pool[:-VALIDATION_SIZE], pool[-VALIDATION_SIZE:]
    test = problem.test_observations(512, torch.Generator().manual_seed(123))
    answer = min(final_loss(run) for run in baseline_sweep(problem, test, seed=0, device="cpu").values())
    start = landscape.start_of(problem)
    x_train, x_val, x_test = (starts_of(start, y, "cpu") for y in (train, val, test))

    class Stopping(EarlyStopping):  # the variant's halving rule
        def __init__(self, *args, **kwargs) -> None:
            kwargs["halve_every"] = int(opts.get("halve", 2))
            super().__init__(*args, **kwargs)

    steps_module.EarlyStopping = Stopping
    seed = int(opts.get("seed", 0))
    torch.manual_seed(seed)
    sizes = {"hidden": int(opts.get("hidden", 256)), "layers": int(opts.get("layers", 2)),
             "count": int(opts.get("count", 5)), "rank": int(opts["rank"]) if "rank" in opts else None}
    module = (ProjectedSteps(problem.x_shape, tuple(train.shape[1:]), int(opts["project"]), **sizes)
              if "project" in opts else LearnedSteps(problem.x_shape, tuple(train.shape[1:]), **sizes))
    began = time.perf_counter()
    training = train_steps(module, problem.forward, problem.loss, x_train, train, x_val, val, seconds=seconds,
                           max_iterations=int(opts.get("iters", 100000)), patience=int(opts.get("patience", 10)),
                           lr=float(opts.get("lr", 1e-3)), batch_size=int(opts.get("batch", 256)), progress=False,
                           create_graph=opts.get("second", "1") == "1", schedule=opts.get("schedule", "constant"),
                           seed=seed)
    curve = held_out_losses(module, problem.forward, problem.loss, x_test, test)
    print(json.dumps({"variant": name, "problem": spec, "opts": opts, "answer": answer,
                      "iterations": training.iterations, "seconds": round(time.perf_counter() - began),
                      "stopped": training.stopped,
                      "validation_ratio": [(i, round(v / answer, 4)) for i, v in training.validation[::3]],
                      "test_ratio_per_step": [round(float(c) / answer, 4) for c in curve],
                      "ms_per_learned_step": round(step_milliseconds(module, problem, x_test, test), 2)}))


if __name__ == "__main__":
    main()
