"""Writing results: curves as CSV and PNG, summaries as JSON and markdown. Every write is atomic."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping as MappingType
from pathlib import Path

import torch

from landform.metrics import as_curve

Curves = MappingType[str, torch.Tensor]


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically through the io module (a crash leaves no half file; under
    torchrun only rank 0 writes)."""
    from landform.io import write_bytes

    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj: object) -> Path:
    """Atomic, indented, strict JSON: NaN and Infinity, which strict parsers reject, are written as null."""
    from landform.io import write_json as write_strict_json

    return write_strict_json(path, obj, sort_keys=False)


def write_curves_csv(path: str | Path, curves: Curves) -> Path:
    """One row per step, one column per named curve (mean over examples if given [steps, batch])."""
    columns = {name: as_curve(curve) for name, curve in curves.items()}
    length = max(len(c) for c in columns.values())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["step", *columns])
    for step in range(length):
        writer.writerow([step, *(f"{float(c[step]):.6g}" if step < len(c) else "" for c in columns.values())])
    return write_text(path, buffer.getvalue())


def save_figure(figure, path: str | Path, dpi: int = 110, **savefig_kwargs) -> Path:
    """Save a matplotlib figure (PNG unless ``format`` says otherwise) atomically through the io module, and
    close it."""
    import matplotlib.pyplot as plt

    from landform.io import write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, **{"format": "png", **savefig_kwargs})
    plt.close(figure)
    return write_bytes(path, buffer.getvalue())


MAX_COLUMNS = 4


def plot_curves(path: str | Path, panels: MappingType[str, Curves],
                hlines: MappingType[str, MappingType[str, float]] | None = None,
                ylabel: str = "mean loss", log: bool = True) -> Path:
    """Loss against step, one panel per entry of ``panels`` (the paper's Fig. 3), log-scaled y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(panels), MAX_COLUMNS)  # more panels wrap onto further rows
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, (title, curves) in zip(axes.flat, panels.items(), strict=False):
        for name, curve in curves.items():
            values = as_curve(curve).numpy()
            axis.plot(range(len(values)), values, label=name, linewidth=1.8)
        for index, (name, value) in enumerate((hlines or {}).get(title, {}).items()):
            axis.axhline(value, linestyle="--", color=f"C{len(curves) + index}", label=name)
        axis.set_title(title)
        axis.set_xlabel("optimization step")
        axis.set_ylabel(ylabel)
        if log:
            axis.set_yscale("log")
            axis.set_xscale("symlog", linthresh=10)
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)


METHOD_KEYS = ("baseline", "encoder_init", "landscape", "landscape_pure")


def _methods_in(block: dict) -> list[str]:
    """The methods whose curves a summary block holds: the known ones first, in a fixed order."""
    named = [m for m in METHOD_KEYS if m in block]
    others = [m for m in block.get("methods", {}) if m not in named and m in block]
    return named + others


def format_interval(values: list | None, percent: bool = False) -> str:
    """A ``*_ci95`` interval as " [low, high]" ("open" for an end never reached), in percent if asked;
    "" when there is none. Every report writes intervals with this."""
    if not values:
        return ""
    return " [" + ", ".join("open" if v is None else (f"{100 * v:.1f}" if percent else f"{v:.3g}")
                            for v in values) + "]"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A plain markdown table: floats to 4 significant digits, None as an empty cell (the paper suite's
    tables; ``summary_table`` renders a comparison)."""
    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _steps_cell(value, interval) -> str:
    return ("never" if value is None else str(value)) + format_interval(interval)


def summary_table(block: dict, steps: list[int] | None = None) -> str:
    """The one table renderer (markdown, also what the CLI prints): every method's mean loss at ``steps``
    with its seconds per step, then each method's time to the answer (the baseline's step-200 loss) against
    the baseline, with 95% bootstrap intervals over examples, and the capped speedup at 20 beside it.
    ``block`` is a ``compare.summarize_methods`` block."""
    steps = [s for s in (steps or block["steps"]) if s in block["steps"]]
    index = [block["steps"].index(s) for s in steps]
    seconds = block.get("seconds_per_step", {})
    lines = ["| method | " + " | ".join(f"step {s}" for s in steps) + " | ms/step |",
             "|---" * (len(steps) + 2) + "|"]
    for method in _methods_in(block):
        values = " | ".join(f"{block[method][i]:.4g}" for i in index)
        timing = f"{1e3 * seconds[method]:.1f}" if method in seconds else ""
        lines.append(f"| {method} | {values} | {timing} |")
    lines.append("")
    stats = {"landscape": block} if "speedup_at_20" in block else {}
    stats.update(block.get("methods", {}))
    count = block.get("count")
    final = block.get("final_step", 200)
    baseline_seconds = block.get("baseline_seconds_to_answer_1pct")
    lines.append(f"Time to the answer (the baseline's step-{final} loss; baseline lr {block.get('baseline_lr')}, "
                 f"swept, within 1% of it at step {_steps_cell(block.get('baseline_steps_to_answer_1pct'), None)}"
                 + (f", {baseline_seconds:.3g} s" if baseline_seconds is not None else "") + ")"
                 + (f", {count} examples" if count else "") + "; [95% bootstrap interval over examples]:")
    lines.append("")
    header = ["method", "steps to within 1%", "steps to the answer", "seconds to within 1%",
              "speedup to within 1% (wall-clock)", "largest rise", f"at step {final}", "speedup at 20 (capped)"]
    rows = []
    for method, values in stats.items():
        if "speedup_at_20" not in values:
            continue
        seconds_1pct = values.get("seconds_to_answer_1pct")
        speedup = values.get("speedup_to_answer")
        within = _steps_cell(values.get("steps_to_answer_1pct"), values.get("steps_to_answer_1pct_ci95"))
        rows.append([method, within,
                     _steps_cell(values.get("steps_to_answer"), None),
                     "never" if seconds_1pct is None else f"{seconds_1pct:.3g}",
                     "" if speedup is None else
                     f"{speedup:.1f}x{format_interval(values.get('speedup_to_answer_ci95'))}",
                     f"{100 * values.get('max_rise', 0.0):.1f}%",
                     f"{100 * values['improvement_at_200']:+.1f}%"
                     f"{format_interval(values.get('improvement_at_200_ci95'), percent=True)}",
                     f"{values['speedup_at_20']:.1f}x"])
    if rows:
        lines.append(markdown_table(header, rows))
    return "\n".join(lines)
