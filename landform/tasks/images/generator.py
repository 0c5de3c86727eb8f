"""F for the image task: a small StyleGAN-like generator trained adversarially on Fashion-MNIST.

A mapping MLP turns a Gaussian noise vector into an intermediate latent w; a convolutional synthesis
network, modulated by w at every block (StyleGAN's style modulation, without its noise inputs), draws a
28x28 image. X, the space the paper inverts, is w: like StyleGAN inversion in W (Abdal et al.), it is the
latent the synthesis network is a deterministic function of, and it is better conditioned than the noise.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as functional
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from landform import zoo
from landform.progress import progress_bar
from landform.tasks import runs_dir
from landform.tasks.images.data import load_fashion_mnist
from landform.zoo import load_pair, save_pair

NOISE_DIM = 64
W_DIM = 64
ZOO_NAME = "images-generator"


class StyleBlock(nn.Module):
    """Upsample x2, 3x3 conv, then a per-channel scale and shift predicted from w, then LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.style = nn.Linear(w_dim, 2 * out_channels)

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            h = functional.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv(h)
        scale, shift = self.style(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return functional.leaky_relu(h * (1 + scale) + shift, 0.2)


class Generator(nn.Module):
    """``mapping(noise) -> w`` and ``forward(w) -> image`` [B, 1, 28, 28] in [0, 1]."""

    def __init__(self, noise_dim: int = NOISE_DIM, w_dim: int = W_DIM, channels: int = 64) -> None:
        super().__init__()
        self.noise_dim, self.w_dim, self.channels = noise_dim, w_dim, channels
        self.mapping = nn.Sequential(nn.Linear(noise_dim, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128),
                                     nn.LeakyReLU(0.2), nn.Linear(128, w_dim))
        self.stem = nn.Linear(w_dim, channels * 7 * 7)
        self.block7 = StyleBlock(channels, channels, w_dim, upsample=False)
        self.block14 = StyleBlock(channels, channels // 2, w_dim)
        self.block28 = StyleBlock(channels // 2, channels // 4, w_dim)
        self.to_image = nn.Conv2d(channels // 4, 1, 3, padding=1)
        self.register_buffer("w_mean", torch.zeros(w_dim))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        h = functional.leaky_relu(self.stem(w), 0.2).view(-1, self.channels, 7, 7)
        h = self.block28(self.block14(self.block7(h, w), w), w)
        return torch.sigmoid(self.to_image(h))

    def sample_w(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(n, self.noise_dim, generator=generator).to(self.w_mean.device)
        return self.mapping(noise)

    def config(self) -> dict:
        return {"noise_dim": self.noise_dim, "w_dim": self.w_dim, "channels": self.channels}


class Discriminator(nn.Module):
    """A spectrally normalized conv net scoring 28x28 images (hinge loss)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(1, channels, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(channels, 2 * channels, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * channels, 4 * channels, 3, 2, 1)), nn.LeakyReLU(0.2),
            nn.Flatten(), spectral_norm(nn.Linear(4 * channels * 4 * 4, 1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1).squeeze(1)


def load_generator(path: Path | None = None, device: str | torch.device = "cpu") -> Generator:
    """The shipped generator (EMA weights), frozen and in eval mode."""
    state, config = load_pair(path) if path is not None else zoo.load(ZOO_NAME)
    generator = Generator(**{k: config[k] for k in ("noise_dim", "w_dim", "channels")} if config else {})
    zoo.load_module_state(generator, {k: v.float() for k, v in state.items()}, str(path or zoo.path(ZOO_NAME)))
    return generator.to(device).eval().requires_grad_(False)


def train_generator(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                    iterations: int = 4000, batch_size: int = 64, run_dir: Path | None = None,
                    zoo_dir: Path | None = None) -> Generator:
    """Train the GAN on the Fashion-MNIST train split (hinge loss, spectral-norm D, EMA of G), resumable
    from ``run_dir``; writes the zoo entry ``images-generator`` with its card and a sample grid."""
    torch.manual_seed(seed)
    images, _ = load_fashion_mnist("train")
    generator, ema, discriminator = Generator().to(device), Generator().to(device), Discriminator().to(device)
    ema.load_state_dict(generator.state_dict())
    ema.requires_grad_(False)
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.0, 0.99))
    sampler = torch.Generator().manual_seed(seed)
    start, elapsed = 0, 0.0
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / ZOO_NAME
    checkpoint = run_dir / "checkpoint.safetensors"
    if resume and checkpoint.exists():
        tensors, meta = load_pair(checkpoint)
        generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("g.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("d.")})
        zoo.load_optimizer_tensors(g_opt, tensors, prefix="gopt")
        zoo.load_optimizer_tensors(d_opt, tensors, prefix="dopt")
        sampler.set_state(tensors["rng.sampler"])
        torch.set_rng_state(tensors["rng.torch"])
        start, elapsed = meta["iteration"], meta["seconds"]
    started = time.perf_counter() - elapsed
    bar = progress_bar(range(start, iterations), enabled=progress, initial=start, total=iterations, desc="GAN")
    for iteration in bar:
        real = images[torch.randint(images.shape[0], (batch_size,), generator=sampler)].to(device)
        noise = torch.randn(batch_size, NOISE_DIM, generator=sampler).to(device)
        fake = generator(generator.mapping(noise))
        d_loss = (functional.relu(1 - discriminator(real)).mean()
                  + functional.relu(1 + discriminator(fake.detach())).mean())
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        g_loss = -discriminator(fake).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        with torch.no_grad():
            for target, source in zip(ema.parameters(), generator.parameters(), strict=True):
                target.lerp_(source, 1 - 0.999)
        if iteration % 50 == 0:
            bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}")
        if (iteration + 1) % 500 == 0 or iteration + 1 == iterations:
            tensors = {**{f"g.{k}": v for k, v in generator.state_dict().items()},
                       **{f"ema.{k}": v for k, v in ema.state_dict().items()},
                       **{f"d.{k}": v for k, v in discriminator.state_dict().items()},
                       **zoo.optimizer_tensors(g_opt, "gopt"), **zoo.optimizer_tensors(d_opt, "dopt"),
                       "rng.sampler": sampler.get_state(), "rng.torch": torch.get_rng_state()}
            save_pair(checkpoint, tensors, {"iteration": iteration + 1,
                                            "seconds": time.perf_counter() - started})
    seconds = time.perf_counter() - started
    with torch.no_grad():
        ema.w_mean.copy_(ema.sample_w(10000, torch.Generator().manual_seed(1)).mean(0))
    _write_zoo_entry(ema, iterations=iterations, batch_size=batch_size, seconds=seconds, seed=seed, zoo_dir=zoo_dir)
    return ema.eval()


def _write_zoo_entry(generator: Generator, *, iterations: int, batch_size: int, seconds: float, seed: int,
                     zoo_dir: Path | None) -> None:
    from landform.tasks.images.figures import save_grid

    folder = zoo_dir or zoo.ZOO_DIR
    with torch.no_grad():
        samples = generator(generator.sample_w(64, torch.Generator().manual_seed(seed + 1)))
    save_grid(folder / f"{ZOO_NAME}.png", samples, rows=8)
    params = sum(p.numel() for p in generator.parameters())
    card = f"""# images-generator

A StyleGAN-like generator for 28x28 grayscale Fashion-MNIST (the F that the image task inverts).

- **Architecture**: mapping MLP (noise {NOISE_DIM} -> 128 -> 128 -> w {W_DIM}); synthesis from w: linear
  to {generator.channels}x7x7, three style-modulated 3x3 conv blocks (7x7, 14x14, 28x28; per-channel scale
  and shift predicted from w), a one-channel output conv and a sigmoid. {params:,} parameters, float32.
- **X (the inverted input)**: w, {W_DIM} dimensions, as StyleGAN inversion in W space (Abdal et al.). The
  buffer `w_mean` is the mean w of 10,000 samples, the baseline's start point.
- **Data**: Fashion-MNIST train split minus the 5,000-image validation split (seed 0), i.e. 55,000
  images in [0, 1]; the test split is never seen.
- **Training**: hinge GAN loss, spectral-norm discriminator, Adam lr 2e-4 betas (0, 0.99), batch
  {batch_size}, {iterations} iterations, exponential moving average of G (0.999), which is what ships.
  Seed {seed}. Took {seconds / 60:.1f} minutes on this machine's CPU (2 cores).
- **Reproduce**: `landform zoo train images-generator` (resumes from runs/images-generator/).
- **Samples**: `images-generator.png` (64 samples of the shipped weights).
"""
    zoo.save(ZOO_NAME, generator.state_dict(), {**generator.config(), "iterations": iterations}, card,
             directory=folder)
