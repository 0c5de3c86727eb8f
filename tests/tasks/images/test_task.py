"""The image task end to end on the shipped weights, at a size that runs in seconds."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import landform.tasks.images.user as user
from landform import Mapping, zoo
from landform.comparison import DEFAULT_MODE, SWEEP_LRS, Method
from landform.errors import LandformError
from landform.landscape import Landscape
from landform.tasks import RUNS_ENV
from landform.tasks.images import compare_inputs, demo, invert_inputs, load_models
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.encoder import load_encoder
from landform.tasks.images.generator import Generator, load_generator
from landform.tasks.images.task import ANCHORED_NAME, LANDSCAPE_NAME, SETTINGS, run_comparison, shipped_settings
from landform.tasks.images.user import STEP_SIZES_CACHE


def test_shipped_generator_draws_varied_images_in_range():
    generator = load_generator()
    with torch.no_grad():
        images = generator(generator.sample_w(16, torch.Generator().manual_seed(0)))
    assert images.shape == (16, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert float(images.std(dim=0).mean()) > 0.05  # not one image sixteen times
    assert not any(p.requires_grad for p in generator.parameters())


def test_weights_that_do_not_match_the_model(tmp_path):
    state = Generator(channels=32).state_dict()
    zoo.save_pair(tmp_path / "g.safetensors", state, {"noise_dim": 64, "w_dim": 64, "channels": 64})
    with pytest.raises(LandformError, match="do not match"):
        load_generator(tmp_path / "g.safetensors")


def test_every_shipped_image_model_has_a_card_with_its_command():
    for name in ("images-generator", "images-encoder", "images-landscape"):
        assert zoo.path(name).exists()
        assert f"landform zoo train {name}" in zoo.card(name)
        assert zoo.path(name).stat().st_size < 8 * 2**20


def test_demo_writes_the_report_with_the_issue_keys(tmp_path):
    summary = demo(tmp_path, count=4, val_count=2, steps=6, progress=False, spectrum_count=3)
    for split in ("in_distribution", "ood"):
        block = summary[split]
        for key in ("steps", "baseline", "landscape", "landscape_pure", "encoder_init", "encoder_init_lr",
                    "encoder", "speedup_at_20", "speedup_at_20_ci95", "improvement_at_200",
                    "improvement_at_200_ci95", "steps_to_beat_encoder", "seconds_per_step", "count",
                    "seconds_to_baseline_20", "seconds_to_baseline_200", "steps_to_baseline_200"):
            assert key in block, key
        assert block["count"] == 4 and block["steps"] == [0, 1, 2, 5]
        assert block["baseline_lr"] in (0.5, 0.1, 0.05, 0.01, 0.001)
        assert block["encoder_init_lr"] in (0.5, 0.1, 0.05, 0.01, 0.001)
        assert block["encoder_init"][0] == pytest.approx(block["encoder"], rel=1e-4)  # starts at E(y)
        low, high = block["improvement_at_200_ci95"]
        assert low <= block["improvement_at_200"] <= high
        # The default mode starts at the better of E(y) + Θ(0) and the mean w, image by image.
        assert block["landscape"][0] <= min(block["baseline"][0], block["landscape_pure"][0]) + 1e-6 or \
            block["landscape"][0] <= block["encoder_init"][0] + 1e-6
    rows = summary["spectrum"]["rows"]
    assert {"fashion (in distribution)", "mnist", "white noise", "faces (LFW)"} <= set(rows)
    assert rows["mnist"]["improvement_at_200"] == summary["ood"]["improvement_at_200"]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["in_distribution"]["landscape"] == summary["in_distribution"]["landscape"]
    for name in ("curves.png", "curves.csv", "process_in_distribution.png", "process_ood.png", "spectrum.png",
                 "encoder_vs_ours_in_distribution.png", "completions.png", "summary.md"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert "encoder_init" in (tmp_path / "summary.md").read_text()
    assert summary["completions"]["hidden_pixel_std_across_hypotheses"]["top half observed"] > 0


def test_landscape_is_ahead_of_the_baseline_after_two_steps():
    """The shipped Θ's claim, on a handful of test images: at step 2, ours is below the baseline at its
    best swept learning rate."""
    from landform import invert
    from landform.tasks.images.data import load_fashion_mnist, seeded_subset

    models = load_models()
    images = seeded_subset(load_fashion_mnist("test")[0], 8, 1)
    ours = invert(models.generator, models.loss, images, mapping=models.mapping, steps=2).losses.mean(1)
    start = models.generator.w_mean.expand(8, -1)
    best = min(float(invert(models.generator, models.loss, images, init=start, lr=lr, steps=2).losses.mean(1)[2])
               for lr in (0.5, 0.1, 0.05))
    assert float(ours[2]) < best


def test_user_images_any_size_and_colour(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))

    rgb = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    invert_inputs([str(tmp_path / "photo.png")], tmp_path / "inv", steps=3, progress=False)
    assert "converted RGB 40x30 to grayscale 28x28" in capsys.readouterr().out
    tensors, _meta = zoo.load_pair(tmp_path / "inv" / "latents.safetensors")
    assert tensors["w"].shape == (1, 64) and tensors["reconstruction"].shape == (1, 1, 28, 28)
    with pytest.raises(LandformError, match="cannot read image"):
        invert_inputs([str(tmp_path / "broken.png")], tmp_path / "bad", steps=1, progress=False)
    with pytest.raises(LandformError, match="no such image"):
        invert_inputs([str(tmp_path / "missing.png")], tmp_path / "bad", steps=1, progress=False)
    summary = compare_inputs([str(tmp_path / "photo.png")], tmp_path / "cmp", steps=4, progress=False)
    assert set(summary["user"]) >= {"baseline", "encoder_init", "landscape", "landscape_pure", "encoder",
                                    "speedup_at_20", "improvement_at_200"}
    assert (tmp_path / "cmp" / "curves.png").exists()
    swept = summary["user"]
    assert swept["step_sizes_from"] == str(tmp_path / "runs" / STEP_SIZES_CACHE) and swept["lr_sweep"]["baseline"]

    # The same settings again: the kept sweep is reused (no validation inversion), with the same step sizes.
    def no_validation(*args, **kwargs):
        assert args[2] is None, "swept again although a matching sweep was kept"
        return run_comparison(*args, **kwargs)

    monkeypatch.setattr(user, "run_comparison", no_validation)
    again = compare_inputs([str(tmp_path / "photo.png")], tmp_path / "cmp2", steps=4, progress=False)["user"]
    assert again["lr"] == swept["lr"] and again["lr_x"] == swept["lr_x"] and again["lr_sweep"] == swept["lr_sweep"]
    assert again["baseline"] == swept["baseline"]  # the same inversion of the same photo


def test_the_shipped_step_sizes_match_the_shipped_models():
    """The kept sweep for `landform compare --task images` at its defaults belongs to the models in the zoo (a
    retrained model without a fresh sweep would fail here) and fixes every method's step size."""
    record, source = user.stored_step_sizes(user.sweep_key(seed=0, steps=200, mode=DEFAULT_MODE))
    assert source == user.STEP_SIZES, "no shipped sweep for the default settings of the current zoo"
    assert set(record["lr"]) == {m.name for m in load_models().methods()}
    assert all(rate in SWEEP_LRS for rate in (record["lr"]["baseline"], record["lr"]["encoder_init"]))


