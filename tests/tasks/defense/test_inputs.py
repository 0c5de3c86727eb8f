"""Bad input gives one clear LandformError line: wrong size or range, missing files or models."""

import numpy as np
import pytest
import torch
from PIL import Image

from landform import zoo
from landform.errors import LandformError
from landform.tasks.defense import demo
from landform.tasks.defense.defense import load_theta
from landform.tasks.defense.models import load_model
from landform.tasks.defense.task import load_user_images


def test_good_inputs_load(tmp_path):
    Image.fromarray(np.full((28, 28), 128, dtype=np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.full((2, 1, 28, 28), 0.25, dtype=np.float32))
    x = load_user_images([str(tmp_path / "a.png"), str(tmp_path / "b.npy")])
    assert x.shape == (3, 1, 28, 28)
    assert torch.allclose(x[0], torch.full((1, 28, 28), 128 / 255))


def test_wrong_size_png(tmp_path):
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(LandformError, match="expected a 28x28 image, got 32x32"):
        load_user_images([str(tmp_path / "big.png")])


def test_wrong_shape_and_range_npy(tmp_path):
    np.save(tmp_path / "shape.npy", np.zeros((3, 28, 28), dtype=np.float32))
    with pytest.raises(LandformError, match="28x28 grayscale"):
        load_user_images([str(tmp_path / "shape.npy")])
    np.save(tmp_path / "range.npy", np.full((28, 28), 255.0, dtype=np.float32))
    with pytest.raises(LandformError, match=r"must lie in \[0, 1\]"):
        load_user_images([str(tmp_path / "range.npy")])


def test_missing_file_and_no_inputs(tmp_path):
    with pytest.raises(LandformError, match="no such file"):
        load_user_images([str(tmp_path / "nothing.png")])
    with pytest.raises(LandformError, match="at least one"):
        load_user_images([])


def test_missing_or_unknown_model(tmp_path, monkeypatch):
    with pytest.raises(LandformError, match="unknown robust model"):
        load_model("fgsm")
    monkeypatch.setattr(zoo, "path", lambda name, directory=None: tmp_path / f"{name}.safetensors")
    with pytest.raises(LandformError, match="missing: run `landform zoo train defense-pgd`"):
        load_model("pgd")
    with pytest.raises(LandformError, match="defense-mart-theta"):
        load_theta("mart")
    with pytest.raises(LandformError, match="missing"):
        demo(tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_theta_fitted_on_another_robust_model_is_refused(tmp_path):
    _, config = load_theta("pgd")  # the shipped Θ records the shipped model (under its old key)
    assert config["model_fingerprint"] == zoo.fingerprint("defense-pgd")
    (tmp_path / "defense-pgd.safetensors").write_bytes(b"a retrained robust model")
    with pytest.raises(LandformError, match="defense-pgd-theta was fitted for another defense-pgd") as error:
        load_theta("pgd", zoo_dir=tmp_path)
    assert "`landform zoo train defense-pgd-theta`" in str(error.value)
