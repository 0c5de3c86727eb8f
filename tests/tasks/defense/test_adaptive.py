"""The adaptive evaluation's composite model: the same logits as the deployed defense, gradients through the
step (or the identity, BPDA), fresh draws for EOT; the scoring blocks every defense report shares; the study
(experiments/defense_adaptive.py) refuses bad settings in one line."""

import importlib.util
from pathlib import Path

import pytest
import torch

from landform import Mapping
from landform.errors import LandformError
from landform.inference import initial_variable
from landform.tasks.defense.defense import reversal_of, reverse
from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.scoring import Defended, accuracy, difference, percent, scored, scored_over_draws

STUDY = Path(__file__).resolve().parents[3] / "experiments" / "defense_adaptive.py"


def _study():
    """experiments/defense_adaptive.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("defense_adaptive", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parts():
    torch.manual_seed(0)
    model = RobustModel().eval().requires_grad_(False)
    mapping = Mapping(784, (1, 28, 28), hidden=16, additive=True).requires_grad_(False)
    return model, mapping


def test_composite_is_the_deployed_defense_with_or_without_gradients():
    model, mapping = _parts()
    a = torch.rand(3, 1, 28, 28)
    deployed = model(reverse(model, a, mapping=mapping, steps=1, lr=0.05, seed=0).x)
    exact = Defended(model, mapping, lr=0.05, steps=1, seed=0)
    bpda = Defended(model, mapping, lr=0.05, steps=1, seed=0, bpda=True)
    with torch.no_grad():
        assert torch.allclose(exact(a), deployed, atol=1e-4)
    v = a.clone().requires_grad_(True)
    assert torch.allclose(exact(v), deployed, atol=1e-4) and torch.allclose(bpda(v), deployed, atol=1e-4)
    (g_exact,) = torch.autograd.grad(exact(v).logsumexp(1).sum(), [v])
    (g_bpda,) = torch.autograd.grad(bpda(v).logsumexp(1).sum(), [v])
    # BPDA: the classifier's gradient at the defended image, as if the defense were the identity.
    d = reverse(model, a, mapping=mapping, steps=1, lr=0.05, seed=0).x.requires_grad_(True)
    (g_at_defended,) = torch.autograd.grad(model(d).logsumexp(1).sum(), [d])
    assert torch.allclose(g_bpda, g_at_defended, atol=1e-5)
    assert g_exact.abs().sum() > 0 and not torch.allclose(g_exact, g_bpda)
    fresh = Defended(model, mapping, lr=0.05, steps=1, seed=None)
    with torch.no_grad():
        assert not torch.allclose(fresh(a), fresh(a))  # a new draw of the start at every call (EOT)


def test_a_randomized_defense_counts_an_image_only_if_every_draw_gets_it_right(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path))
    model, mapping = _parts()
    a = torch.rand(6, 1, 28, 28)
    y = model(a).argmax(1)
    seeds = [0, 1, 2]
    draws = scored_over_draws(model, mapping, a, y, lr=0.5, steps=2, seeds=seeds, start_scale=2.0)
    each = torch.stack([scored(model, mapping, a, y, lr=0.5, steps=2, seed=s, start_scale=2.0)["_correct"]
                        for s in seeds])
    assert torch.equal(draws["_first"], each[0]) and torch.equal(draws["_every"], each.all(0))
    assert torch.equal(draws["_majority"], each.sum(0) >= 2) and draws["draws"] == 3
    assert bool((draws["_every"] <= draws["_majority"]).all()) and bool((draws["_every"] <= draws["_first"]).all())


def test_bad_settings_are_refused():
    study = _study()
    with pytest.raises(LandformError, match="between 1"):
        study.adaptive_report("unused", main_size=10, size=20)
    with pytest.raises(LandformError, match="at least 1"):
        study.remedies_report("unused", size=0)


def test_accuracy_and_difference_blocks_are_paired_and_keyed_one_way():
    first = torch.tensor([True, True, False, True])
    second = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    block = accuracy(first)
    assert block["accuracy"] == 0.75 and block["count"] == 4 and len(block["ci95"]) == 2
    assert accuracy(first) == accuracy(first.double())  # bool masks and 0/1 doubles score alike
    gap = difference(first, second)
    assert set(gap) == {"difference", "ci95", "count"} and gap["difference"] == 0.5
    assert gap["ci95"][0] <= 0.5 <= gap["ci95"][1]
    assert percent(block).startswith("75.0 [") and percent(gap).startswith("+50.0 [")
    assert percent(None) == "n/a" and percent(0.5) == "50.0"


def test_a_smaller_random_start_is_the_same_defense_from_a_smaller_z0():
    model, mapping = _parts()
    a = torch.rand(3, 1, 28, 28)
    z0 = initial_variable("gaussian", (3, 784), seed=0)
    # 0 steps: the defended image is the start itself, a + P(Θ(0.5 z0)) (the deployed defense: a + P(Θ(z0)))
    start = reverse(model, a, mapping=mapping, steps=0, lr=0.05, seed=0, start_scale=0.5).x
    assert torch.allclose(start, reversal_of(mapping(0.5 * z0, a), a), atol=1e-6)
    assert not torch.allclose(start, reverse(model, a, mapping=mapping, steps=0, lr=0.05, seed=0).x, atol=1e-4)
    # the attacker's composite runs the same defense from the same smaller start
    deployed = model(reverse(model, a, mapping=mapping, steps=2, lr=0.05, seed=0, start_scale=0.5).x)
    v = a.clone().requires_grad_(True)
    assert torch.allclose(Defended(model, mapping, lr=0.05, steps=2, seed=0, start_scale=0.5)(v), deployed, atol=1e-4)
    assert not torch.allclose(Defended(model, mapping, lr=0.05, steps=2, seed=0)(v), deployed, atol=1e-4)


def test_the_reports_targets_read_the_scoring_blocks_as_they_are_keyed():
    # The report's bar once read a key the paired-difference block no longer has, and failed only after every
    # attack had run: its targets are computed from blocks made by the shared scorers.
    def share(right: int) -> torch.Tensor:
        return torch.arange(100) < right

    targets = _study().targets
    row = {"adaptive_worst": accuracy(share(40)), "autoattack_no_defense": accuracy(share(30)),
           "clean_drop": difference(share(100), share(100))}
    assert targets(row) == {"adaptive_worst_at_least_autoattack_no_defense_plus_5": True,
                            "clean_drop_at_most_1_point": True}
    row["clean_drop"] = difference(share(100), share(95))
    assert not targets(row)["clean_drop_at_most_1_point"]
