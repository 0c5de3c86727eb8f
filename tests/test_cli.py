import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landform import Mapping, guard
from landform.cli import main
from landform.guard import busy_cores_note
from landform.io import Checkpoint, load_pair

ROOT = Path(__file__).resolve().parents[1]
LANDFORM = str(Path(sys.executable).with_name("landform"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    assert main(["fit", "--recipe", "paper", "--out", str(out), "--rounds", "20", "--trajectories", "128",
                 "--hidden", "128", "--lr", "1e-3"]) == 0
    return out


def _strict(text: str):
    """json.loads that rejects NaN and Infinity, as strict parsers do."""
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=reject)


def test_compare_prints_the_table_and_writes_curves_summary_and_plot(fitted_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--mapping", str(fitted_dir), "--out", str(out), "--count", "64"]) == 0
    printed = capsys.readouterr().out
    assert "speedup at 20" in printed
    header = next(line for line in printed.splitlines() if "step" in line and "200" in line)
    for step in (0, 1, 2, 5, 10, 20, 200):
        assert re.search(rf"(?<!\d){step}(?!\d)", header), (step, header)
    summary = _strict((out / "summary.json").read_text())["test"]
    assert summary["landscape"][summary["steps"].index(20)] < summary["baseline"][summary["steps"].index(20)]
    assert summary["speedup_at_20"] >= 1
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "curves.csv").read_text().splitlines()[0].startswith("step,baseline,landscape")


def test_compare_takes_the_best_swept_learning_rate(fitted_dir, tmp_path):
    """The baseline's learning rate is the one with the lowest validation loss of the sweep, not any other."""
    out = tmp_path / "cmp"
    assert main(["compare", "--mapping", str(fitted_dir), "--out", str(out), "--count", "32", "--steps", "30"]) == 0
    summary = _strict((out / "summary.json").read_text())["test"]
    sweep = summary["lr_sweep"]
    sweep = sweep.get("baseline", sweep)  # {lr: {...}} or {method: {lr: {...}}}
    finals = {float(lr): entry["final"] for lr, entry in sweep.items()}
    assert len(finals) == 5 and len(set(finals.values())) > 1
    assert finals[float(summary["baseline_lr"])] == min(finals.values())


def test_compare_lr_is_the_step_size_on_z_and_the_baseline_stays_swept(fitted_dir, tmp_path):
    """One meaning per flag: --lr is the step size on the optimized variable (here z, of the landscape)."""
    out = tmp_path / "cmp"
    assert main(["compare", "--mapping", str(fitted_dir), "--out", str(out), "--count", "8", "--steps", "10",
                 "--lr", "0.05"]) == 0
    summary = _strict((out / "summary.json").read_text())["test"]
    assert summary["lr"]["landscape"] == 0.05 and summary["lr"]["landscape_pure"] == 0.05
    assert len(summary["lr_sweep"]["baseline"]) == 5


def test_invert_writes_latents_and_uses_the_mask(fitted_dir, tmp_path, capsys):
    y = torch.randn(3, 32).numpy()
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "mask.npy", np.arange(32) < 16)
    garbled = y.copy()
    garbled[:, 16:] = 100.0  # only the hidden entries differ
    np.save(tmp_path / "garbled.npy", garbled)

    def run(observations, out, mask=True):
        argv = ["invert", "--mapping", str(fitted_dir), "--observations", str(tmp_path / observations),
                "--steps", "5", "--out", str(tmp_path / out)]
        assert main(argv + (["--mask", str(tmp_path / "mask.npy")] if mask else [])) == 0
        return load_pair(tmp_path / out / "inversion.safetensors")[0]

    tensors = run("y.npy", "inv")
    assert tensors["x"].shape == (3, 16) and tensors["z"].shape == (3, 16) and tensors["losses"].shape == (6, 3)
    assert "inverted 3 observations" in capsys.readouterr().out
    # With the mask the hidden entries cannot matter; without it they do (a CLI dropping --mask fails here).
    assert torch.equal(run("garbled.npy", "inv_garbled")["x"], tensors["x"])
    assert not torch.equal(run("garbled.npy", "inv_nomask", mask=False)["x"], tensors["x"])


