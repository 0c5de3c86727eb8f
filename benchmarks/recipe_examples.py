"""The README's two commands on the example problems: `landform fit` (the fast recipe, no extra flags) and
`landform compare`, and the table of what they give (benchmarks/results/recipe-examples.{json,md}).

    python benchmarks/recipe_examples.py [--threads 1|none] [--out DIR] [--set examples|probes|heldout]
                                         [--only NAME ...]

``--set probes`` runs the same on the probe problems of ``benchmarks/probe_problems.py`` (recipe-probes.*),
``--set heldout`` on the held-out problems of ``benchmarks/heldout_problems.py`` (recipe-heldout.*).

Each problem: fit into a fresh directory (timed), compare on 256 test observations, then the headline numbers
from compare's summary.json, with their 95% bootstrap intervals over examples. Kept beside the table, per problem
(in recipe-SET-curves/): compare's curves and summary, and the fit's log and landscape record, so
that a choice the fit made (a part dropped, a setting chosen) can be read back after the run.
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

from landform.io import write_bytes, write_json
from landform.report import markdown_table

PROBLEMS = {
    "smooth decoder": "landform.examples.decoder:make_problem",
    "renderer with local minima": "landform.examples.renderer:make_problem",
    "synthetic (built in)": "landform.synthetic:synthetic_problem",
}
PROBES = {
    "conv decoder": "probe_problems:conv_decoder",
    "colour decoder": "probe_problems:color_decoder",
    "blob renderer": "probe_problems:blob_renderer",
    "phase retrieval": "probe_problems:phase_retrieval",
    "deblurring": "probe_problems:deblur",
    "physical units": "probe_problems:physical_units",
    "compressed sensing": "probe_problems:sensing",
}
HELD_OUT = {
    "stroke decoder": "heldout_problems:stroke_decoder",
    "box renderer": "heldout_problems:box_renderer",
    "upsampling decoder": "heldout_problems:upsampling_decoder",
    "damped chirps": "heldout_problems:damped_chirps",
    "lit sphere": "heldout_problems:lit_sphere",
    "mlp decoder": "heldout_problems:mlp_decoder",
}
SETS = {"examples": PROBLEMS, "probes": PROBES, "heldout": HELD_OUT}
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LANDFORM = str(Path(sys.executable).with_name("landform"))


def run(argv: list[str], cwd: Path) -> tuple[float, str]:
    """Run a landform command; its wall-clock seconds and its output (a failure stops the benchmark with its
    message)."""
    began = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([LANDFORM, *argv], capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - began, done.stdout


def interval(values: list | None, scale: float = 1.0, digits: int = 1) -> str:
    if not values:
        return ""
    low, high = (("open" if v is None else f"{v * scale:.{digits}f}") for v in values)
    return f" [{low}, {high}]"


def measure(name: str, spec: str, root: Path, threads: list[str], keep: Path) -> dict:
    """Fit and compare one problem; its compare curves (mean loss per step and method) and summary are kept in
    ``keep``/NAME.{csv,json} for plots, the fit's log and its landscape's record (what it kept, dropped and
    chose, and why) in ``keep``/NAME-fit.{log,json}."""
    folder = root / name.split()[0]
    fit_seconds, fit_log = run(["fit", "--problem", spec, "--out", str(folder / "theta"), *threads], root)
    compare_seconds, _ = run(["compare", "--problem", spec, "--mapping", str(folder / "theta"), "--out",
                           str(folder / "cmp"), *threads], root)
    block = json.loads((folder / "cmp" / "summary.json").read_text())["test"]
    keep.mkdir(parents=True, exist_ok=True)
    write_bytes(keep / f"{name.split()[0]}.csv", (folder / "cmp" / "curves.csv").read_bytes())
    write_bytes(keep / f"{name.split()[0]}.json", (folder / "cmp" / "summary.json").read_bytes())
    fitted = json.loads((folder / "theta" / "landscape.json").read_text())
    write_bytes(keep / f"{name.split()[0]}-fit.log", fit_log.encode())
    write_bytes(keep / f"{name.split()[0]}-fit.json", (folder / "theta" / "landscape.json").read_bytes())
    steps = [s for s in block["steps"] if s >= 1]
    ratios = [block["landscape"][block["steps"].index(s)] / block["baseline"][block["steps"].index(s)]
              for s in steps]
    encoder = block["methods"]["encoder_init"]
    learned = fitted["record"]["start"].get("learned_steps") or {}
    return {"problem": spec, "fit_seconds": round(fit_seconds, 1), "compare_seconds": round(compare_seconds, 1),
            "settings": fitted["settings"], "count": block["count"],
            "baseline_steps_to_answer_1pct": block.get("baseline_steps_to_answer_1pct"),
            "steps_to_answer_1pct": block.get("steps_to_answer_1pct"),
            "steps_to_answer_1pct_ci95": block.get("steps_to_answer_1pct_ci95"),
            "steps_to_answer": block.get("steps_to_answer"),
            "speedup_to_answer": block.get("speedup_to_answer"),
            "speedup_to_answer_ci95": block.get("speedup_to_answer_ci95"),
            "max_rise": block.get("max_rise"),
            "encoder_init_steps_to_answer_1pct": encoder.get("steps_to_answer_1pct"),
            "encoder_init_speedup_to_answer": encoder.get("speedup_to_answer"),
            "encoder_init_speedup_to_answer_ci95": encoder.get("speedup_to_answer_ci95"),
            "speedup_at_20": block["speedup_at_20"], "speedup_at_20_ci95": block.get("speedup_at_20_ci95"),
            "wallclock_speedup_at_20": block["wallclock_speedup_at_20"],
            "improvement_at_200": block["improvement_at_200"],
            "improvement_at_200_ci95": block.get("improvement_at_200_ci95"),
            "worst_ratio_to_baseline_from_1": max(ratios), "reported_steps": steps,
            "ms_per_step": {k: round(1e3 * v, 3) for k, v in block["seconds_per_step"].items()},
            "start_ms": block.get("start_ms", {}).get("landscape"),
            "start_dropped": bool(fitted["record"]["start"].get("check", {}).get("dropped")),
            "learned_steps": {"kept": bool(learned.get("kept")), "held_out_per_step": learned.get("held_out_per_step"),
                              "train_seconds": learned.get("seconds"),
                              "again_seconds": (learned.get("again") or {}).get("seconds")},
            "refine": _refine_outcome(fitted["record"]["start"].get("refine"))}


def _refine_outcome(record: dict | None) -> str:
    """What became of the start's error-feedback step: kept, dropped (slower), too little gain, or none trained."""
    if not record:
        return "none"
    if not record.get("candidate"):
        return "too little"
    return "kept" if record.get("kept") else "dropped"


