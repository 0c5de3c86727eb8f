"""A tiny robust training run writes a loadable zoo entry and resumes from its checkpoint."""

from pathlib import Path

import pytest
import torch

import landform.tasks.defense.train as train
from landform import zoo
from landform.errors import LandformError
from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.train import TRAINERS, robust_loss


def test_trainers_cover_every_entry():
    assert set(TRAINERS) == {f"defense-{r}{s}" for r in ("pgd", "trades", "mart") for s in ("", "-theta")}


@pytest.mark.parametrize("recipe", ["pgd", "trades", "mart"])
def test_recipe_losses_are_finite_and_trainable(recipe):
    torch.manual_seed(0)
    model = RobustModel().classifier
    x, y = torch.rand(8, 1, 28, 28), torch.randint(10, (8,))
    loss = robust_loss(recipe, model, x, y, train.CLASSIFIER_SETTINGS, seed=0)
    loss.backward()
    assert torch.isfinite(loss) and model.head[2].weight.grad.abs().sum() > 0
    with pytest.raises(LandformError):
        robust_loss("fgsm", model, x, y, train.CLASSIFIER_SETTINGS, seed=0)


def test_tiny_training_writes_entry_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(train, "EVAL_SIZE", 16)
    monkeypatch.setattr(train.attack, "ATTACK_STEPS", 2)
    saved = zoo.save
    monkeypatch.setattr(zoo, "save", lambda name, s, c, card: saved(name, s, c, card, directory=tmp_path / "zoo"))
    tiny = {"train_size": 64, "epochs": 1, "batch_size": 32, "ssl_epochs": 1, "ssl_batch_size": 32}
    train.train_robust("pgd", settings=tiny, progress=False)
    state, config = zoo.load("defense-pgd", directory=tmp_path / "zoo")
    assert config["recipe"] == "pgd" and 0.0 <= config["metrics"]["clean"] <= 1.0
    assert "landform zoo train defense-pgd" in (tmp_path / "zoo" / "defense-pgd.md").read_text()
    model = RobustModel()
    zoo.load_module_state(model, {k: v.float() for k, v in state.items()}, "test")
    first = Path(tmp_path / "runs" / "defense-pgd" / "state.json").read_text()
    train.train_robust("pgd", settings=tiny, progress=False)  # resumes: nothing left to train
    assert Path(tmp_path / "runs" / "defense-pgd" / "state.json").read_text() == first