@pytest.mark.parametrize("argv, message", [
    (["compare", "--mapping", "/nonexistent", "--out", "OUT"], "not found"),
    (["invert", "--optimizer", "newton", "--out", "OUT", "--count", "2"], "unknown optimizer"),
    (["invert", "--problem", "no_such_module:f", "--out", "OUT"], "cannot import"),
    (["invert", "--problem", "landform.synthetic", "--out", "OUT"], "package.module:factory"),
    (["invert", "--observations", "OBS", "--out", "OUT"], "observations have shape"),
    (["zoo", "show", "no-such-model"], "no model card"),
    (["zoo", "show", "../../README"], "invalid zoo entry name"),
])
def test_bad_input_is_one_line_without_traceback(argv, message, tmp_path, capsys):
    np.save(tmp_path / "obs.npy", np.zeros((2, 7), dtype=np.float32))
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("OBS", str(tmp_path / "obs.npy")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_failing_problem_factory_is_one_line_in_compare_as_in_fit(fitted_dir, tmp_path, monkeypatch, capsys):
    """compare loads --problem the way fit does: an error raised by the user's factory ends it in one line."""
    (tmp_path / "broken_factory.py").write_text("def make_problem():\n    raise ValueError('it exploded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = "landform: error: the --problem factory broken_factory:make_problem failed: ValueError: it exploded"
    for command in (["fit", "--out", str(tmp_path / "fit")],
                    ["compare", "--mapping", str(fitted_dir), "--out", str(tmp_path / "cmp")]):
        assert main([*command, "--problem", "broken_factory:make_problem"]) == 2
        assert capsys.readouterr().err.strip() == expected, command


def test_corrupted_checkpoint_from_the_real_console_script(fitted_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "mapping.safetensors").write_bytes(b"\x00" * 64)
    (broken / "mapping.json").write_text(json.dumps(Mapping.config_of(fitted_dir)))
    run = subprocess.run([LANDFORM, "compare", "--mapping", str(broken), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=ENV)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("landform: error: corrupted weights file")
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_fit_refuses_to_overwrite_and_a_resumed_fit_continues_exactly(fitted_dir, tmp_path, capsys):
    assert main(["fit", "--out", str(fitted_dir), "--rounds", "20"]) == 2
    assert "--resume" in capsys.readouterr().err
    small = ["--recipe", "paper", "--trajectories", "32", "--steps", "5", "--hidden", "32", "--lr", "1e-3",
             "--batch-size", "16"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["fit", "--out", str(whole), "--rounds", "6", *small]) == 0
    assert main(["fit", "--out", str(part), "--rounds", "3", *small]) == 0
    assert Checkpoint(part).step() == 3
    assert main(["fit", "--out", str(part), "--rounds", "6", "--resume", *small]) == 0
    assert Checkpoint(part).step() == 6
    a, b = Mapping.load(whole), Mapping.load(part)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert main(["fit", "--out", str(part), "--rounds", "6", "--resume", *small[:-2], "--batch-size", "8"]) == 2
    assert "settings differ" in capsys.readouterr().err


def test_fit_refuses_to_overwrite_a_theta_saved_without_a_fit(tmp_path, capsys):
    Mapping(16, (16,), hidden=8).save(tmp_path / "mapping")
    before = (tmp_path / "mapping.safetensors").read_bytes()
    assert main(["fit", "--out", str(tmp_path), "--rounds", "1"]) == 2
    assert "already holds a Θ" in capsys.readouterr().err
    assert main(["fit", "--out", str(tmp_path), "--rounds", "1", "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err
    assert (tmp_path / "mapping.safetensors").read_bytes() == before


def test_a_user_problem_factory_plugs_in(tmp_path, monkeypatch):
    """The README's `--problem package.module:factory` with a real user package in the working directory, through
    the console script, exactly as written (no PYTHONPATH)."""
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "import torch\nimport landform\n\n"
        "def make_problem():\n"
        "    weight = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))\n"
        "    forward = lambda x: torch.tanh(x @ weight.T)\n"
        "    loss = lambda y_hat, y: (y_hat - y).pow(2).mean(1)\n"
        "    def draw(offset):\n"
        "        return lambda n, g: forward(torch.randn(n, 3, generator=g) + offset)\n"
        "    return landform.Problem(forward, loss, (3,), draw(1.0), draw(1.5), name='mine')\n")
    env = {key: value for key, value in ENV.items() if key != "PYTHONPATH"}  # found from the working directory
    spec = "mypkg.models:make_problem"

    def landform_cli(*argv):
        run = subprocess.run([LANDFORM, *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        return run.stdout

    small = ["--rounds", "8", "--trajectories", "32", "--steps", "10", "--hidden", "32", "--time", "10s",
             "--threads", "1"]
    landform_cli("fit", "--problem", spec, "--out", "runs/theta", *small)
    out = landform_cli("compare", "--problem", spec, "--mapping", "runs/theta", "--out", "runs/cmp", "--count", "16",
                       "--steps", "30")
    assert "mine" in out
    np.save(tmp_path / "y.npy", np.tanh(np.ones((4, 6), dtype=np.float32)))
    out = landform_cli("invert", "--problem", spec, "--mapping", "runs/theta", "--observations", "y.npy", "--out",
                       "runs/inv", "--steps", "10")
    assert "inverted 4 observations" in out
    assert (tmp_path / "runs/inv/inversion.safetensors").exists()


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_python_snippet_runs_and_the_landscape_is_faster(tmp_path):
    code = next(block for block in re.findall(r"```python\n(.*?)```", _readme(), re.S) if "Mapping(" in block)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    numbers = [float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?", run.stdout)]
    slow_at_20, fast_at_20 = numbers[1], numbers[3]
    assert fast_at_20 < slow_at_20, run.stdout


@pytest.mark.parametrize("index", [0, 1], ids=["invert", "compare"])
def test_the_readme_image_commands_run_as_written(index, tmp_path):
    """The two `--task images` commands of the README (one per test, so that the two run side by side under
    `pytest -n 2`), placeholders filled in, nothing added (no --device)."""
    from PIL import Image

    commands = re.findall(r"`(landform (?:invert|compare) --task images [^`]*)`", _readme())
    assert len(commands) == 2, commands
    assert commands[index].startswith(f"landform {['invert', 'compare'][index]} "), commands
    (tmp_path / "pics").mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "pics" / "photo.png")
    command = commands[index].replace("IMAGE_OR_FOLDER...", "pics").replace("IMAGE...", "pics/photo.png")
    argv = command.replace("DIR", f"out{index}").split()
    assert "--out" in argv, f"the README's command has no --out: {command}"
    run = subprocess.run([LANDFORM, *argv[1:]], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, (command, run.stderr[-3000:])
    assert "Traceback" not in run.stderr
    assert any((tmp_path / f"out{index}").iterdir())


def test_zoo_list_and_show_through_the_console_script():
    listed = subprocess.run([LANDFORM, "zoo", "list"], capture_output=True, text=True, env=ENV)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert "images-landscape" in names and all(line.strip().endswith("MB") for line in listed.stdout.splitlines())
    shown = subprocess.run([LANDFORM, "zoo", "show", "images-landscape"], capture_output=True, text=True, env=ENV)
    assert shown.returncode == 0 and shown.stdout.startswith("# images-landscape"), shown.stderr


def test_bf16_autocast_of_the_forward_model_on_cpu(fitted_dir, tmp_path):
    """--autocast bf16 runs F under torch.autocast (here on CPU): the results change a little, not a lot."""
    def inverted(*extra):
        out = tmp_path / f"inv{len(extra)}"
        assert main(["invert", "--mapping", str(fitted_dir), "--count", "16", "--steps", "20", "--out", str(out),
                     *extra]) == 0
        return load_pair(out / "inversion.safetensors")[0]["losses"][-1].mean().item()

    full, half = inverted(), inverted("--autocast", "bf16")
    assert full != half and abs(full - half) < 0.5 * full + 1e-3
    assert main(["fit", "--recipe", "paper", "--out", str(tmp_path / "fit"), "--rounds", "2", "--trajectories", "16",
                 "--steps", "4", "--hidden", "16", "--batch-size", "16", "--autocast", "bf16"]) == 0
    assert main(["invert", "--count", "4", "--out", str(tmp_path / "x"), "--autocast", "fp16"]) == 2


def test_a_busy_machine_gets_a_one_line_note_to_use_fewer_threads_and_an_idle_one_none():
    note = busy_cores_note(2, load=1.3, cores=2)
    assert note is not None and "--threads 1" in note and "\n" not in note
    assert busy_cores_note(2, load=0.2, cores=2) is None
    assert busy_cores_note(1, load=5.0, cores=2) is None  # one thread already
    assert "--threads 6" in (busy_cores_note(8, load=10.0, cores=16) or "")


def test_a_fit_under_a_time_budget_takes_the_idle_cores_and_a_reproducible_one_keeps_torchs_threads(
        monkeypatch, capsys):
    monkeypatch.setattr(guard, "threads_beside_busy_cores", lambda threads, *a: 1 if threads > 1 else None)
    monkeypatch.setattr(guard.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    before = torch.get_num_threads()
    try:
        for command, seconds, threads, expected in (("fit", 60.0, None, 1), ("fit", float("inf"), None, 3),
                                                    ("fit", None, None, 3), ("compare", None, None, 3),
                                                    ("fit", 60.0, 2, 2)):
            torch.set_num_threads(3)
            args = argparse.Namespace(command=command, seconds=seconds, threads=threads)
            guard._choose_threads(args, torch.get_num_threads())
            assert torch.get_num_threads() == expected, (command, seconds, threads)
            out = capsys.readouterr().out
            assert ("torch runs 1 thread(s) instead of 3" in out) == (expected == 1), out
    finally:
        torch.set_num_threads(before)
