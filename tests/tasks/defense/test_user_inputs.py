"""`landform invert/compare --task defense` on a user's files: outputs, and one-line errors for bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from landform.errors import LandformError
from landform.tasks.defense.task import compare_inputs, invert_inputs, load_user_images


def _files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "two.npy", rng.random((2, 1, 28, 28)).astype(np.float32))
    Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(tmp_path / "one.png")
    return [str(tmp_path / "two.npy"), str(tmp_path / "one.png")]


def test_invert_and_compare_write_their_outputs(tmp_path):
    files = _files(tmp_path)
    assert load_user_images(files).shape == (3, 1, 28, 28)
    invert_inputs(files, tmp_path / "inv", progress=False)
    defended = np.load(tmp_path / "inv" / "defended.npy")
    assert defended.shape == (3, 1, 28, 28)
    assert np.allclose(defended - np.load(tmp_path / "inv" / "reversal.npy"), load_user_images(files), atol=1e-5)
    predictions = json.loads((tmp_path / "inv" / "invert.json").read_text())
    assert len(predictions["prediction"]) == len(predictions["prediction_1_step"]) == 3
    assert predictions["defense"].startswith("hardened: 5 steps")
    one_step = np.load(tmp_path / "inv" / "defended_1_step.npy")
    assert one_step.shape == (3, 1, 28, 28) and not np.allclose(one_step, defended)
    result = compare_inputs(files[:1], tmp_path / "cmp", steps=3, progress=False)
    assert set(result["landscape"]) == set(result["baseline"]) and len(result["clean_prediction"]) == 2
    assert (tmp_path / "cmp" / "compare.png").exists()


def test_invert_defends_in_the_chunks_every_evaluation_scores(tmp_path, monkeypatch):
    """The defense's negatives are the other images of its batch: invert runs it in the scored chunks, so an image
    is defended the same whatever the user passes beyond its chunk."""
    from landform.tasks.defense import task
    monkeypatch.setattr(task, "CHUNK", 2)
    files = _files(tmp_path)
    invert_inputs(files, tmp_path / "all", progress=False)
    invert_inputs(files[:1], tmp_path / "first", progress=False)
    every, first = (np.load(tmp_path / name / "defended.npy") for name in ("all", "first"))
    assert np.allclose(every[:2], first, atol=1e-6)
    assert "chunks of 2" in json.loads((tmp_path / "all" / "invert.json").read_text())["batch"]


@pytest.mark.parametrize("array, message", [
    (np.zeros((32, 32), dtype=np.float32), "28x28"),
    (np.full((28, 28), 2.0, dtype=np.float32), r"\[0, 1\]"),
])
def test_wrong_size_or_range_is_refused(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(LandformError, match=message):
        load_user_images([str(tmp_path / "bad.npy")])
    Image.fromarray(np.zeros((30, 30), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(LandformError, match="expected a 28x28 image"):
        load_user_images([str(tmp_path / "big.png")])
