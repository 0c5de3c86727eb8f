"""DeepInverse integration: a deepinv physics after a generator is a landform ``Problem``, and a fitted landscape
is a deepinv ``Reconstructor``.

DeepInverse describes an imaging inverse problem as a ``Physics``: a forward operator A and a noise model. With
a generator G (latent -> image), reconstruction by latent optimization (CSGM: min_z ||A(G(z)) - y||²) is what
landform accelerates, with F = A ∘ G and x = z: ``problem_from_physics`` builds that Problem (its observations
drawn through deepinv's own noise model), ``landform.recipe.learn`` fits a landscape for it, and
``LandscapeReconstructor`` runs the landscape's tuned inference wherever deepinv takes a reconstructor.

Importing this module imports deepinv (``import_deepinv``): without it, a one-line ``LandformError`` says to
``pip install "landform[deepinv]"``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from landform.errors import LandformError
from landform.problem import Problem
from landform.recipe import Landscape

INSTALL = 'pip install "landform[deepinv]"'
CHUNK = 1024  # observations drawn per generator/physics pass (a training pool is thousands)
HELD_OUT = 0.1  # the share of a single ``data`` tensor kept for the test stream
TEST_SALT = 0x5EED_7E57  # xor-ed into the test stream's seeds, so one rng state draws different train and test data

# torchvision's compiled ops (``torchvision/_C``) are built against one torch: a CUDA torchvision beside a CPU
# torch (the registry's torchvision 0.28.0 is a CUDA build) cannot load them, and torchvision's import then
# fails where it registers fake kernels for these two ops, which only ``_C`` declares. deepinv imports
# torchvision eagerly but never calls them, so declaring the two schemas (no kernel) lets it import.
TORCHVISION_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                       "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_declared: list[torch.library.Library] = []  # the library holding the declarations: kept alive, or they vanish


def torchvision_ops_load() -> bool | None:
    """Whether torchvision's compiled ops load beside this torch (None: no torchvision installed). Looked up and
    loaded as torchvision itself does, without importing torchvision (the import is what fails)."""
    if "torchvision" in sys.modules:
        return bool(sys.modules["torchvision"].extension._has_ops())
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            library = Path(folder) / f"_C{suffix}"
            if library.exists():
                try:
                    torch.ops.load_library(str(library))
                except (ImportError, OSError):
                    return False
                return True
    return False


def declare_torchvision_ops() -> bool:
    """Declare ``torchvision::nms`` and ``qnms`` (schemas only) when torchvision's compiled ops cannot load, so
    that torchvision, and deepinv with it, imports; True if they are declared. With a torchvision built for this
    torch (e.g. both CUDA builds) it does nothing. Calling those two ops then raises; deepinv does not use them."""
    if _declared:
        return True
    if torchvision_ops_load() is not False:
        return False
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in TORCHVISION_SCHEMAS:
        if not hasattr(torch.ops.torchvision, schema.split("(")[0]):
            library.define(schema)
    _declared.append(library)
    return True


def import_deepinv() -> ModuleType:
    """``import deepinv``, after ``declare_torchvision_ops`` where torchvision needs it; a one-line
    ``LandformError`` naming the extra to install when deepinv is absent or cannot import."""
    if importlib.util.find_spec("deepinv") is None:
        raise LandformError(f"DeepInverse is not installed: {INSTALL}")
    declare_torchvision_ops()
    try:
        return importlib.import_module("deepinv")
    except ImportError as error:
        raise LandformError(f"deepinv failed to import ({error}); reinstall it with {INSTALL}") from None


dinv = import_deepinv()

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_per_example(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over everything but the batch dimension: one value per example."""
    return (y_hat - y).abs().square().flatten(1).mean(1)


def fidelity_loss() -> Loss:
    """deepinv's L2 data fidelity on measurements, ½||ŷ - y||² per example (``L2().d``: the distance that
    ``L2()(x, y, physics)`` applies after A), or per-example MSE where the installed deepinv has no such distance."""
    try:
        return dinv.optim.data_fidelity.L2().d
    except AttributeError:
        return mse_per_example


def measure(physics: Any, images: torch.Tensor, seed: int) -> torch.Tensor:
    """``physics(images)``: A and deepinv's noise model, its noise seeded by ``seed`` (the noise model's own rng
    where it has one, else torch's global one, whose state is restored afterwards)."""
    noise = getattr(physics, "noise_model", None)
    if getattr(noise, "rng", None) is not None:
        noise.rng_manual_seed(seed)
    devices = [images.device.index or 0] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        return physics(images).detach()


