"""`landform invert` and `landform compare` on a Problem replace their output sets as one unit."""

import torch
from report_faults import check_report_writes, fake_figure

from landform import results
from landform.inference import InversionResult
from landform.io import load_pair
from landform.mapping import Mapping
from landform.synthetic import synthetic_problem


def test_an_interrupted_invert_leaves_the_old_inversion_whole(tmp_path, monkeypatch):
    losses = torch.linspace(1.0, 0.5, 4).unsqueeze(1).repeat(1, 3)
    result = InversionResult(x=torch.randn(3, 2), z=None, losses=losses, seconds_per_step=0.01,
                             y_hat=torch.randn(3, 5))
    folder = tmp_path / "inv"
    check_report_writes(folder, results.INVERT_FILES,
                        lambda: results.write_inversion(folder, result, {"steps": 3}), monkeypatch)
    tensors, config = load_pair(folder / "inversion.safetensors")
    assert torch.equal(tensors["x"], result.x) and config["steps"] == 3


def test_an_interrupted_compare_leaves_the_old_curves_and_summary_whole(tmp_path, monkeypatch):
    problem = synthetic_problem()
    mapping = Mapping(16, problem.x_shape, hidden=16)
    mapping.save(tmp_path / "theta")
    monkeypatch.setattr(results, "plot_curves", fake_figure)
    folder = tmp_path / "cmp"
    check_report_writes(folder, results.COMPARE_FILES,
                        lambda: results.compare_problem(problem, tmp_path / "theta", folder, count=4, steps=2,
                                                        seed=0, device="cpu"), monkeypatch)
    assert (folder / "curves.csv").read_text().startswith("step,baseline")
