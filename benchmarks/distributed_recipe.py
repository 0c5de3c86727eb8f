"""Benchmark (not a test): the default recipe's `landform fit` on 1 process and on 2 processes (`torchrun
--standalone --nproc_per_node=2`, gloo, 1 thread each), and what each one produces by `landform compare`.

For each problem and process count: the wall seconds of the whole `fit` command; from the landscape's record,
the time each stage took to reach a held-out loss that both fits reach (the learned start's, the learned
steps', Θ's validation score, the worst of the two fits' best values, in seconds since that stage began: since
the fit began for Θ); then `landform compare` on 256 test observations and its summary's `speedup_to_answer`,
`steps_to_answer_1pct`, `speedup_at_20` and `improvement_at_200`. Two processes x one thread use both of this
machine's cores, so the load average before and after every command is recorded beside it. Problems run before
into the same results (``--out``) are kept, so the problems can be run one at a time.

    .venv/bin/python benchmarks/distributed_recipe.py          # writes benchmarks/results/distributed-recipe.*
    .venv/bin/python benchmarks/distributed_recipe.py --problems decoder renderer --time 8m
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROBLEMS = {"decoder": "landform.examples.decoder:make_problem", "renderer": "landform.examples.renderer:make_problem"}
LAUNCHERS = {1: [str(BIN / "landform")],
             2: [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "landform"]}
COMPARED = ("speedup_to_answer", "steps_to_answer_1pct", "speedup_at_20", "improvement_at_200",
            "baseline_steps_to_answer_1pct")


def shown(value: float | None, spec: str) -> str:
    """A number of a summary, formatted; n/a where compare gave none."""
    return "n/a" if value is None else format(value, spec)


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def command(argv: list[str]) -> dict:
    """Run one command with one thread per process; its wall seconds and the load average around it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before, started = load(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return {"command": " ".join(argv), "wall_seconds": round(wall, 1), "load_before": before, "load_after": load(),
            "stdout": done.stdout.strip().splitlines()[-12:]}


def curves(record: dict) -> dict[str, tuple[list[float], list[float]]]:
    """Each stage's held-out values and the seconds at which they were measured (since the stage began; Θ's
    since the fit began, on rank 0's clock)."""
    found = {}
    start = record.get("start", {})
    for name, part in (("start", start), ("learned steps", start.get("learned_steps") or {})):
        if part.get("validation_seconds"):
            found[name] = ([v for _, v in part["validation"]], part["validation_seconds"])
    theta = record.get("theta", {})
    if theta.get("validation_seconds"):
        found["theta (mean log loss over T steps)"] = ([v for _, v in theta["validation"]], theta["validation_seconds"])
    return found


def time_to(values: list[float], seconds: list[float], target: float) -> float | None:
    """The first measured time at which ``values`` is at or below ``target``."""
    return next((round(t, 2) for v, t in zip(values, seconds, strict=True) if v <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["decoder"], choices=sorted(PROBLEMS))
    parser.add_argument("--time", default=None, help="fit --time (default: the recipe's own, 8m)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed-recipe"))
    args = parser.parse_args()
    out = Path(args.out)
    earlier = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    report: dict = {"problems": earlier.get("problems", {}), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "machine": platform.machine(), "time": args.time}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.problems:
            spec, runs = PROBLEMS[name], {}
            for processes, launcher in LAUNCHERS.items():
                fitted, cmp = Path(tmp) / f"{name}-{processes}", Path(tmp) / f"{name}-{processes}-compare"
                fit = command([*launcher, "fit", "--problem", spec, "--out", str(fitted), "--threads", "1",
                               *(["--time", args.time] if args.time else [])])
                record = json.loads((fitted / "landscape.json").read_text())["record"]
                compared = command([str(BIN / "landform"), "compare", "--problem", spec, "--mapping", str(fitted),
                                    "--out", str(cmp), "--threads", "1"])
                summary = json.loads((cmp / "summary.json").read_text())["test"]
                runs[processes] = {"fit": fit, "compare": compared, "world_size": record["world_size"],
                                   "fit_seconds": record["seconds"], "settings": record["tuning"]["chosen"],
                                   "curves": curves(record), "summary": {key: summary.get(key) for key in COMPARED}}
                print(f"{name}, {processes} process(es): fit {fit['wall_seconds']} s, {runs[processes]['summary']}",
                      flush=True)
            reached = {}
            for stage in runs[1]["curves"]:
                if stage not in runs[2]["curves"]:
                    continue
                target = max(min(runs[p]["curves"][stage][0]) for p in (1, 2))
                reached[stage] = {"target": target, **{f"{p} process(es)": time_to(*runs[p]["curves"][stage], target)
                                                       for p in (1, 2)}}
            for run in runs.values():
                run.pop("curves")
            report["problems"][name] = {"runs": {str(p): run for p, run in runs.items()},
                                        "time_to_same_held_out": reached}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| problem | processes | fit wall s | fit s (record) | speedup to answer | steps to answer (1%) | "
             "speedup at 20 | improvement at 200 | chosen settings | load before / after fit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, block in report["problems"].items():
        for processes, run in block["runs"].items():
            summary = run["summary"]
            lines.append(f"| {name} | {processes} | {run['fit']['wall_seconds']} | {run['fit_seconds']} | "
                         f"{shown(summary['speedup_to_answer'], '.1f')}x | {summary['steps_to_answer_1pct']} "
                         f"(baseline {summary['baseline_steps_to_answer_1pct']}) | "
                         f"{shown(summary['speedup_at_20'], '.1f')}x | "
                         f"{shown(summary['improvement_at_200'], '+.1%')} | {run['settings']} | "
                         f"{run['fit']['load_before'][0]} / {run['fit']['load_after'][0]} |")
    lines += ["", "| problem | stage | held-out target (both reach it) | seconds, 1 process | seconds, 2 processes |",
              "|---|---|---|---|---|"]
    for name, block in report["problems"].items():
        for stage, entry in block["time_to_same_held_out"].items():
            lines.append(f"| {name} | {stage} | {entry['target']:.4g} | {entry['1 process(es)']} | "
                         f"{entry['2 process(es)']} |")
    lines += ["", f"`python benchmarks/distributed_recipe.py --problems {' '.join(report['problems'])}"
              f"{' --time ' + args.time if args.time else ''}`: `landform fit --problem SPEC --out D --threads 1` "
              "(1 process) and the same under `torchrun --standalone --nproc_per_node=2 -m landform` (gloo, "
              "OMP_NUM_THREADS=1), then `landform compare --problem SPEC --mapping D --out C --threads 1` (256 test "
              f"observations); {os.cpu_count()} CPUs shared with other jobs: the load averages (1 min) around each "
              "fit are in the table, and the JSON has them for every command."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
