"""`landform fit` under torchrun (2 processes, gloo on CPU). The paper's Θ: both ranks end with the same Θ, rank 0
alone writes the checkpoint, a kill-and-resume under torchrun equals the uninterrupted distributed run, a
different number of processes is refused, and the distributed Θ is as good as a single-process one. The default
recipe: every stage runs on both ranks, which end with the same landscape; a rank killed by SIGKILL leaves the
last committed checkpoint and the saved start and steps whole, the fit resumes with 2 processes and is refused
with 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import forked_cli
import pytest
import torch
from safetensors.torch import load_file

from landform import Mapping, invert, learned_parts
from landform.distributed import Context
from landform.fitting import checkpoint_rounds, checkpoint_state
from landform.io import Checkpoint, load_pair, save_pair
from landform.landscape import Landscape, landscape_methods
from landform.synthetic import synthetic_problem

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TORCHRUN = str(BIN / "torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.skipif(not (BIN / "torchrun").exists() or not torch.distributed.is_available(),
                                reason="needs torchrun and torch.distributed")

# Runs under torchrun: fit() itself joins the process group; every rank saves the Θ it ends with.
SCRIPT = '''
import gc, os, signal, sys

import torch
from safetensors.torch import save_file

import landform.io.fs as lfs
from landform import Mapping, fit
from landform.synthetic import synthetic_problem

rank = int(os.environ["RANK"])
out, rounds, resume, thetas = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume", sys.argv[4]
real = lfs.change

def logged(op, *args):  # who touches the checkpoint directory
    with open(os.path.join(thetas, "ops.log"), "a") as handle:
        handle.write(f"{rank} {op}\\n")
    return real(op, *args)

lfs.change = logged
torch.set_num_threads(1)
problem = synthetic_problem()
forward, kill_at, calls = problem.forward, int(os.environ.get("KILL_AT_CALL", "0")), [0]

def killable(x):  # rank 1 dies by SIGKILL at its kill_at-th call of F
    calls[0] += 1
    if rank == 1 and calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return forward(x)

torch.manual_seed(0)
mapping = Mapping(16, (16,), hidden=32)
fit(mapping, killable, problem.loss, problem.train_observations, rounds=rounds, trajectories=32, steps=5,
    lr=1e-3, batch_size=16, seed=5, checkpoint_dir=out, resume=resume, progress=False)
assert not torch.distributed.is_initialized()  # fit left the group it joined (a live gloo group can abort at exit)
# fit freed its DDP wrapper itself: nothing of it is left for the collector to free as the interpreter exits,
# when a gloo worker thread dropping its last work can abort the process ("terminate called without an
# active exception").
gc.set_debug(gc.DEBUG_SAVEALL)
gc.collect()
assert not gc.garbage, sorted({type(item).__name__ for item in gc.garbage})
gc.garbage.clear()
gc.set_debug(0)
save_file(mapping.state_dict(), os.path.join(thetas, f"theta-rank{rank}.safetensors"))
'''


def _torchrun(argv, cwd, env=None, timeout=300, console_script=False):
    """``torchrun --standalone --nproc_per_node=2 ARGV``: its launcher forked from the test's forkserver (torch
    already imported; its two workers are fresh processes, as always), or the real console script."""
    argv = ["--standalone", "--nproc_per_node=2", *argv]
    if console_script:
        return subprocess.run([TORCHRUN, *argv], capture_output=True, text=True, cwd=cwd, env=env or ENV,
                              timeout=timeout)
    return forked_cli.run(argv, env or ENV, cwd, timeout=timeout, program="torchrun")


def _fit(tmp_path, name, rounds, resume=False, **env):
    out, thetas = tmp_path / name, tmp_path / f"{name}-thetas"
    thetas.mkdir(exist_ok=True)
    script = tmp_path / "fit_script.py"
    script.write_text(SCRIPT)
    run = _torchrun([str(script), str(out), str(rounds), "resume" if resume else "new", str(thetas)], tmp_path,
                    {**ENV, **env})
    return run, out, thetas


def test_two_processes_end_identical_rank0_alone_writes_and_a_killed_run_resumes_exactly(tmp_path):
    run, whole, thetas = _fit(tmp_path, "whole", rounds=4)
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = (load_file(str(thetas / f"theta-rank{rank}.safetensors")) for rank in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # bitwise the same Θ on both ranks
    writers = {line.split()[0] for line in (thetas / "ops.log").read_text().splitlines()}
    assert writers == {"0"}  # rank 1 never touched the checkpoint directory
    state = checkpoint_state(whole)
    assert state["world_size"] == 2 and checkpoint_rounds(whole) == 4
    assert (whole / "LATEST").read_text().strip() == "ckpt-000004"
    assert json.loads((whole / "ckpt-000004" / "mapping.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (whole / "ckpt-000004").iterdir()) == [
        "manifest.json", "mapping.json", "mapping.safetensors", "rank-0.safetensors", "rank-1.safetensors",
        "state.json", "state.safetensors"]

    # Each round calls F 5 times to collect and 10 times to train: rank 1 dies in the middle of round 3.
    run, killed, _ = _fit(tmp_path, "killed", rounds=4, KILL_AT_CALL=str(2 * 15 + 7))
    assert run.returncode != 0
    assert checkpoint_rounds(killed) == 2
    run, resumed, resumed_thetas = _fit(tmp_path, "killed", rounds=4, resume=True)
    assert run.returncode == 0, run.stderr[-3000:]
    for rank in (0, 1):
        again = load_file(str(resumed_thetas / f"theta-rank{rank}.safetensors"))
        assert all(torch.equal(again[k], rank0[k]) for k in rank0)  # equals the uninterrupted distributed run
    assert torch.equal(Mapping.load(resumed).net[0].weight, Mapping.load(whole).net[0].weight)

    # One process cannot continue what two began: one line, exit status 2, the checkpoint untouched.
    before = {p.name: p.read_bytes() for p in (whole / "ckpt-000004").iterdir()}
    single = forked_cli.run(["fit", "--recipe", "paper", "--out", str(whole), "--resume", "--rounds", "5",
                             "--trajectories", "32", "--steps", "5", "--hidden", "32", "--batch-size", "16",
                             "--seed", "5"], ENV, timeout=300)
    assert single.returncode == 2
    assert single.stderr.strip().count("\n") == 0 and "fitted by 2 process(es)" in single.stderr
    assert {p.name: p.read_bytes() for p in (whole / "ckpt-000004").iterdir()} == before


def test_the_readme_torchrun_command_then_compare_and_quality_against_one_process(tmp_path):
    """The documented command of the paper's Θ (README.md or docs/, wherever the scale-out section lives), run
    from the repository root as written (with small settings), then
    `landform compare` on its Θ. The distributed Θ must invert as well as a single-process Θ fitted on the
    same total number of trajectories: within 20% at step 20. The two differ only in which random
    trajectories they collect and how each batch is split, and on this problem different seeds move the
    step-20 loss by about 5%; 20% leaves room for that and still fails if the ranks trained on their own
    (half the data each) or if DDP did not average."""
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    command = next(line.strip() for document in documents for line in document.read_text().splitlines()
                   if line.strip().startswith("torchrun --standalone --nproc_per_node=2 landform fit")
                   and "--recipe paper" in line)
    small = "--rounds 20 --trajectories 128 --hidden 128 --batch-size 128 --threads 1"
    argv = command.replace("DIR", str(tmp_path / "dist")).replace("...", small).split()
    assert argv[:4] == ["torchrun", "--standalone", "--nproc_per_node=2", "landform"], command
    run = _torchrun(argv[3:], ROOT, console_script=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert checkpoint_state(tmp_path / "dist")["world_size"] == 2

    single = forked_cli.run(["fit", "--recipe", "paper", "--out", str(tmp_path / "single"), *small.split()], ENV,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    compared = forked_cli.run(["compare", "--mapping", str(tmp_path / "dist"), "--out", str(tmp_path / "cmp"),
                               "--count", "64"], ENV, timeout=600)
    assert compared.returncode == 0, compared.stderr[-3000:]
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())["test"]
    at_20 = summary["steps"].index(20)
    assert summary["landscape"][at_20] < summary["baseline"][at_20] and summary["speedup_at_20"] >= 1

    problem = synthetic_problem()
    y = problem.test_observations(256, torch.Generator().manual_seed(11))

    def loss_at_20(mapping):
        return invert(problem.forward, problem.loss, y, mapping=mapping, steps=20).losses.mean(1)[20].item()

    torch.manual_seed(0)
    untrained = loss_at_20(Mapping(16, (16,), hidden=128))
    dist, one = loss_at_20(Mapping.load(tmp_path / "dist")), loss_at_20(Mapping.load(tmp_path / "single"))
    assert one < 0.5 * untrained and dist < 0.5 * untrained
    assert dist <= 1.2 * one, (dist, one)


def test_trajectories_must_split_evenly(tmp_path):
    run = _torchrun(["landform", "fit", "--recipe", "paper", "--out", str(tmp_path / "odd"), "--trajectories", "33",
                     "--rounds", "1",
                     "--hidden", "8", "--threads", "1"], ROOT)
    assert run.returncode != 0
    assert "must be multiples of 2" in run.stderr
    shutil.rmtree(tmp_path / "odd", ignore_errors=True)


def test_only_rank_0_writes_files(tmp_path, monkeypatch):
    """Zoo entries, results and pairs that task trainers write after fit: rank 0 only, never a race."""
    from landform.io import save_pair

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    save_pair(tmp_path / "x.safetensors", {"a": torch.zeros(2)}, {"k": 1})
    assert not any(tmp_path.iterdir())
    monkeypatch.setenv("RANK", "0")
    save_pair(tmp_path / "x.safetensors", {"a": torch.zeros(2)}, {"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.safetensors"]


# The default recipe under torchrun, through the CLI: each rank reports a digest of the landscape it returned.
# Small validation sets, shorter validation runs and few training steps (checked every 50) keep the fit to
# seconds; with a budget of minutes, nothing in it depends on the machine's speed.
RECIPE_SCRIPT = '''
import functools, hashlib, json, os, sys

import torch

from landform import learned_parts, recipe, start, steps, tuning
from landform.cli import main

rank, report = int(os.environ["RANK"]), sys.argv[1]
recipe.TUNE_COUNT, tuning.REPORT_HORIZON = 16, 60
learned_parts.train_start = functools.partial(start.train_start, check_every=50)
learned_parts.train_steps = functools.partial(steps.train_steps, check_every=50)
learn = recipe.learn


def reported(*args, **kwargs):
    landscape = learn(*args, **{**kwargs, "start_steps": 100, "pool_size": 2048})
    tensors, config = landscape.state()
    digest = hashlib.sha256(json.dumps(config["settings"], sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].contiguous().numpy().tobytes())
    with open(os.path.join(report, f"rank-{rank}.json"), "w") as handle:
        json.dump({"digest": digest.hexdigest(), "world_size": landscape.record["world_size"]}, handle)
    return landscape


recipe.learn = reported
sys.exit(main(["fit", *sys.argv[2:]]))
'''

# The synthetic problem, whose F kills rank 1 (SIGKILL) at its first call once Θ's checkpoint holds KILL_ROUND
# rounds: mid-fit, with a committed checkpoint and the saved start and learned steps behind it.
KILLABLE = '''
import os, signal
from pathlib import Path

from landform.synthetic import synthetic_problem


def make_problem():
    problem = synthetic_problem()
    forward, kill = problem.forward, os.environ.get("KILL_ROUND")
    latest = Path(os.environ.get("KILL_DIR", ".")) / "LATEST"

    def killable(x):
        if kill and os.environ.get("RANK") == "1" and latest.exists() and \\
                latest.read_text().strip() >= f"ckpt-{int(kill):06d}":
            os.kill(os.getpid(), signal.SIGKILL)
        return forward(x)

    problem.forward = killable
    return problem
'''


def _recipe_fit(tmp_path, out, *flags, **env):
    """The default recipe's `landform fit` on the killable problem under torchrun with 2 processes; returns the
    run and each rank's report (None for a rank that wrote none)."""
    (tmp_path / "recipe_script.py").write_text(RECIPE_SCRIPT)
    (tmp_path / "killable.py").write_text(KILLABLE)
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}"
    report.mkdir()
    argv = [str(tmp_path / "recipe_script.py"), str(report), "--problem", "killable:make_problem", "--out", str(out),
            "--time", "10m", "--rounds", "5", "--trajectories", "32", "--threads", "1", *flags]
    run = _torchrun(argv, tmp_path, {**ENV, "KILL_DIR": str(out), **env})
    ranks = [json.loads(path.read_text()) if path.exists() else None
             for path in (report / f"rank-{rank}.json" for rank in (0, 1))]
    return run, ranks


