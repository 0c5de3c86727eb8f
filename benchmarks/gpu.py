"""Benchmark (not a test; written for CUDA, never run on a GPU here): fit throughput and inversion step time
on 1 and K GPUs.

Fit: `landform fit --device cuda` in one process, then under `torchrun --nproc_per_node=K` (each GPU
collects N/K trajectories); throughput is trajectory steps per second over all GPUs, read from the
checkpoint's history. Inversion: seconds per step of the baseline (descent on x) and of the landscape
(descent on z through Θ) for a batch on one GPU, and for the same batch split over K GPUs (K processes,
each inverting its share; the slowest process counts).

    .venv/bin/python benchmarks/gpu.py --gpus 4              # writes benchmarks/results/gpu.{json,md}
    .venv/bin/python benchmarks/gpu.py --device cpu --gpus 2  # a smoke run of this script without a GPU
"""

from __future__ import annotations

import argparse
import json
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
    command = [*launcher, "fit", "--problem", args.problem, "--out", str(out), "--device", args.device,
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
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu"))
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs CUDA (or --device cpu for a smoke run)")
    gpus = args.gpus or (torch.cuda.device_count() if args.device == "cuda" else 2)
    results: dict = {"fit": {}, "invert_seconds_per_step": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tmp / "fit-1"
        results["fit"]["1"] = fit_throughput([str(BIN / "landform")], one, args)
        if gpus > 1:
            results["fit"][str(gpus)] = fit_throughput(
                [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={gpus}", "-m", "landform"],
                tmp / f"fit-{gpus}", args)
        for processes in sorted({1, gpus}):
            folder = tmp / f"invert-{processes}"
            folder.mkdir()
            results["invert_seconds_per_step"][str(processes)] = invert_step_time(processes, one, folder, args)
    report = {"settings": dict(vars(args)), "device": args.device, "gpus": gpus, "results": results,
              "gpu_name": torch.cuda.get_device_name(0) if args.device == "cuda" else None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| devices | fit trajectory steps/s | baseline s/step | landscape s/step |", "|---|---|---|---|"]
    for count in sorted({1, gpus}):
        fit = results["fit"].get(str(count), {}).get("trajectory_steps_per_second", float("nan"))
        inv = results["invert_seconds_per_step"][str(count)]
        lines.append(f"| {count} x {args.device} | {fit:.0f} | {inv['baseline']:.2e} | {inv['landscape']:.2e} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