def split_data(data: torch.Tensor | Sequence[torch.Tensor] | None
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Train and test images: a pair as given, or a fixed split of one tensor (``HELD_OUT`` of it for test)."""
    if data is None:
        return None, None
    if isinstance(data, torch.Tensor):
        if data.shape[0] < 2:
            raise LandformError("data needs at least 2 images (some for training, some for testing)")
        order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0))
        held = max(1, int(data.shape[0] * HELD_OUT))
        return data[order[held:]], data[order[:held]]
    if len(data) != 2 or not all(isinstance(part, torch.Tensor) and part.shape[0] > 0 for part in data):
        raise LandformError("data must be an image tensor [N, C, H, W] or a (train, test) pair of them")
    return data[0], data[1]


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def problem_from_physics(physics: Any, generator: nn.Module, *, latent_shape: Sequence[int],
                         name: str = "deepinv", data: torch.Tensor | Sequence[torch.Tensor] | None = None,
                         loss: Loss | None = None) -> Problem:
    """A landform Problem for ``physics`` (a ``deepinv.physics.Physics``) through ``generator`` (latent -> image).

    F is ``physics.A(generator(x))`` and x, the variable landform descends on, is the generator's latent of
    ``latent_shape`` (per example). Observations are ``physics(image)`` (A, then deepinv's noise model) of
    generated images of seeded Gaussian latents, or of images drawn from ``data`` (a tensor, split once into
    train and test images, or a ``(train, test)`` pair). The train and test streams are seeded from the
    ``torch.Generator`` each draw is given, and differ for the same one. ``loss(y_hat, y)`` defaults to deepinv's
    L2 data fidelity (``fidelity_loss``) and must give one value per example.
    """
    latent_shape = tuple(int(s) for s in latent_shape)
    device = _device_of(generator)
    train_images, test_images = split_data(data)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return physics.A(generator(x))

    def stream(images: torch.Tensor | None, salt: int) -> Callable[[int, torch.Generator], torch.Tensor]:
        def draw(n: int, rng: torch.Generator) -> torch.Tensor:
            local = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=rng)) ^ salt)
            parts = []
            for start in range(0, max(n, 1), CHUNK):  # n = 0: one drawn, none returned
                size = min(CHUNK, max(n, 1) - start)
                with torch.no_grad():
                    if images is None:
                        clean = generator(torch.randn(size, *latent_shape, generator=local).to(device))
                    else:
                        clean = images[torch.randint(images.shape[0], (size,), generator=local)].to(device)
                parts.append(measure(physics, clean, int(torch.randint(2**62, (1,), generator=local))))
            return torch.cat(parts)[:n]
        return draw

    chosen = loss or fidelity_loss()
    with torch.no_grad():
        probe = forward(torch.zeros(2, *latent_shape, device=device))
        values = chosen(probe, probe)
    if tuple(values.shape) != (2,):
        if loss is not None:
            raise LandformError(f"loss must return one value per example, shape [B]; got {tuple(values.shape)} "
                                "for a batch of 2")
        chosen = mse_per_example
    return Problem(forward=forward, loss=chosen, x_shape=latent_shape, train_observations=stream(train_images, 0),
                   test_observations=stream(test_images, TEST_SALT), name=name)


class LandscapeReconstructor(dinv.models.Reconstructor):
    """A fitted landscape as a deepinv reconstructor: ``model(y, physics)`` runs the landscape's tuned inference
    on ``problem_from_physics(physics, generator, ...)`` for ``steps`` steps (default: the tuned number) and
    returns the image G(x*), so it goes wherever deepinv takes a reconstructor (``deepinv.test``, its metrics).

    The landscape is refused for a forward model other than the one it was fitted for (the same generator and
    operator); ``options`` go to ``Landscape.invert`` (e.g. ``allow_other_model=True`` to reuse one fitted with
    no operator, ``deepinv.physics.Denoising``, under another: it helps less).
    """

    def __init__(self, landscape: Landscape | str | Path, generator: nn.Module, *, latent_shape: Sequence[int],
                 steps: int | None = None, loss: Loss | None = None, device: str | torch.device = "cpu",
                 **options: Any) -> None:
        super().__init__(device=device)
        self.landscape = landscape if isinstance(landscape, Landscape) else Landscape.load(landscape)
        self.generator = generator
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.steps = steps
        self.loss = loss
        self.options = options
        self._last: tuple[Any, Problem] | None = None  # the last physics and its Problem (a tuple: not a submodule)

    def problem_for(self, physics: Any) -> Problem:
        """The Problem the landscape inverts for ``physics`` (rebuilt only when the physics changes)."""
        if self._last is None or self._last[0] is not physics:
            self._last = (physics, problem_from_physics(physics, self.generator, latent_shape=self.latent_shape,
                                                        loss=self.loss))
        return self._last[1]

    def invert(self, y: torch.Tensor, physics: Any) -> torch.Tensor:
        """The latents x* the landscape's inference finds for measurements ``y`` of ``physics``."""
        with torch.enable_grad():  # deepinv evaluates under no_grad; the inference descends by gradients
            return self.landscape.invert(y, self.problem_for(physics), steps=self.steps, device=y.device,
                                         **self.options).x

    def forward(self, y: torch.Tensor, physics: Any, **kwargs: Any) -> torch.Tensor:
        """The reconstructed images G(x*) for measurements ``y`` of ``physics``."""
        x = self.invert(y, physics)
        with torch.no_grad():
            return self.generator(x.to(y.device))
