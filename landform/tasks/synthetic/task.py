"""``landform demo synthetic``: Algorithm 1 on the built-in problem, then the comparison every report makes."""

from __future__ import annotations

from pathlib import Path

import torch

from landform.comparison import DEFAULT_MODE, compare, default_methods
from landform.fitting import fit
from landform.io import atomic_outputs
from landform.mapping import Mapping
from landform.report import plot_curves, write_curves_csv, write_json
from landform.synthetic import synthetic_problem

PROBLEM = "landform.synthetic:synthetic_problem"
COUNT = 256  # test observations (and as many validation ones for the baseline's sweep)
STEPS = 200  # inversion steps


def demo(out: Path, *, device: str = "cpu", seed: int = 0, progress: bool = True) -> dict:
    """Fit Θ (resumable, in ``out/fit``), then baseline against landscape on ``COUNT`` test observations;
    writes curves.csv, curves.png and summary.json to ``out`` and returns the summary."""
    out = Path(out)
    problem = synthetic_problem()
    fit_dir = out / "fit"
    torch.manual_seed(seed)
    mapping = Mapping(problem.x_shape[0], problem.x_shape, hidden=256)
    fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=60, trajectories=256, steps=20,
        lr=1e-3, checkpoint_dir=fit_dir, resume=True, seed=seed, device=device, progress=progress)
    mapping = Mapping.load(fit_dir)  # the committed checkpoint, as `landform compare --mapping` reads it
    y = problem.test_observations(COUNT, torch.Generator().manual_seed(seed))
    y_val = problem.train_observations(COUNT, torch.Generator().manual_seed(seed + 7919))
    result = compare(problem, y, default_methods(problem, mapping, mode=DEFAULT_MODE), y_val=y_val, steps=STEPS,
                     seed=seed, device=device, progress=progress)
    curves = {name: r.losses for name, r in result.results.items()}
    summary = {"problem": PROBLEM, "mapping": str(fit_dir), "test": result.summary.as_dict()}
    with atomic_outputs(out, ["curves.csv", "curves.png", "summary.json"]) as stage:  # the old set or the new one
        write_curves_csv(stage / "curves.csv", curves)
        plot_curves(stage / "curves.png", {problem.name: curves})
        write_json(stage / "summary.json", summary)
    return summary
