"""A tiny robust training run writes a loadable zoo entry and resumes from its checkpoint."""

from pathlib import Path

import pytest
import torch

import landform.tasks.defense.train as train
from landform import zoo
from landform.errors import LandformError
from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.train import TRAINERS, robust_loss, training_views


def test_trainers_cover_every_entry():
    assert set(TRAINERS) == {f"defense-{r}{s}" for r in ("pgd", "trades", "mart") for s in ("", "-theta")}


@pytest.mark.parametrize("recipe", ["pgd", "trades", "mart"])
def test_recipe_losses_are_finite_and_trainable(recipe):
    torch.manual_seed(0)
    model = RobustModel().classifier
    x, y = torch.rand(8, 1, 28, 28), torch.randint(10, (8,))
    loss = robust_loss(recipe, model, x, y, train.CLASSIFIER_SETTINGS, seed=0)
    loss.backward()
    assert torch.isfinite(loss) and model.out.weight.grad.abs().sum() > 0
    with pytest.raises(LandformError):
        robust_loss("fgsm", model, x, y, train.CLASSIFIER_SETTINGS, seed=0)


def test_training_views_are_seeded_and_in_range():
    x = torch.rand(4, 1, 28, 28)
    views = training_views(x, {"flip": 0.5, "crop_scale": [0.6, 1.0]}, seed=3)
    assert torch.equal(views, training_views(x, {"flip": 0.5, "crop_scale": [0.6, 1.0]}, seed=3))
    assert views.shape == x.shape and views.min() >= 0 and views.max() <= 1
    assert training_views(x, None, seed=0) is x


def test_tiny_training_writes_entry_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "EVAL_SIZE", 16)
    monkeypatch.setattr(train, "ROBUST_EVAL", {"size": 8, "l2_steps": 2, "linf_steps": 2})
    tiny = {"train_size": 64, "epochs": 1, "batch_size": 32, "ssl_train_size": 64, "ssl_epochs": 1,
            "ssl_batch_size": 32}
    where = {"run_dir": tmp_path / "runs" / "defense-pgd", "zoo_dir": tmp_path / "zoo"}
    train.train_robust("pgd", settings=tiny, progress=False, **where)
    state, config = zoo.load("defense-pgd", directory=tmp_path / "zoo")
    assert config["recipe"] == "pgd" and 0.0 <= config["metrics"]["clean"] <= 1.0
    assert "landform zoo train defense-pgd" in (tmp_path / "zoo" / "defense-pgd.md").read_text()
    model = RobustModel(config["architecture"], config["views"])
    zoo.load_module_state(model, {k: v.float() for k, v in state.items()}, "test")
    assert model.bank.abs().sum() > 0  # the defense's negatives are stored with the weights
    first = Path(tmp_path / "runs" / "defense-pgd" / "state.json").read_text()
    train.train_robust("pgd", settings=tiny, progress=False, **where)  # resumes: nothing left to train
    assert Path(tmp_path / "runs" / "defense-pgd" / "state.json").read_text() == first
