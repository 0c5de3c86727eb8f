"""Draw the README's figure: mean loss against wall-clock time, the baseline against ours, on one example.

It reads what `landform compare` wrote in one folder:

- ``curves.csv``: one row per step, one column per method (the mean loss over the test observations);
- ``summary.json``: ``test.seconds_per_step`` (each method's mean seconds per step), ``test.start_ms`` (the
  learned start's pass, in ms, for the methods that begin there) and the time-to-the-answer numbers.

A method's time at step k is drawn as its start's pass plus k times its mean seconds per step. The dots mark
where each method first gets within 1% of the answer (the baseline's mean loss at step 200); their labels give
the seconds that `compare` measured to that step (``seconds_to_answer_1pct``, ``baseline_seconds_to_answer_1pct``).

    python docs/make_readme_plot.py COMPARE_DIR [--out docs/images/decoder-loss-vs-time.png]

COMPARE_DIR is a folder that `landform compare` wrote, or a path stem X for a pair X.csv + X.json (the per-problem
curves that `benchmarks/recipe_examples.py` keeps).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

METHODS = {"baseline": ("baseline: Adam on x from 0, step size swept", "tab:gray"),
           "landscape": ("ours: the learned landscape's tuned inference", "tab:blue")}
TOLERANCE = 0.01  # "within 1% of the answer", as landform.summary measures it


def read_curves(path: Path) -> dict[str, list[float]]:
    """The mean-loss columns of a curves.csv, by method name."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: [float(row[name]) for row in rows if row[name] != ""] for name in rows[0] if name != "step"}


def seconds_axis(name: str, length: int, test: dict) -> list[float]:
    """Wall-clock seconds at each step of method ``name``: its start's pass, then its mean seconds per step."""
    per_step = float(test["seconds_per_step"][name])
    start = float(test.get("start_ms", {}).get(name, 0.0)) / 1e3
    return [start + step * per_step for step in range(length)]


def first_within(curve: list[float], target: float) -> int | None:
    """The first step whose loss is at most ``target`` (None: never)."""
    return next((step for step, value in enumerate(curve) if value <= target), None)


def measured_seconds(name: str, test: dict) -> float | None:
    """The seconds `compare` measured for ``name`` to within 1% of the answer (None if not recorded)."""
    if name == "baseline":
        return test.get("baseline_seconds_to_answer_1pct")
    return test.get("seconds_to_answer_1pct") if name == "landscape" else None


def inputs(path: Path) -> tuple[Path, Path]:
    """curves.csv and summary.json in folder ``path``, or ``path``.csv and ``path``.json."""
    if path.is_dir():
        return path / "curves.csv", path / "summary.json"
    return path.with_name(path.name + ".csv"), path.with_name(path.name + ".json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_dir", type=Path, help="a folder written by `landform compare`, or a stem X of X.csv "
                        "+ X.json")
    parser.add_argument("--out", type=Path, default=Path("docs/images/decoder-loss-vs-time.png"))
    parser.add_argument("--title", default=None, help="default: the problem named in summary.json")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves_path, summary_path = inputs(args.compare_dir)
    curves = read_curves(curves_path)
    summary = json.loads(summary_path.read_text())
    test = summary["test"]
    last = min(200, len(curves["baseline"]) - 1)
    answer = curves["baseline"][last]
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    for name, (label, colour) in METHODS.items():
        seconds = seconds_axis(name, len(curves[name]), test)
        axis.plot(seconds, curves[name], color=colour, label=label, linewidth=1.8)
        step = first_within(curves[name], answer * (1 + TOLERANCE))
        if step is not None:
            axis.plot([seconds[step]], [curves[name][step]], "o", color=colour, markersize=6)
            measured = measured_seconds(name, test)
            when = seconds[step] if measured is None else measured
            axis.annotate(f"step {step}: {when:.3f} s", (seconds[step], curves[name][step]),
                          textcoords="offset points", xytext=(6, 8), fontsize=8, color=colour)
    axis.axhline(answer * (1 + TOLERANCE), color="black", linestyle=":", linewidth=1,
                 label="within 1% of the answer (the baseline's loss at step 200)")
    axis.set_yscale("log")
    axis.set_xlabel("wall-clock seconds (one CPU thread), the learned start's pass included")
    axis.set_ylabel(f"mean loss over {test.get('count', '?')} test observations")
    title = args.title or summary.get("problem", "").split(":")[0].rsplit(".", 1)[-1]  # the factory's module
    if test.get("speedup_to_answer") is not None:
        title += f": ours gets within 1% of the answer {test['speedup_to_answer']:.1f}x sooner"
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8, loc="upper right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    plt.close(figure)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
