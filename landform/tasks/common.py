"""Image I/O shared by the tasks, so that no task imports another task's modules.

Fashion-MNIST: the four standard IDX ``.gz`` files, by default from Debian's ``dataset-fashion-mnist``
(/usr/share/datasets/fashion-mnist); ``folder=`` or the ``LANDFORM_FASHION_MNIST`` environment variable point
elsewhere. Images are float tensors [N, 1, 28, 28] in [0, 1]. The train/val split (5,000 held out of the
official train set with seed 0) is the one the images task uses. ``load_gray28`` reads a user's 28x28 grayscale
images (.png/.jpg or .npy) with one-line errors.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from landform.errors import LandformError

FASHION_MNIST_FOLDER = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
FASHION_MNIST_VALIDATION = 5000
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
    if len(raw) - header != int(np.prod(shape)):
        raise LandformError(f"corrupted IDX file {path}: {len(raw) - header} data bytes for shape {shape}")
    return np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=header).reshape(shape)


def _read_idx_once(path: Path) -> np.ndarray:
    """``read_idx``, decompressed once per process and file version (about 1 s for the training images, and
    the suite and the reports ask for the same split many times); the array is read-only."""
    try:
        stat = path.stat()
    except OSError:
        return read_idx(path)  # its own one-line error
    return _read_idx_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    return read_idx(path)


def load_fashion_mnist(split: str, folder: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 28, 28] in [0, 1] and labels [N] of a split: train (55,000), val (5,000 held out of
    the official train set with a fixed seed) or test (10,000)."""
    if split not in ("train", "val", "test"):
        raise LandformError(f"unknown split {split!r}; use train, val or test")
    root = Path(folder or os.environ.get("LANDFORM_FASHION_MNIST") or FASHION_MNIST_FOLDER)
    image_file, label_file = FASHION_MNIST_FILES["test" if split == "test" else "train"]
    if not (root / image_file).exists():
        raise LandformError(f"Fashion-MNIST not found in {root}: run `apt-get install dataset-fashion-mnist`, "
                            "or set LANDFORM_FASHION_MNIST to a folder with the four IDX .gz files")
    images, labels = _read_idx_once(root / image_file), _read_idx_once(root / label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise LandformError(f"unexpected Fashion-MNIST shapes in {root}: {images.shape}, {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    if split == "test":
        return x, y
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    index = order[:FASHION_MNIST_VALIDATION] if split == "val" else order[FASHION_MNIST_VALIDATION:]
    return x[index], y[index]


def load_gray28(inputs: list[str]) -> torch.Tensor:
    """A user's images as [N, 1, 28, 28] in [0, 1]: 28x28 grayscale image files, or .npy arrays of shape
    (28, 28), (1, 28, 28) or (N, 1, 28, 28) with values in [0, 1]. No resizing."""
    from PIL import Image, UnidentifiedImageError

    if not inputs:
        raise LandformError("give at least one 28x28 grayscale image (.png) or .npy array")
    images = []
    for item in map(Path, inputs):
        if not item.exists():
            raise LandformError(f"no such file: {item}")
        if item.suffix.lower() == ".npy":
            try:
                array = np.load(item, allow_pickle=False).astype(np.float32)
            except (ValueError, OSError) as error:
                raise LandformError(f"cannot read array {item}: {error}") from None
            if array.ndim not in (2, 3, 4) or array.shape[-2:] != (28, 28) or \
                    (array.ndim >= 3 and array.shape[-3] != 1):
                raise LandformError(f"{item}: expected a 28x28 grayscale image, got an array of shape {array.shape}")
            if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
                raise LandformError(f"{item}: pixel values must lie in [0, 1], "
                                    f"got [{array.min():.3g}, {array.max():.3g}]")
            images.append(torch.from_numpy(array).reshape(-1, 1, 28, 28))
            continue
        try:
            with Image.open(item) as opened:
                size, mode = opened.size, opened.mode
                array = np.asarray(opened.convert("L"), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as error:
            raise LandformError(f"cannot read image {item}: {error}") from None
        if size != (28, 28):
            raise LandformError(f"{item}: expected a 28x28 image, got {size[0]}x{size[1]}")
        if mode not in ("L", "1", "P", "RGB", "RGBA", "LA"):
            raise LandformError(f"{item}: unsupported image mode {mode}")
        images.append(torch.from_numpy(array)[None, None])
    return torch.cat(images)


def fashion_mnist_folder(folder: str | Path | None = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files: ``folder``, else $LANDFORM_FASHION_MNIST, else Debian's."""
    return Path(folder or os.environ.get("LANDFORM_FASHION_MNIST") or FASHION_MNIST_FOLDER)
