"""`landform invert/compare --task defense` replace their output sets as one unit (the computation faked)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from report_faults import check_report_writes, fake_figure

from landform.tasks.defense import figures, task


@pytest.fixture
def images(tmp_path, monkeypatch):
    """A file of two images, and the defended model, its Θ, the attack and the reversal faked."""
    np.save(tmp_path / "two.npy", np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))

    def reverse(model, x, *, steps=1, snapshots=(), **kwargs):
        return SimpleNamespace(x=x + 0.01, losses=torch.rand(steps + 1, x.shape[0]),
                               snapshots={t: x + 0.01 * t for t in snapshots})

    monkeypatch.setattr(task, "load_model", lambda recipe, device: model)
    landscape = SimpleNamespace(mapping=None, settings=SimpleNamespace(lr_z=0.1, lr_x=0.1, steps=1),
                                record={"defense": {"start_scale": 1.0, "hardened": {"steps": 5, "start_scale": 0.5}}})
    monkeypatch.setattr(task, "load_landscape", lambda recipe, device: landscape)
    monkeypatch.setattr(task.attack, "pgd", lambda model, x, label, **kwargs: x)
    monkeypatch.setattr(task, "reverse", reverse)
    monkeypatch.setattr(figures, "plot_examples", fake_figure)
    return [str(tmp_path / "two.npy")]


def test_an_interrupted_defense_invert_leaves_the_old_outputs_whole(tmp_path, images, monkeypatch):
    folder = tmp_path / "inv"
    check_report_writes(folder, task.INVERT_FILES, lambda: task.invert_inputs(images, folder, progress=False),
                        monkeypatch)
    assert np.allclose(np.load(folder / "defended.npy"), np.load(images[0]) + 0.01)


def test_an_interrupted_defense_compare_leaves_the_old_outputs_whole(tmp_path, images, monkeypatch):
    folder = tmp_path / "cmp"
    check_report_writes(folder, task.COMPARE_FILES,
                        lambda: task.compare_inputs(images, folder, steps=3, progress=False), monkeypatch)
