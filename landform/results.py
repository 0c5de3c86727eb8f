"""The result sets of ``invert`` and ``compare`` on a Problem: computed, written through ``landform.io`` and
summarized in one line or one table. The ``landform`` command calls these once its arguments are checked;
they serve a script just as well.
"""

from __future__ import annotations

from pathlib import Path

import torch

from landform.comparison import DEFAULT_MODE, compare, default_methods
from landform.guard import check_finite_losses
from landform.inference import InversionResult
from landform.io import atomic_outputs, save_pair
from landform.landscape import Landscape, landscape_methods, problem_with_start
from landform.mapping import Mapping
from landform.problem import Problem
from landform.report import plot_curves, summary_table, write_curves_csv, write_json

TABLE_STEPS = (0, 1, 2, 5, 10, 20, 200)
COMPARE_FILES = ("curves.csv", "curves.png", "summary.json")
INVERT_FILES = ("inversion.safetensors", "inversion.json", "curve.csv")


def print_table(title: str, block: dict) -> None:
    """The comparison table the CLI prints: the report renderer's table, at the CLI's steps."""
    print(title)
    print(summary_table(block, [s for s in TABLE_STEPS if s in block["steps"]]))


def write_inversion(out: Path, result: InversionResult, config: dict) -> None:
    """``invert``'s outputs, replaced as one set: x, the losses, F(x) (and z) as safetensors with ``config``, the
    loss curve as CSV; and one line that says what it did. A result whose loss turned non-finite is refused,
    nothing written."""
    check_finite_losses(result.losses)
    tensors = {"x": result.x, "losses": result.losses, "y_hat": result.y_hat}
    if result.z is not None:
        tensors["z"] = result.z
    with atomic_outputs(out, list(INVERT_FILES)) as stage:  # the old pair or the new one, never a mix
        save_pair(stage / "inversion.safetensors", tensors, {**config, "seconds_per_step": result.seconds_per_step})
        write_curves_csv(stage / "curve.csv", {"loss": result.losses})
    print(f"inverted {result.x.shape[0]} observations: mean loss {result.losses[0].mean():.4g} -> "
          f"{result.losses[-1].mean():.4g} in {config['steps']} steps ({result.seconds_per_step * 1e3:.2f} "
          f"ms/step); wrote {out / 'inversion.safetensors'}")


def compare_problem(problem: Problem, mapping_path: str | Path | None, out: Path, *, count: int, steps: int,
                    seed: int, device: str | None, optimizer: str = "adam", mode: str | None = None,
                    lr: float = 0.1, observations: torch.Tensor | None = None, landscape: Landscape | None = None,
                    allow_other_model: bool = False, spec: str | None = None) -> dict:
    """Run ``compare`` on ``problem`` (the baseline against the landscape, or against the Θ in
    ``mapping_path``) and write curves.csv, curves.png and summary.json to ``out`` as one set; ``spec``, the
    problem as the user named it, is recorded in the summary (default: the problem's name)."""
    if landscape is not None:
        landscape.check_problem(problem, allow_other_model=allow_other_model)
    y = observations if observations is not None else \
        problem.test_observations(count, torch.Generator().manual_seed(seed))
    y_val = problem.train_observations(count, torch.Generator().manual_seed(seed + 7919))
    if landscape is not None:
        problem = problem_with_start(problem, landscape)
        methods = landscape_methods(landscape)
    else:
        methods = default_methods(problem, Mapping.load(mapping_path), mode=mode or DEFAULT_MODE, lr_z=lr)
    result = compare(problem, y, methods, y_val=y_val, steps=steps, optimizer=optimizer, seed=seed,
                     device=device, progress=True)
    curves = {name: r.losses for name, r in result.results.items()}
    summary = {"problem": problem.name if spec is None else spec, "mapping": str(mapping_path),
               "test": result.summary.as_dict()}
    with atomic_outputs(out, list(COMPARE_FILES)) as stage:  # the old set or the new one
        write_curves_csv(stage / "curves.csv", curves)
        plot_curves(stage / "curves.png", {problem.name: curves})
        write_json(stage / "summary.json", summary)
    print_table(f"{problem.name}: mean loss over {y.shape[0]} test observations", result.summary.as_dict())
    print(f"wrote {', '.join(str(out / name) for name in COMPARE_FILES)}")
    return summary
