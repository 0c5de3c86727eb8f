"""Writing results: curves as CSV and PNG, summaries as JSON and markdown. Every write is atomic."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping as MappingType
from pathlib import Path

import torch

from landform.metrics import as_curve

Curves = MappingType[str, torch.Tensor]


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file and a rename, so a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj: object) -> Path:
    """Atomic, indented JSON."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


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
    """Save a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=dpi, **savefig_kwargs)
    plt.close(figure)
    os.replace(tmp, path)
    return path


def plot_curves(path: str | Path, panels: MappingType[str, Curves],
                hlines: MappingType[str, MappingType[str, float]] | None = None,
                ylabel: str = "mean loss", log: bool = True) -> Path:
    """Loss against step, one panel per entry of ``panels`` (the paper's Fig. 3), log-scaled y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for axis, (title, curves) in zip(axes[0], panels.items(), strict=True):
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


def summary_table(block: dict, steps: list[int] | None = None) -> str:
    """A markdown table of baseline and landscape loss at ``steps`` from a ``compare.summarize`` block."""
    steps = steps or block["steps"]
    index = [block["steps"].index(s) for s in steps]
    lines = ["| method | " + " | ".join(f"step {s}" for s in steps) + " | s/step |",
             "|---" * (len(steps) + 2) + "|"]
    for method in ("baseline", "landscape"):
        values = " | ".join(f"{block[method][i]:.4g}" for i in index)
        lines.append(f"| {method} | {values} | {block['seconds_per_step'][method]:.2e} |")
    lines.append("")
    lines.append(f"speedup at 20: {block['speedup_at_20']:.2f}x; improvement at step {block['steps'][-1]}: "
                 f"{100 * block['improvement_at_200']:.1f}%; baseline lr {block.get('baseline_lr')} "
                 f"(swept), {block['count']} examples")
    return "\n".join(lines)
