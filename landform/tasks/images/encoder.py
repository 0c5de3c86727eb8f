"""Encoder-based inference, the paper's pSp comparison: a CNN from an image to the generator's w.

The encoder is the core's learned start (``landform.start.StartEncoder``, its conv architecture), trained by
the core's ``train_start`` through the frozen generator on real Fashion-MNIST train images: pixel MSE of
G(E(image)) (pSp's reconstruction objective), plus pSp's latent term on generated images (E(G(w)) ≈ w, w
from the generator's prior) that keeps its outputs where the generator was trained.
"""

from __future__ import annotations

from pathlib import Path

import torch

from landform import zoo
from landform.errors import LandformError
from landform.start import StartEncoder, train_start
from landform.tasks.images.data import load_fashion_mnist
from landform.tasks.images.generator import W_DIM, load_generator
from landform.tasks.images.generator import ZOO_NAME as GENERATOR_NAME

ZOO_NAME = "images-encoder"
FITTED_ON = {GENERATOR_NAME: "generator"}  # every image model is fitted on the generator (older entries: "generator")
IMAGE_SHAPE = (1, 28, 28)
CHANNELS, HIDDEN = 32, 256


def make_encoder() -> StartEncoder:
    """An untrained encoder of the shipped architecture: [B, 1, 28, 28] in [0, 1] -> w [B, w_dim]."""
    return StartEncoder(IMAGE_SHAPE, (W_DIM,), architecture="conv", channels=CHANNELS, hidden=HIDDEN)


def load_encoder(device: str | torch.device = "cpu") -> StartEncoder:
    """The shipped encoder, frozen, in eval mode, checked to be fitted on the shipped generator."""
    state, config = zoo.load_checked(ZOO_NAME, FITTED_ON)
    source = str(zoo.path(ZOO_NAME))
    if "start" not in config:
        raise LandformError(f"{source} holds an encoder of an older layout; retrain it with "
                            f"`landform zoo train {ZOO_NAME}`")
    encoder = StartEncoder.from_config(config["start"], source)
    zoo.load_module_state(encoder, state, source)
    return encoder.to(device).eval().requires_grad_(False)


def pixel_mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error, one value per image."""
    return (y_hat - y).pow(2).flatten(1).mean(1)


def train_encoder(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                  iterations: int = 1500, batch_size: int = 64, latent_weight: float = 0.1, lr: float = 1e-3,
                  check_every: int = 100, patience: int = 4, val_count: int = 1000, seconds: float = 3600.0,
                  zoo_dir: Path | None = None) -> StartEncoder:
    """Train the encoder (minutes on a CPU) with the core's ``train_start`` and write the zoo entry
    ``images-encoder`` with its card into ``zoo_dir`` (default the package's zoo; the generator is read from
    there when it holds one). The best of the validation checks (``val_count`` validation images every
    ``check_every`` steps) is kept; Adam's step size is halved at every check that does not improve."""
    del resume  # short enough to run in one go: no checkpoints, so no run_dir
    torch.manual_seed(seed)
    generator = load_generator(zoo.path(GENERATOR_NAME, zoo_dir), device=device)
    images, _ = load_fashion_mnist("train")
    val = load_fashion_mnist("val")[0][:val_count]
    encoder = make_encoder()
    training = train_start(encoder, generator, pixel_mse, images, val, seconds=seconds, max_steps=iterations,
                           batch_size=batch_size, lr=lr, check_every=check_every, patience=patience, seed=seed,
                           device=device, progress=progress, prior=generator.sample_w, prior_weight=latent_weight,
                           prior_batch=batch_size)
    with torch.no_grad():
        val_mse = float(pixel_mse(generator(encoder(val.to(device))), val.to(device)).mean())
    objective = (f"`landform.start.train_start`: pixel MSE of G(E(image)) on real images + {latent_weight} x "
                 f"MSE(E(G(w)), w) on\n  w drawn from the generator's prior; Adam lr {lr}, halved at every "
                 f"validation check ({val_count} images, every {check_every}\n  steps) that does not improve, "
                 f"the best check kept; batch {batch_size}, {training.steps} of at most {iterations} steps "
                 f"({training.stopped}), seed {seed}.")
    card = encoder_card(encoder, objective=objective, seconds=training.seconds, val_mse=val_mse, val_count=val.shape[0])
    zoo.save(ZOO_NAME, encoder.state_dict(),
             {"w_dim": W_DIM, "channels": encoder.channels, "start": encoder.config(), "training": training.as_dict(),
              "val_mse": val_mse, "requires": zoo.requirements(FITTED_ON, zoo_dir)},
             card, directory=zoo_dir)
    return encoder


def encoder_card(encoder: StartEncoder, *, objective: str, seconds: float, val_mse: float, val_count: int = 1000,
                 provenance: str = "") -> str:
    """The model card of ``images-encoder``."""
    parameters = sum(p.numel() for p in encoder.parameters())
    mean, scale = float(encoder.y_mean[0]), float(encoder.y_scale[0])
    return f"""# images-encoder

Encoder-based inference for the image task (the paper's pSp comparison): image -> w of images-generator.

- **Architecture**: the core's learned start (`landform.start.StartEncoder`, {encoder.describe()}): the
  image standardized ((y - {mean:.4g}) / {scale:.4g}), three stride-2 3x3 convs \
({encoder.channels}, {2 * encoder.channels}, {4 * encoder.channels} channels, LeakyReLU 0.2),
  linear {4 * encoder.channels * 16} -> {encoder.hidden} -> {W_DIM}. {parameters:,} parameters.
- **Data**: Fashion-MNIST train split minus the 5,000-image validation split (seed 0).
- **Objective**: {objective}
- **Training time**: {seconds / 60:.1f} minutes on this machine's CPU.
- **Metric**: reconstruction MSE on {val_count:,} validation images: {val_mse:.4f}.
- **Reproduce**: `landform zoo train images-encoder` (needs images-generator).{provenance}
"""
