"""The image task's encoder is the core's learned start: the shipped weights load into StartEncoder, and
`landform zoo train images-encoder` trains one through the core's train_start."""

import torch

from landform import zoo
from landform.start import StartEncoder
from landform.tasks.images.data import load_fashion_mnist
from landform.tasks.images.encoder import ZOO_NAME, load_encoder, make_encoder, train_encoder


def test_shipped_encoder_is_the_core_start_converted_from_the_previous_layout():
    encoder = load_encoder()
    assert isinstance(encoder, StartEncoder) and encoder.architecture == "conv"
    assert float(encoder.y_mean[0]) == 0.5 and float(encoder.y_scale[0]) == 0.5  # its input is 2y - 1, as trained
    assert not any(p.requires_grad for p in encoder.parameters())
    images = load_fashion_mnist("val")[0][:8]
    w = encoder(images)
    assert w.shape == (8, 64) and torch.isfinite(w).all() and float(w.std(dim=0).mean()) > 0.01
    assert "converted, exactly" in zoo.card(ZOO_NAME)


def test_trainer_trains_the_start_through_the_core_and_writes_its_entry(tmp_path):
    encoder = train_encoder(iterations=2, batch_size=4, check_every=1, val_count=8, progress=False, zoo_dir=tmp_path)
    assert isinstance(encoder, StartEncoder)
    state, config = zoo.load_pair(tmp_path / f"{ZOO_NAME}.safetensors")
    assert config["requires"]["zoo"] == {"images-generator": zoo.fingerprint("images-generator")}
    assert config["training"]["steps"] <= 2 and len(config["training"]["validation"]) >= 2
    rebuilt = StartEncoder.from_config(config["start"], "test")
    zoo.load_module_state(rebuilt, state, "test")
    assert rebuilt.config() == make_encoder().config()
    images = load_fashion_mnist("val")[0][:4]
    assert torch.equal(rebuilt.eval()(images), encoder(images))
    assert float(encoder.head.weight.abs().sum()) > 0  # trained away from its zero start
    card = (tmp_path / f"{ZOO_NAME}.md").read_text()
    assert "landform zoo train images-encoder" in card and "train_start" in card and "8 validation images" in card
