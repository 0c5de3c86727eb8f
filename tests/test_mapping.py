import json

import pytest
import torch

from landform import LandformError, Mapping


def test_shape_and_layers():
    mapping = Mapping(5, (2, 3), hidden=7)
    x = mapping(torch.randn(4, 5))
    assert x.shape == (4, 2, 3)
    linears = [m for m in mapping.net if isinstance(m, torch.nn.Linear)]
    activations = [m for m in mapping.net if isinstance(m, torch.nn.LeakyReLU)]
    assert [layer.out_features for layer in linears] == [7, 7, 6]
    assert len(activations) == 2 and all(a.negative_slope == 0.2 for a in activations)


def test_additive_form_adds_base():
    mapping = Mapping(3, (4,), hidden=8, additive=True)
    z, base = torch.randn(2, 3), torch.randn(2, 4)
    assert torch.allclose(mapping(z, base) - base, mapping.net(z))
    with pytest.raises(LandformError, match="base"):
        mapping(z)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    mapping = Mapping(6, (3, 2), hidden=16, additive=True)
    mapping.save(tmp_path / "theta")
    loaded = Mapping.load(tmp_path / "theta")
    z, base = torch.randn(5, 6), torch.randn(5, 3, 2)
    assert torch.equal(mapping(z, base), loaded(z, base))
    assert loaded.config() == mapping.config()
    assert torch.equal(Mapping.load(tmp_path / "theta.safetensors")(z, base), mapping(z, base))


def test_missing_and_corrupted_checkpoints(tmp_path):
    with pytest.raises(LandformError, match="not found"):
        Mapping.load(tmp_path / "nothing")
    Mapping(2, 2, hidden=4).save(tmp_path / "theta")
    (tmp_path / "theta.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(LandformError, match="corrupted"):
        Mapping.load(tmp_path / "theta")


def test_weights_that_do_not_match_config(tmp_path):
    Mapping(2, 2, hidden=4).save(tmp_path / "a")
    Mapping(2, 2, hidden=8).save(tmp_path / "b")
    (tmp_path / "b.json").write_text((tmp_path / "a.json").read_text())
    with pytest.raises(LandformError, match="do not match"):
        Mapping.load(tmp_path / "b")


def test_refuses_to_save_non_finite_weights(tmp_path):
    mapping = Mapping(2, 2, hidden=4)
    with torch.no_grad():
        mapping.net[0].weight[0, 0] = float("nan")
    with pytest.raises(LandformError, match="non-finite"):
        mapping.save(tmp_path / "bad")
    assert not (tmp_path / "bad.safetensors").exists()


def test_the_mismatch_message_names_the_tensor_and_both_shapes(tmp_path):
    Mapping(2, 2, hidden=4).save(tmp_path / "a")
    Mapping(2, 2, hidden=8).save(tmp_path / "b")
    (tmp_path / "b.json").write_text((tmp_path / "a.json").read_text())
    with pytest.raises(LandformError, match=r"net\.0\.weight has shape \[8, 2\], the config needs \[4, 2\]"):
        Mapping.load(tmp_path / "b")


@pytest.mark.parametrize("change, message", [
    (lambda c: [c], "expected a JSON object"),
    (lambda c: {k: v for k, v in c.items() if k != "z_dim"}, "lacks z_dim"),
    (lambda c: {**c, "hidden": 10**9}, "hidden must be an integer"),
    (lambda c: {**c, "hidden": True}, "hidden must be an integer"),
    (lambda c: {**c, "x_shape": "2"}, "x_shape must be a list"),
    (lambda c: {**c, "additive": 1}, "additive must be true or false"),
    (lambda c: {**c, "kind": "something else"}, "not a landform Mapping config"),
    (lambda c: {**c, "hidden": 20000}, "do not match their config"),
])
def test_a_bad_config_is_refused_before_any_module_is_built(change, message, tmp_path, monkeypatch):
    Mapping(2, 2, hidden=4).save(tmp_path / "theta")
    config = json.loads((tmp_path / "theta.json").read_text())
    (tmp_path / "theta.json").write_text(json.dumps(change(config)))

    def no_allocation(*args, **kwargs):
        raise AssertionError("a module was built from an unchecked config")

    monkeypatch.setattr(torch.nn, "Linear", no_allocation)
    with pytest.raises(LandformError, match=message):
        Mapping.load(tmp_path / "theta")


def test_integer_and_non_finite_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    mapping = Mapping(2, 2, hidden=4)
    mapping.save(tmp_path / "theta")
    state = mapping.state_dict()
    save_file({k: v.to(torch.int32) for k, v in state.items()}, str(tmp_path / "theta.safetensors"))
    with pytest.raises(LandformError, match=r"different saves|floating point"):
        Mapping.load(tmp_path / "theta")
    config = Mapping.config_of(tmp_path / "theta")  # without the weights' hash, so the dtype check is reached
    (tmp_path / "theta.json").write_text(json.dumps(config))
    with pytest.raises(LandformError, match=r"must be floating point; net\.0\.weight is I32"):
        Mapping.load(tmp_path / "theta")
    save_file({**state, "net.2.bias": state["net.2.bias"] * float("inf")}, str(tmp_path / "theta.safetensors"))
    with pytest.raises(LandformError, match="non-finite"):
        Mapping.load(tmp_path / "theta")


def test_load_follows_a_fit_checkpoint(problem, tmp_path):
    from landform import fit

    mapping = Mapping(16, (16,), hidden=8)
    fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=2, trajectories=8, steps=3,
        batch_size=8, checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "LATEST").read_text().strip() == "ckpt-000002"
    loaded = Mapping.load(tmp_path)
    assert all(torch.equal(p, q) for p, q in zip(mapping.parameters(), loaded.parameters(), strict=True))
    assert Mapping.config_of(tmp_path)["rounds_completed"] == 2
