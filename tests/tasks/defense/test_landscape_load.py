"""The defense's shipped default loads as a Landscape (``zoo.load_landscape``), and defends bitwise as the
direct loading of its Θ and hand-held settings did."""

import numpy as np
import pytest
import torch

from landform import zoo
from landform.landscape import Landscape
from landform.mapping import Mapping
from landform.tasks.defense.defense import load_landscape, ours_settings, reverse
from landform.tasks.defense.models import load_model
from landform.tasks.defense.task import invert_inputs


def _old_theta(recipe: str) -> tuple[Mapping, dict]:
    """What the defense loaded before: the Θ file read directly, and its JSON config."""
    path = zoo.path(f"defense-{recipe}-theta")
    return Mapping.load(path).requires_grad_(False).eval(), Mapping.config_of(path)


@pytest.mark.parametrize("recipe", ["pgd", "trades"])
def test_the_defense_loads_as_a_landscape(recipe):
    landscape = load_landscape(recipe)
    mapping, config = _old_theta(recipe)
    assert isinstance(landscape, Landscape) and landscape.start is None and landscape.settings.mode == "pure"
    assert landscape.settings.lr_z == config["settings"]["lr_z"] and landscape.settings.lr_x == config["baseline"]["lr"]
    assert landscape.requires["zoo"] == {f"defense-{recipe}": zoo.fingerprint(f"defense-{recipe}")}
    old = mapping.state_dict()
    assert all(torch.equal(v, old[k]) for k, v in landscape.mapping.state_dict().items())
    assert ours_settings(landscape, hardened=True)["steps"] == 5 and ours_settings(landscape)["steps"] == 1


def test_defended_images_are_bitwise_those_of_the_old_path(tmp_path):
    x = torch.from_numpy(np.random.default_rng(3).random((3, 1, 28, 28)).astype(np.float32))
    np.save(tmp_path / "x.npy", x.numpy())
    invert_inputs([str(tmp_path / "x.npy")], tmp_path / "out", progress=False, seed=2)
    model = load_model("pgd")
    mapping, config = _old_theta("pgd")
    lr_z, base_lr = config["settings"]["lr_z"], config["baseline"]["lr"]
    old = {"defended_1_step": reverse(model, x, mapping=mapping, steps=1, lr=lr_z, seed=2).x,
           "defended": reverse(model, x, mapping=mapping, steps=5, lr=lr_z, seed=2, start_scale=0.5).x,  # hardened
           "defended_baseline": reverse(model, x, steps=40, lr=base_lr, seed=2).x}
    for name, tensor in old.items():
        assert np.array_equal(np.load(tmp_path / "out" / f"{name}.npy"), tensor.numpy()), name