def test_models_fitted_for_another_generator_are_refused(monkeypatch):
    monkeypatch.setattr(zoo, "fingerprint", lambda name, directory=None: "0123456789abcdef")
    with pytest.raises(LandformError, match="was fitted for another images-generator") as error:
        load_models()
    assert "`landform zoo train images-" in str(error.value) and "\n" not in str(error.value)


def test_the_default_is_a_landscape_whose_methods_invert_as_the_hand_assembled_ones_did():
    """The default mode loads as one Landscape (the encoder's start, the shipped learned steps, the anchored Θ,
    the tuned settings), and the methods built from it give bit-identical inversions to those assembled by hand
    from the same zoo files: the reports' numbers do not move."""
    models = load_models()
    settings = shipped_settings()
    assert isinstance(models.landscape, Landscape) and models.landscape.settings == settings
    assert (settings.learned_steps > 0) == (models.landscape.steps is not None)
    assert replace(settings, learned_steps=0, lr_z=SETTINGS.lr_z, lr_x=SETTINGS.lr_x) == SETTINGS
    lead = {"lead": models.landscape.steps, "lead_count": settings.learned_steps} if settings.learned_steps else {}
    assert set(models.landscape.requires["zoo"]) == {"images-generator"}
    encoder, anchored = load_encoder(), Mapping.load(zoo.ZOO_DIR / ANCHORED_NAME)
    pure = Mapping.load(zoo.ZOO_DIR / LANDSCAPE_NAME)
    old_problem = replace(models.problem(), base=encoder)

    def old_landscape(mode: str) -> Method:  # ImageModels.methods as it was written out
        return Method("landscape", mapping=anchored, mode=mode, lr=settings.lr_z, use_base=True,
                      starts=(models.mean_start,), lr_x=(0.5, 0.3, 0.1), warmup=20, **lead)

    old_pure = Method("landscape_pure", mapping=pure, mode="pure", lr=0.1)
    images = seeded_subset(load_fashion_mnist("test")[0], 3, 5)

    def same(new: Method, old: Method, lr: float, lr_x: float | None = None) -> None:
        runs = [replace(m, lr_x=lr_x if lr_x is not None else m.lr_x).run(p, images, lr, steps=4, seed=0)
                for m, p in ((new, models.problem()), (old, old_problem))]
        assert torch.equal(runs[0].x, runs[1].x) and torch.equal(runs[0].losses, runs[1].losses), new.name

    for mode in ("residual", "handoff"):
        new = {m.name: m for m in models.methods(mode, lrs=(0.5, 0.1))}
        assert list(new) == ["baseline", "encoder_init", "landscape", "landscape_pure"]
        assert new["landscape"].lr_x == (0.5, 0.3, 0.1) and new["landscape"].warmup == 20
        same(new["landscape"], old_landscape(mode), settings.lr_z, lr_x=0.3)
        same(new["encoder_init"], Method("encoder_init", use_base=True, lr=(0.5, 0.1)), 0.5)
        same(new["baseline"], Method("baseline", init=models.mean_start, lr=(0.5, 0.1)), 0.5)
        same(new["landscape_pure"], old_pure, 0.1)
    # `landform invert --task images`: no sweep, the tuned step sizes.
    ours = models.default_method()
    assert (ours.lr, ours.lr_x, ours.lead_count) == (settings.lr_z, settings.lr_x, settings.learned_steps)
    same(ours, replace(old_landscape("residual"), lr_x=settings.lr_x), ours.lr)
    same(models.pure_method(), replace(old_pure, lr_x=0.5), models.pure_method().lr)
