"""`landform invert/compare --task images` replace their output sets as one unit (the computation faked)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from report_faults import check_report_writes, fake_figure

from landform.tasks.images import user


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """Two small photos, and the image task's models and figures faked."""
    rng = np.random.default_rng(0)
    files = []
    for name in ("a.png", "b.png"):
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(tmp_path / name)
        files.append(str(tmp_path / name))
    monkeypatch.setattr(user, "load_models", lambda device: SimpleNamespace())
    monkeypatch.setattr(user, "save_labeled_grid", fake_figure)
    monkeypatch.setattr(user, "plot_curves", fake_figure)
    return files


def _result(steps: int) -> SimpleNamespace:
    return SimpleNamespace(x=torch.rand(2, 4), z=torch.rand(2, 3), y_hat=torch.rand(2, 1, 28, 28),
                           losses=torch.rand(steps + 1, 2))


def test_an_interrupted_images_invert_leaves_the_old_outputs_whole(tmp_path, photos, monkeypatch):
    method = SimpleNamespace(lr=0.1, run=lambda problem, y, lr, *, steps, **kw: _result(steps))
    models = SimpleNamespace(default_method=lambda mode: method, pure_method=lambda: method, problem=lambda: None)
    monkeypatch.setattr(user, "load_models", lambda device: models)
    folder = tmp_path / "inv"
    check_report_writes(folder, user.INVERT_FILES,
                        lambda: user.invert_inputs(photos, folder, steps=3, progress=False), monkeypatch)


def test_an_interrupted_images_compare_leaves_the_old_outputs_whole(tmp_path, photos, monkeypatch):
    def run_comparison(models, images, val, *, steps, **kw):
        results = {name: _result(steps) for name in ("baseline", "encoder_init", "landscape", "landscape_pure")}
        return SimpleNamespace(results=results), {"encoded": torch.rand(2, 1, 28, 28)}

    monkeypatch.setattr(user, "sweep_key", lambda **key: key)
    monkeypatch.setattr(user, "stored_step_sizes", lambda key: (None, None))
    monkeypatch.setattr(user, "load_fashion_mnist", lambda split: (torch.rand(8, 1, 28, 28), None))
    monkeypatch.setattr(user, "run_comparison", run_comparison)
    monkeypatch.setattr(user, "store_step_sizes", lambda key, comparison: tmp_path / "step-sizes.json")
    monkeypatch.setattr(user, "summary_block", lambda comparison, encoder: {"encoder": 0.5, "steps": [0, 3]})
    monkeypatch.setattr(user, "summary_table", lambda block, steps: "a table")
    folder = tmp_path / "cmp"
    check_report_writes(folder, user.COMPARE_FILES,
                        lambda: user.compare_inputs(photos, folder, steps=3, progress=False), monkeypatch)
