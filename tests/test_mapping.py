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
