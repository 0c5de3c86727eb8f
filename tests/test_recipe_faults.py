"""The default recipe under faults: ``landform fit`` (start, learned steps, Θ, tuning) SIGKILLed at random
moments, each time followed by ``fit --resume``, must end with a landscape that loads and, with the time budget
off, the same artifact as an uninterrupted fit (weights byte for byte, the record apart from its timings), or
refuse in one line with exit status 2."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from landform import Landscape

LANDFORM = str(Path(sys.executable).with_name("landform"))
PROBE = '''
from landform.synthetic import synthetic_problem


def problem():
    return synthetic_problem()
'''
# the default recipe, tiny: ~15 s on one thread, the budget off so that a seed reproduces it
ARGS = ["--problem", "recipe_probe:problem", "--time", "off", "--rounds", "10", "--trajectories", "16", "--steps", "4",
        "--start-steps", "100", "--threads", "1", "--seed", "3"]
KILLS = 8


def _timeless(value):
    """The record without what a clock measured (seconds, per-step milliseconds): what must reproduce."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items()
                if not (k == "seconds" or k.endswith(("validation_seconds", "ms_per_step")))}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _start(out: Path, env: dict, log: Path, resume: bool) -> subprocess.Popen:
    with log.open("a") as handle:
        return subprocess.Popen([LANDFORM, "fit", *ARGS, "--out", str(out), *(["--resume"] if resume else [])],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)


def _refusal(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.startswith("landform: ")]
    return lines[-1] if lines else log.read_text()[-2000:]


def _same_artifact(out: Path, reference: Path) -> None:
    """``out``'s landscape loads and checks, and equals the reference: its weights byte for byte, its record
    apart from the timings."""
    Landscape.load(out)
    assert (out / "landscape.safetensors").read_bytes() == (reference / "landscape.safetensors").read_bytes()
    got, want = (json.loads((folder / "landscape.json").read_text()) for folder in (out, reference))
    assert _timeless(got) == _timeless(want)


def test_random_kills_of_the_default_fit_resume_to_the_uninterrupted_artifact(tmp_path):
    """SIGKILL at KILLS seeded random moments (each up to 70% of the uninterrupted fit's duration after the
    attempt's start: late phases are reached because a resume reuses the parts saved); after each kill the fit
    is resumed. A fit that ends before its kill is compared, and the next kill starts a fresh fit elsewhere."""
    (tmp_path / "recipe_probe.py").write_text(PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}
    reference, log = tmp_path / "reference", tmp_path / "stderr.log"
    began = time.monotonic()
    whole = _start(reference, env, tmp_path / "reference.log", resume=False)
    assert whole.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    duration = time.monotonic() - began

    moments = random.Random(20261206)
    kills, fits, resume = 0, 0, False
    out = tmp_path / "killed-0"
    while True:
        process = _start(out, env, log, resume=resume)
        try:
            status = process.wait(timeout=moments.uniform(0.5, 0.7 * duration) if kills < KILLS else 300)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            status = process.wait(timeout=60)
            if status == -signal.SIGKILL:
                kills, resume = kills + 1, True
                continue
            # it ended on its own between the timeout and the kill: checked as a finished fit
        assert "Traceback" not in log.read_text()
        if status == 2:  # a clean refusal: one line
            assert _refusal(log).startswith("landform: "), _refusal(log)
        else:
            assert status == 0, log.read_text()[-3000:]
            _same_artifact(out, reference)
        fits += 1
        if kills >= KILLS:
            break
        out, resume = tmp_path / f"killed-{fits}", False
    assert kills == KILLS


def test_a_kill_between_a_rounds_commit_and_its_score_resumes_to_the_same_selection(tmp_path):
    """Θ's selection is scored after its round's checkpoint: a resume from a round whose score was not saved
    scores it then, and keeps the best Θ found before the kill, so the artifact equals the uninterrupted one."""
    from landform.recipe import learn
    from landform.selection import SELECTION_FILE
    from landform.synthetic import synthetic_problem

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command's --threads 1: fast on a busy machine
    try:
        problem = synthetic_problem()
        tiny = {"seconds": float("inf"), "trajectories": 16, "steps": 4, "start_steps": 30, "pool_size": 2048,
                "seed": 3, "progress": False, "log": lambda _: None}
        learn(problem, tmp_path / "whole", rounds=10, **tiny)
        learn(problem, tmp_path / "cut", rounds=5, **tiny)
        for path in tmp_path.joinpath("cut").glob(f"{SELECTION_FILE}-000005.*"):  # killed before round 5's score
            path.unlink()
        learn(problem, tmp_path / "cut", rounds=10, resume=True, **tiny)
        _same_artifact(tmp_path / "cut", tmp_path / "whole")
    finally:
        torch.set_num_threads(threads)
