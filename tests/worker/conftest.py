"""Fixtures for worker tests: a private Keras cache holding small files in Keras' real formats.

The ``write_*`` functions lay files out exactly as ``keras.utils.get_file`` leaves them under
``$KERAS_HOME/datasets`` (CIFAR as its extracted folder), so loaders read them without network;
``write_gtsrb`` writes tiny copies of GTSRB's official zips, to be fetched like the real ones.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _labels(n: int, num_classes: int) -> np.ndarray:
    """Labels cycling through every class, so each class gets n // num_classes examples."""
    return (np.arange(n) % num_classes).astype(np.uint8)


def _pixels(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _word_lists(rng: np.random.Generator, n: int, max_word: int, lengths: tuple[int, int]) -> np.ndarray:
    """Ragged raw word ids (1..max_word) as the object array Keras' imdb/reuters npz files hold."""
    seqs = np.empty(n, dtype=object)
    for i in range(n):
        seqs[i] = rng.integers(1, max_word + 1, size=int(rng.integers(*lengths))).tolist()
    return seqs


def write_mnist(
    root: Path, n_train: int = 50, n_test: int = 20, num_classes: int = 10, shape: tuple[int, int] = (28, 28)
) -> Path:
    """Write ``datasets/mnist.npz`` (uint8 images without channel axis, uint8 labels)."""
    rng = np.random.default_rng(1)
    path = root / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x_train=_pixels(rng, n_train, shape),
        y_train=_labels(n_train, num_classes),
        x_test=_pixels(rng, n_test, shape),
        y_test=_labels(n_test, num_classes),
    )
    return path


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, n_train: int = 50, n_test: int = 20, num_classes: int = 10) -> Path:
    """Write the four gzipped IDX files under ``datasets/fashion-mnist``."""
    rng = np.random.default_rng(2)
    folder = root / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", _labels(n, num_classes))
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", _pixels(rng, n, (28, 28)))
    return folder


def _write_cifar_batch(
    path: Path, rng: np.random.Generator, labels: np.ndarray, label_keys: list[str]
) -> None:
    """Pickle a batch dict with bytes keys and (N, 3072) channel-first pixel rows, like the originals."""
    batch = {b"batch_label": b"testing batch", b"data": _pixels(rng, len(labels), (3 * 32 * 32,))}
    batch |= {key.encode(): labels.astype(int).tolist() for key in label_keys}
    batch[b"filenames"] = [f"img_{i}.png".encode() for i in range(len(labels))]
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=3)  # bytes as BINBYTES: no _codecs global


def write_cifar10(root: Path, n_per_batch: int = 10, n_test: int = 20, num_classes: int = 10) -> Path:
    """Write the extracted ``cifar-10-batches-py-target/cifar-10-batches-py`` folder (5 train batches)."""
    rng = np.random.default_rng(3)
    folder = root / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        _write_cifar_batch(folder / f"data_batch_{i}", rng, _labels(n_per_batch, num_classes), ["labels"])
    _write_cifar_batch(folder / "test_batch", rng, _labels(n_test, num_classes), ["labels"])
    return folder.parent


def write_cifar100(root: Path, n_train: int = 500, n_test: int = 100, num_classes: int = 100) -> Path:
    """Write the extracted ``cifar-100-python-target/cifar-100-python`` folder (train and test)."""
    rng = np.random.default_rng(4)
    folder = root / "datasets" / "cifar-100-python-target" / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    keys = ["fine_labels", "coarse_labels"]
    _write_cifar_batch(folder / "train", rng, _labels(n_train, num_classes), keys)
    _write_cifar_batch(folder / "test", rng, _labels(n_test, num_classes), keys)
    return folder.parent


def write_imdb(root: Path, n_train: int = 40, n_test: int = 20, max_word: int = 100) -> Path:
    """Write ``datasets/imdb.npz``: ragged word-id lists (5..30 words) and 0/1 labels."""
    rng = np.random.default_rng(5)
    path = root / "datasets" / "imdb.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x_train=_word_lists(rng, n_train, max_word, (5, 31)),
        y_train=_labels(n_train, 2).astype(np.int64),
        x_test=_word_lists(rng, n_test, max_word, (5, 31)),
        y_test=_labels(n_test, 2).astype(np.int64),
    )
    return path


