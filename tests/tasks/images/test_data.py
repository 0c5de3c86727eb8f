import gzip
import shutil

import numpy as np
import pytest
import torch

from landform.errors import LandformError
from landform.tasks.images.data import DEFAULT_FOLDER, load_fashion_mnist, load_mnist, read_idx, seeded_subset

needs_data = pytest.mark.skipif(not (DEFAULT_FOLDER / "train-images-idx3-ubyte.gz").exists(),
                                reason="dataset-fashion-mnist is not installed")


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_read_idx_round_trip_and_corruption(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    _write_idx(tmp_path / "ok.gz", array)
    assert np.array_equal(read_idx(tmp_path / "ok.gz"), array)
    (tmp_path / "truncated.gz").write_bytes(gzip.compress(gzip.decompress((tmp_path / "ok.gz").read_bytes())[:-5]))
    with pytest.raises(LandformError, match="corrupted IDX"):
        read_idx(tmp_path / "truncated.gz")
    (tmp_path / "garbage.gz").write_bytes(b"not gzip at all")
    with pytest.raises(LandformError, match="corrupted IDX"):
        read_idx(tmp_path / "garbage.gz")
    _write_idx(tmp_path / "magic.gz", array)
    raw = bytearray(gzip.decompress((tmp_path / "magic.gz").read_bytes()))
    raw[2] = 0x0D
    (tmp_path / "magic.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(LandformError, match="magic"):
        read_idx(tmp_path / "magic.gz")


def test_missing_dataset_names_the_package_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDFORM_FASHION_MNIST", str(tmp_path))
    with pytest.raises(LandformError, match=r"apt-get install dataset-fashion-mnist.*LANDFORM_FASHION_MNIST"):
        load_fashion_mnist("test")


@needs_data
def test_splits_are_disjoint_and_sized(tmp_path, monkeypatch):
    train, train_labels = load_fashion_mnist("train")
    val, _ = load_fashion_mnist("val")
    test, _ = load_fashion_mnist("test")
    assert train.shape == (55000, 1, 28, 28) and val.shape == (5000, 1, 28, 28) and test.shape[0] == 10000
    assert float(train.min()) >= 0.0 and float(train.max()) <= 1.0 and set(train_labels.tolist()) == set(range(10))
    train_keys = {bytes(x.numpy().tobytes()) for x in train[:2000]}
    assert not any(bytes(x.numpy().tobytes()) in train_keys for x in val)
    # The folder option reads the same files from elsewhere.
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DEFAULT_FOLDER / name, tmp_path / name)
    assert torch.equal(load_fashion_mnist("test", folder=tmp_path)[0], test)


def test_mnist_is_out_of_distribution_digits():
    digits = load_mnist()
    assert digits.shape == (5000, 1, 28, 28) and float(digits.max()) == 1.0
    assert torch.equal(seeded_subset(digits, 5, 3), seeded_subset(digits, 5, 3))
