"""Benchmark (not a test; written for CUDA, never run on a GPU here): fit throughput, inversion step time and
the default recipe on 1 and K GPUs.

Fit: `landform fit --recipe paper --device cuda` in one process, then under `torchrun --nproc_per_node=K` (each
GPU collects N/K trajectories); throughput is trajectory steps per second over all GPUs, read from the
checkpoint's history. Inversion: seconds per step of the baseline (descent on x) and of the landscape
(descent on z through Θ) for a batch on one GPU, and for the same batch split over K GPUs (K processes,
each inverting its share; the slowest process counts). Recipe: the default `landform fit` (learned start,
learned steps, Θ, tuning) with F under bf16 autocast, in one process and under torchrun with nccl (every stage
data-parallel over the K GPUs), each followed by `landform compare` (`--allow-other-model`: the landscape's
fingerprint of F was taken through autocast); the fit's wall seconds, the world size it records and compare's
headline numbers.

    .venv/bin/python benchmarks/gpu.py --gpus 4              # writes benchmarks/results/gpu.{json,md}
    .venv/bin/python benchmarks/gpu.py --device cpu --gpus 2 --parts recipe --recipe-time 20s  # a CPU dry run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Run by torchrun for the K-GPU inversion: each process inverts its share of the batch on its own device.
INVERT_SCRIPT = '''
import json, os, sys
import torch
from landform import Mapping, invert
from landform.problem import load_problem

rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
problem_spec, mapping_dir, batch, steps, device, autocast, out = sys.argv[1:8]
device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if device == "cuda" else device
problem = load_problem(problem_spec)
forward = problem.forward.to(device) if isinstance(problem.forward, torch.nn.Module) else problem.forward
if autocast != "none":
    from landform.accel import autocast_forward
    forward = autocast_forward(forward, device, autocast)
share = int(batch) // world
y = problem.test_observations(int(batch), torch.Generator().manual_seed(0))[rank * share:(rank + 1) * share]
mapping = Mapping.load(mapping_dir)
times = {}
for name, kwargs in (("baseline", {"x_shape": problem.x_shape, "lr": 0.1}), ("landscape", {"mapping": mapping})):
    invert(forward, problem.loss, y, steps=3, device=device, **kwargs)  # warm-up
    result = invert(forward, problem.loss, y, steps=int(steps), device=device, **kwargs)
    times[name] = result.seconds_per_step
with open(os.path.join(out, f"invert-{rank}.json"), "w") as handle:
    json.dump(times, handle)
'''


def fit_throughput(launcher: list[str], out: Path, args: argparse.Namespace) -> dict:
    command = [*launcher, "fit", "--recipe", "paper", "--problem", args.problem, "--out", str(out), "--device",
               args.device,
               "--rounds", str(args.rounds), "--trajectories", str(args.trajectories), "--steps", str(args.steps),
               "--hidden", str(args.hidden), "--batch-size", str(args.trajectories)]
    if args.autocast != "none":
        command += ["--autocast", args.autocast]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    from landform.fitting import checkpoint_state

    history = checkpoint_state(out)["history"]
    rates = [record["trajectory_steps_per_second"] for record in history]
    rates = rates[1:] or rates
    return {"command": " ".join(command), "wall_seconds": round(time.perf_counter() - started, 2),
            "trajectory_steps_per_second": round(statistics.median(rates), 1)}


def invert_step_time(processes: int, mapping_dir: Path, out: Path, args: argparse.Namespace) -> dict:
    script = out / "invert_script.py"
    script.write_text(INVERT_SCRIPT)
    launcher = [sys.executable] if processes == 1 else [str(BIN / "torchrun"), "--standalone",
                                                        f"--nproc_per_node={processes}"]
    command = [*launcher, str(script), args.problem, str(mapping_dir), str(args.invert_batch),
               str(args.invert_steps), args.device, args.autocast, str(out)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    ranks = [json.loads((out / f"invert-{rank}.json").read_text()) for rank in range(processes)]
    return {name: max(times[name] for times in ranks) for name in ("baseline", "landscape")}


def shown(value: float | None, spec: str) -> str:
    """A number of a summary, formatted; n/a where compare gave none."""
    return "n/a" if value is None else format(value, spec)


RECIPE_KEYS = ("speedup_to_answer", "steps_to_answer_1pct", "speedup_at_20", "improvement_at_200")


def recipe_run(launcher: list[str], out: Path, args: argparse.Namespace) -> dict:
    """The default recipe's fit (every stage on every process under torchrun), then `landform compare` on it."""
    command = [*launcher, "fit", "--problem", args.recipe_problem, "--out", str(out), "--device", args.device,
               "--time", args.recipe_time]
    if args.recipe_autocast != "none":
        command += ["--autocast", args.recipe_autocast]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.device == "cpu" else None
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    wall = time.perf_counter() - started
    record = json.loads((out / "landscape.json").read_text())["record"]
    compare = [str(BIN / "landform"), "compare", "--problem", args.recipe_problem, "--mapping", str(out), "--out",
               str(out.with_name(out.name + "-compare")), "--device", args.device, "--count", str(args.recipe_count),
               "--allow-other-model"]
    run = subprocess.run(compare, capture_output=True, text=True, cwd=ROOT, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(compare)} failed:\n{run.stderr[-3000:]}")
    summary = json.loads((out.with_name(out.name + "-compare") / "summary.json").read_text())["test"]
    return {"command": " ".join(command), "wall_seconds": round(wall, 2), "world_size": record["world_size"],
            "fit_seconds": record["seconds"], "chosen": record["tuning"]["chosen"],
            **{key: summary.get(key) for key in RECIPE_KEYS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=None, help="K (default: every visible GPU)")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run without a GPU")
    parser.add_argument("--problem", default="landform.synthetic:synthetic_problem")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--trajectories", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--autocast", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--invert-batch", type=int, default=1024)
    parser.add_argument("--invert-steps", type=int, default=50)
    parser.add_argument("--parts", nargs="+", default=["throughput", "invert", "recipe"],
                        choices=("throughput", "invert", "recipe"))
    parser.add_argument("--recipe-problem", default="landform.examples.decoder:make_problem")
    parser.add_argument("--recipe-time", default="2m", help="the default recipe's fit --time")
    parser.add_argument("--recipe-autocast", default="bf16", choices=("none", "bf16", "fp16"))
    parser.add_argument("--recipe-count", type=int, default=256, help="compare's test observations")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu"))
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs CUDA (or --device cpu for a smoke run)")
    gpus = args.gpus or (torch.cuda.device_count() if args.device == "cuda" else 2)
    results: dict = {"fit": {}, "invert_seconds_per_step": {}, "recipe": {}}
    torchrun = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={gpus}", "-m", "landform"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tmp / "fit-1"
        if {"throughput", "invert"} & set(args.parts):
            results["fit"]["1"] = fit_throughput([str(BIN / "landform")], one, args)
        if "throughput" in args.parts and gpus > 1:
            results["fit"][str(gpus)] = fit_throughput(torchrun, tmp / f"fit-{gpus}", args)
        for processes in sorted({1, gpus}) if "invert" in args.parts else ():
            folder = tmp / f"invert-{processes}"
            folder.mkdir()
            results["invert_seconds_per_step"][str(processes)] = invert_step_time(processes, one, folder, args)
        if "recipe" in args.parts:
            results["recipe"]["1"] = recipe_run([str(BIN / "landform")], tmp / "recipe-1", args)
            if gpus > 1:
                results["recipe"][str(gpus)] = recipe_run(torchrun, tmp / f"recipe-{gpus}", args)
    report = {"settings": dict(vars(args)), "device": args.device, "gpus": gpus, "results": results,
              "gpu_name": torch.cuda.get_device_name(0) if args.device == "cuda" else None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| devices | fit trajectory steps/s | baseline s/step | landscape s/step |", "|---|---|---|---|"] \
        if {"throughput", "invert"} & set(args.parts) else []
    for count in sorted({1, gpus}) if lines else ():
        fit = results["fit"].get(str(count), {}).get("trajectory_steps_per_second", float("nan"))
        inv = results["invert_seconds_per_step"].get(str(count), {})
        lines.append(f"| {count} x {args.device} | {fit:.0f} | {inv.get('baseline', float('nan')):.2e} | "
                     f"{inv.get('landscape', float('nan')):.2e} |")
    if results["recipe"]:
        lines += [*([""] if lines else []), f"default recipe on {args.recipe_problem}, --time {args.recipe_time}, "
                  f"autocast {args.recipe_autocast}:", "",
                  "| devices | world size recorded | fit wall s | speedup to answer | steps to answer (1%) | "
                  "speedup at 20 | improvement at 200 |", "|---|---|---|---|---|---|---|"]
        for count, run in results["recipe"].items():
            lines.append(f"| {count} x {args.device} | {run['world_size']} | {run['wall_seconds']} | "
                         f"{shown(run['speedup_to_answer'], '.1f')}x | {run['steps_to_answer_1pct']} | "
                         f"{shown(run['speedup_at_20'], '.1f')}x | {shown(run['improvement_at_200'], '+.1%')} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