def _steps(value: int | None) -> str:
    return "never" if value is None else str(value)


def _chosen(result: dict) -> str:
    """The tuned inference in a few words: learned steps kept or not, the mode, the start dropped or not."""
    settings = result["settings"]
    lead = f"{settings.get('learned_steps', 0)} learned steps + " if settings.get("learned_steps") else ""
    return lead + settings["mode"] + (" (start dropped)" if result["start_dropped"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1",
                        help="torch threads for every command (default 1), or none: the commands exactly as the "
                             "README writes them, without --threads")
    parser.add_argument("--out", default=str(RESULTS), help="where the table goes")
    parser.add_argument("--set", default="examples", choices=sorted(SETS), help="which problems (default examples)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these problems of the set (by the first word "
                        "of their name: 'compressed', 'deblurring', ...); the table then holds only them")
    args = parser.parse_args()
    problems = SETS[args.set]
    if args.only:
        unknown = set(args.only) - {name.split()[0] for name in problems}
        if unknown:
            parser.error(f"no problem {', '.join(sorted(unknown))} in the set {args.set}")
        problems = {name: spec for name, spec in problems.items() if name.split()[0] in args.only}
    threads = [] if args.threads == "none" else ["--threads", args.threads]
    with tempfile.TemporaryDirectory() as scratch:
        stem = f"recipe-{args.set}"
        keep = Path(args.out) / f"{stem}-curves"
        results = {name: measure(name, spec, Path(scratch), threads, keep) for name, spec in problems.items()}
    rows = [[name, f"{r['fit_seconds'] / 60:.1f} min", _steps(r["baseline_steps_to_answer_1pct"]),
             _steps(r["steps_to_answer_1pct"]) + interval(r["steps_to_answer_1pct_ci95"], digits=0),
             _steps(r["encoder_init_steps_to_answer_1pct"]),
             f"{r['speedup_to_answer']:.1f}x{interval(r['speedup_to_answer_ci95'])}",
             f"{r['encoder_init_speedup_to_answer']:.1f}x{interval(r['encoder_init_speedup_to_answer_ci95'])}",
             f"{100 * r['max_rise']:.1f}%",
             f"{100 * r['improvement_at_200']:+.1f}%{interval(r['improvement_at_200_ci95'], 100)}",
             f"{r['speedup_at_20']:.1f}x",
             f"{r['ms_per_step']['baseline']:.1f} / {r['ms_per_step']['landscape']:.1f} (+{r['start_ms']:.1f} once)",
             _chosen(r)] for name, r in results.items()]
    table = markdown_table(["problem", "fit", "baseline: steps to within 1% of its step-200 loss",
                            "ours: steps to within 1%", "encoder + descent: steps to within 1%",
                            "ours: wall-clock speedup to within 1%", "encoder + descent: speedup to within 1%",
                            "largest step-over-step rise", "improvement at 200", "speedup at 20 (capped at 20)",
                            "ms/step baseline / ours (start)", "inference chosen"],
                           rows)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    only = f" --only {' '.join(args.only)}" if args.only else ""
    note = (f"`python benchmarks/recipe_examples.py --threads {args.threads} --set {args.set}{only}`: "
            f"`landform fit --problem SPEC --out D` "
            f"and `landform compare --problem SPEC --mapping D --out C`, "
            f"{'nothing else' if args.threads == 'none' else 'nothing else but --threads'}; 256 test "
            f"observations each, 95% bootstrap intervals over them; the answer is the swept baseline's mean loss at "
            f"step 200; wall-clock times include the learned start's pass and learned steps; "
            f"{platform.processor() or platform.machine()}, "
            f"load average {' '.join(load)} at the end.")
    out = Path(args.out)
    write_json(out / f"{stem}.json", {"threads": args.threads, "load_average": load, "results": results})
    write_bytes(out / f"{stem}.md", f"{table}\n\n{note}\n".encode())
    print(table)
    print(note)


if __name__ == "__main__":
    main()