def test_the_default_recipe_on_two_processes_survives_a_killed_rank_resumes_and_refuses_one_process(tmp_path):
    out = tmp_path / "fit"
    # Rank 1 dies in round 3 of Θ's fit: the start and the learned steps were trained on both ranks and saved.
    run, ranks = _recipe_fit(tmp_path, out, KILL_ROUND="2")
    assert run.returncode != 0 and ranks == [None, None]
    assert checkpoint_rounds(out) == 2 and Checkpoint(out).load() is not None  # the last commit, whole
    assert checkpoint_state(out)["world_size"] == 2
    for part in ("start", "steps"):
        _, config = load_pair(out / f"{part}.safetensors", floating=True, finite=True)  # both halves, one save
        assert config["world_size"] == 2 and config["record"]["world_size"] == 2
    assert not (out / "landscape.safetensors").exists()

    # One process cannot continue what two began: one line, exit status 2, before any work; nothing touched.
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".landform.lock"}
    single = forked_cli.run(["fit", "--problem", "killable:make_problem", "--out", str(out), "--resume", "--time",
                             "10m", "--rounds", "5", "--trajectories", "32", "--threads", "1"], ENV, tmp_path,
                            timeout=300)
    assert single.returncode == 2, single.stderr[-3000:]
    assert single.stderr.strip().count("\n") == 0 and "fitted by 2 process(es)" in single.stderr
    assert "--nproc_per_node=2" in single.stderr
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".landform.lock"} == before

    # Two processes continue it: the saved start and steps are reused, Θ goes on from round 2 (and is scored on
    # the held-out observations split over the ranks at round 5), both ranks end with the same landscape and
    # rank 0 writes it, recording the world size.
    run, ranks = _recipe_fit(tmp_path, out, "--resume")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "learned start saved" in run.stdout and "learned steps saved" in run.stdout
    assert "on 2 processes" in run.stdout
    assert run.stdout.count("wrote ") == 1  # rank 0 alone prints
    assert ranks[0] == ranks[1] and ranks[0]["world_size"] == 2
    record = json.loads((out / "landscape.json").read_text())["record"]
    assert record["world_size"] == 2 and record["theta"]["rounds"] == 5 and record["theta"]["validation"]
    assert record["tuning"]["count"] == 16 and record["tuning"]["chosen"] in record["tuning"]["candidates"]
    assert not record["tuning"]["skipped"] and record["start"]["steps"] == 100

    problem = synthetic_problem()
    landscape = Landscape.load(out)
    y = problem.test_observations(32, torch.Generator().manual_seed(5))
    ours = landscape.invert(y, problem, steps=20).losses.mean(1)
    plain = landscape_methods(landscape)[0].run(problem, y, 0.1, steps=20).losses.mean(1)
    assert ours[0] < plain[0] and ours[20] < plain[20]


def test_a_part_saved_without_its_config_was_never_committed_and_a_resaved_one_pairs(tmp_path):
    """The start and the learned steps are saved weights first, then their config (which holds the weights'
    hash); a kill between the two writes leaves weights alone, which a resume trains again, and a save over an
    older pair removes its config first, so two halves of different saves never meet."""
    path = tmp_path / "start.safetensors"
    save_pair(path, {"w": torch.ones(2)}, {"start": 1})
    path.with_suffix(".json").unlink()
    assert learned_parts._load_part(Context(), path) is None
    learned_parts._save_part(Context(), path, {"w": torch.zeros(3)}, {"start": 2})
    state, config = learned_parts._load_part(Context(), path)
    assert torch.equal(state["w"], torch.zeros(3)) and config == {"start": 2, "world_size": 1}
