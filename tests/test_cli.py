import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from landform.cli import main


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    assert main(["fit", "--out", str(out), "--rounds", "20", "--trajectories", "128", "--hidden", "128",
                 "--lr", "1e-3"]) == 0
    return out


def test_compare_prints_the_table_and_writes_curves_summary_and_plot(fitted_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--mapping", str(fitted_dir), "--out", str(out), "--count", "64"]) == 0
    printed = capsys.readouterr().out
    assert "speedup at 20" in printed
    for step in (0, 1, 2, 5, 10, 20, 200):
        assert f"{step:>11}" in printed.splitlines()[1]
    summary = json.loads((out / "summary.json").read_text())["test"]
    assert summary["landscape"][summary["steps"].index(20)] < summary["baseline"][summary["steps"].index(20)]
    assert summary["speedup_at_20"] > 1 and summary["baseline_lr"] in (0.5, 0.1, 0.05, 0.01, 0.001)
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "curves.csv").read_text().splitlines()[0] == "step,baseline,landscape"


def test_invert_writes_latents_and_accepts_a_mask(fitted_dir, tmp_path, capsys):
    y = torch.randn(3, 32).numpy()
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "mask.npy", np.arange(32) < 16)
    assert main(["invert", "--mapping", str(fitted_dir), "--observations", str(tmp_path / "y.npy"),
                 "--mask", str(tmp_path / "mask.npy"), "--steps", "5", "--out", str(tmp_path / "inv")]) == 0
    from landform.zoo import load_pair

    tensors, _ = load_pair(tmp_path / "inv" / "inversion.safetensors")
    assert tensors["x"].shape == (3, 16) and tensors["z"].shape == (3, 16) and tensors["losses"].shape == (6, 3)
    assert "inverted 3 observations" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["compare", "--mapping", "/nonexistent", "--out", "OUT"], "weights file not found"),
    (["invert", "--optimizer", "newton", "--out", "OUT", "--count", "2"], "unknown optimizer"),
    (["invert", "--problem", "no_such_module:f", "--out", "OUT"], "cannot import"),
    (["invert", "--problem", "landform.synthetic", "--out", "OUT"], "package.module:factory"),
    (["invert", "--observations", "OBS", "--out", "OUT"], "observations have shape"),
    (["zoo", "show", "no-such-model"], "no model card"),
])
def test_bad_input_is_one_line_without_traceback(argv, message, tmp_path, capsys):
    np.save(tmp_path / "obs.npy", np.zeros((2, 7), dtype=np.float32))
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("OBS", str(tmp_path / "obs.npy")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_corrupted_checkpoint_from_the_real_console_script(fitted_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "mapping.safetensors").write_bytes(b"\x00" * 64)
    (broken / "mapping.json").write_text((fitted_dir / "mapping.json").read_text())
    run = subprocess.run([sys.executable, "-m", "landform.cli", "compare", "--mapping", str(broken), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().startswith("landform: error: corrupted weights file")
    assert "Traceback" not in run.stderr


def test_fit_refuses_to_overwrite_and_resumes(fitted_dir, capsys):
    assert main(["fit", "--out", str(fitted_dir), "--rounds", "20"]) == 2
    assert "--resume" in capsys.readouterr().err
    before = (fitted_dir / "mapping.safetensors").read_bytes()
    assert main(["fit", "--out", str(fitted_dir), "--rounds", "20", "--trajectories", "128", "--hidden", "128",
                 "--lr", "1e-3", "--resume"]) == 0
    assert (fitted_dir / "mapping.safetensors").read_bytes() == before
