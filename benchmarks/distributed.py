"""Benchmark (not a test): fit throughput on CPU, 1 process x 2 threads against 2 processes x 1 thread
(and 1 process x 1 thread for reference).

Both run the same `landform fit --recipe paper` (the second under `torchrun --nproc_per_node=2`, each process collecting
half of the N trajectories) and report trajectory steps per second, the total over processes, from the
checkpoint's history (median over rounds after the first), plus the wall time of the whole command.

    .venv/bin/python benchmarks/distributed.py          # writes benchmarks/results/distributed.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_fit(launcher: list[str], threads: int, out: Path, fit_args: list[str]) -> dict:
    """Run one fit and read its throughput back from the checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [*launcher, "fit", "--recipe", "paper", "--out", str(out), "--threads", str(threads), *fit_args]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    from landform.fitting import checkpoint_state

    state = checkpoint_state(out)
    rates = [record["trajectory_steps_per_second"] for record in state["history"]]
    seconds = [record["seconds"] for record in state["history"]]
    return {"command": " ".join(command), "world_size": state["world_size"], "wall_seconds": round(wall, 2),
            "trajectory_steps_per_second": round(statistics.median(rates[1:] or rates), 1),
            "round_seconds": round(statistics.median(seconds[1:] or seconds), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed"))
    args = parser.parse_args()
    fit_args = ["--rounds", str(args.rounds), "--trajectories", str(args.trajectories), "--steps", str(args.steps),
                "--hidden", str(args.hidden), "--batch-size", str(args.trajectories)]
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["1 process x 2 threads"] = run_fit([str(BIN / "landform")], 2, Path(tmp) / "one", fit_args)
        results["1 process x 1 thread (reference)"] = run_fit([str(BIN / "landform")], 1, Path(tmp) / "single",
                                                              fit_args)
        results["2 processes x 1 thread"] = run_fit(
            [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "landform"], 1, Path(tmp) / "two",
            fit_args)
    report = {"settings": dict(vars(args)), "results": results, "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "python": platform.python_version(), "machine": platform.machine()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| configuration | trajectory steps/s (all processes) | s per round | wall s (whole command) |",
             "|---|---|---|---|"]
    for name, result in results.items():
        lines.append(f"| {name} | {result['trajectory_steps_per_second']:.0f} | {result['round_seconds']:.2f} | "
                     f"{result['wall_seconds']:.1f} |")
    lines.append("")
    lines.append(f"N = {args.trajectories}, T = {args.steps}, hidden {args.hidden}, {args.rounds} rounds "
                 f"(median over rounds 2-{args.rounds}); {os.cpu_count()} CPUs, load average "
                 f"{load_before[0]:.1f} before the run.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
