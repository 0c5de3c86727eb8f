"""The paper-budget fit (the task's pure Θ) across sessions: a partial Θ shipped by one session, continued by
the next."""

import shutil

import torch

import landform.tasks.images.train as train
from landform import Mapping, zoo
from landform.fitting import checkpoint_state
from landform.tasks import RUNS_ENV


def test_a_partial_paper_fit_ships_and_the_next_session_continues_it(tmp_path, monkeypatch):
    package_zoo = tmp_path / "zoo"
    package_zoo.mkdir()
    for name in ("images-generator", "images-encoder"):
        for suffix in (".safetensors", ".json", ".md"):
            shutil.copy(zoo.ZOO_DIR / f"{name}{suffix}", package_zoo)
    monkeypatch.setattr(zoo, "ZOO_DIR", package_zoo)
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    monkeypatch.setattr(train, "PAPER_FIT", {"rounds": 3, "trajectories": 4, "steps": 3, "lr": 1e-4})

    # Session 1 ends after 1 of the 3 rounds and ships what it has (float16, marked partial).
    first = tmp_path / "session1"
    train.train_paper_landscape(rounds=1, run_dir=first, zoo_dir=tmp_path / "scratch", progress=False)
    shipped = train.save_paper_progress(run_dir=first)
    fitted = Mapping.config_of(shipped)["fit"]
    assert fitted["partial"] and fitted["rounds"] == 1 and fitted["rounds_planned"] == 3
    assert zoo.load_pair(shipped)[0]["net.0.weight"].dtype == torch.float32
    assert "**Partial**: 1 of the 3 rounds" in (package_zoo / f"{train.PAPER_NAME}.md").read_text()
    theta, info = train.paper_theta()
    assert info["source"] == "zoo" and info["rounds"] == 1 and info["rounds_planned"] == 3

    # Session 2, a fresh machine (no checkpoint): continues from the shipped weights for the 2 rounds left.
    second = tmp_path / "session2"
    out = tmp_path / "runs-zoo"
    final = train.train_paper_landscape(rounds=3, run_dir=second, zoo_dir=out, progress=False)
    state = checkpoint_state(second)
    assert state["rounds_completed"] == 2 and state["settings"]["seed"] == 1  # seed moved on by the rounds done
    config = Mapping.config_of(out / train.PAPER_NAME)
    assert config["fit"]["rounds"] == 3 and config["fit"]["warm_starts"] == [1]
    assert "Warm start" in (out / f"{train.PAPER_NAME}.md").read_text()
    assert not torch.equal(final.net[0].weight, theta.net[0].weight)  # it went on fitting
    # the checkpoint (1 + 2 rounds) now beats the partial entry (1 round) as the paper suite's Θ
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs2"))
    shutil.copytree(second, tmp_path / "runs2" / train.PAPER_NAME)
    _, info = train.paper_theta()
    assert info["source"] == "checkpoint" and info["rounds"] == 3