def write_reuters(root: Path, n: int = 80, num_classes: int = 4, max_word: int = 100) -> Path:
    """Write ``datasets/reuters.npz``: one pool ``x``/``y`` that the loader splits 80/20 itself."""
    rng = np.random.default_rng(6)
    path = root / "datasets" / "reuters.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=_word_lists(rng, n, max_word, (5, 31)), y=_labels(n, num_classes).astype(np.int64))
    return path


KERAS_WRITERS: dict[str, Callable[..., Path]] = {
    "mnist": write_mnist,
    "fashion_mnist": write_fashion_mnist,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "imdb": write_imdb,
    "reuters": write_reuters,
}


def write_keras_dataset(root: Path, name: str, **kwargs: object) -> Path:
    """Write the small cached copy of one Keras dataset under ``root``; return its cache path."""
    return KERAS_WRITERS[name](root, **kwargs)


GTSRB_COLOURS = ((255, 0, 0), (0, 160, 0), (20, 40, 250))
"""The colour of class c's sign (its ROI) in the images ``write_gtsrb`` makes; the border is yellow."""

_GTSRB_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"]


def _sign(index: int, label: int) -> tuple[bytes, list[str]]:
    """A PPM of varying size: a yellow border around its ROI (corners inclusive) in the class colour."""
    width, height = 30 + 3 * index, 28 + 2 * index
    x1, y1, x2, y2 = 5, 6, width - 7, height - 5
    pixels = np.full((height, width, 3), (255, 255, 0), dtype=np.uint8)
    pixels[y1 : y2 + 1, x1 : x2 + 1] = GTSRB_COLOURS[label]
    ppm = io.BytesIO()
    Image.fromarray(pixels).save(ppm, format="PPM")
    return ppm.getvalue(), [str(v) for v in (width, height, x1, y1, x2, y2)]


def _csv(header: list[str], rows: list[list[str]]) -> str:
    return "".join(";".join(row) + "\r\n" for row in [header, *rows])


def write_gtsrb(folder: Path, num_classes: int = 3, per_class: int = 4, n_test: int = 6) -> dict[str, Path]:
    """Write GTSRB's three official zips, in their real layout but tiny, into ``folder``; by stem."""
    folder.mkdir(parents=True, exist_ok=True)
    zips = {
        stem: folder / f"{stem}.zip"
        for stem in ("GTSRB_Final_Training_Images", "GTSRB_Final_Test_Images", "GTSRB_Final_Test_GT")
    }
    with zipfile.ZipFile(zips["GTSRB_Final_Training_Images"], "w") as train:
        train.writestr("GTSRB/Readme-Images.txt", "GTSRB training images")
        for label in range(num_classes):
            images = f"GTSRB/Final_Training/Images/{label:05d}/"
            rows = []
            for i in range(per_class):
                ppm, fields = _sign(i + label, label)
                train.writestr(f"{images}00000_{i:05d}.ppm", ppm)
                rows.append([f"00000_{i:05d}.ppm", *fields, str(label)])
            train.writestr(f"{images}GT-{label:05d}.csv", _csv([*_GTSRB_HEADER, "ClassId"], rows))
    test_rows = []
    with zipfile.ZipFile(zips["GTSRB_Final_Test_Images"], "w") as test:
        for i in range(n_test):
            ppm, fields = _sign(i, i % num_classes)
            test.writestr(f"GTSRB/Final_Test/Images/{i:05d}.ppm", ppm)
            test_rows.append([f"{i:05d}.ppm", *fields])
        test.writestr("GTSRB/Final_Test/Images/GT-final_test.test.csv", _csv(_GTSRB_HEADER, test_rows))
    labelled = [[*row, str(i % num_classes)] for i, row in enumerate(test_rows)]
    with zipfile.ZipFile(zips["GTSRB_Final_Test_GT"], "w") as gt:
        gt.writestr("GT-final_test.csv", _csv([*_GTSRB_HEADER, "ClassId"], labelled))
    return zips


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Keras cache: ``KERAS_HOME`` points at a fresh tmp dir, returned."""
    root = tmp_path / "keras_home"
    root.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(root))
    return root


@pytest.fixture
def keras_cache(keras_home: Path) -> Path:
    """``KERAS_HOME`` at a tmp dir holding small cached copies of every Keras dataset; returned."""
    for name in KERAS_WRITERS:
        write_keras_dataset(keras_home, name)
    return keras_home
