"""Keras' download-and-cache datasets: where Keras keeps their files, and parsers for each format.

The table mirrors Keras 3.15's own loaders (fname, origin, hash, cache layout), so hpo and
``keras.datasets.*.load_data()`` share one cache.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from keras.src.datasets.cifar import load_batch
from keras.src.datasets.npz_utils import load_npz

from hpo.core.schema import Modality
from worker.downloads import Parser, Remote

_TF_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class KerasSource:
    """A Keras dataset: its modality, its cached files and the parser that reads them."""

    modality: Modality
    files: tuple[Remote, ...]
    parse: Parser


def _parse_mnist(paths: list[Path]) -> tuple[Any, Any, Any, Any]:
    with np.load(paths[0], allow_pickle=False) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file of uint8 values (Fashion-MNIST's format) in the shape its header gives."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    shape = np.frombuffer(data, ">i4", count=data[3], offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(shape)


def _parse_fashion_mnist(paths: list[Path]) -> tuple[Any, Any, Any, Any]:
    y_train, x_train, y_test, x_test = (_read_idx(p) for p in paths)
    return x_train, y_train, x_test, y_test


def _parse_cifar10(paths: list[Path]) -> tuple[Any, Any, Any, Any]:
    folder = paths[0] / "cifar-10-batches-py"
    batches = [load_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = load_batch(folder / "test_batch")
    x_train = np.concatenate([x for x, _ in batches]).transpose(0, 2, 3, 1)
    return x_train, np.concatenate([y for _, y in batches]), x_test.transpose(0, 2, 3, 1), y_test


def _parse_cifar100(paths: list[Path]) -> tuple[Any, Any, Any, Any]:
    folder = paths[0] / "cifar-100-python"
    x_train, y_train = load_batch(folder / "train", label_key="fine_labels")
    x_test, y_test = load_batch(folder / "test", label_key="fine_labels")
    return x_train.transpose(0, 2, 3, 1), y_train, x_test.transpose(0, 2, 3, 1), y_test


def _parse_imdb(paths: list[Path]) -> tuple[Any, Any, Any, Any]:
    f = load_npz(paths[0])
    return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _parse_reuters(paths: list[Path]) -> tuple[Any, Any, Any, Any]:
    """Keras' own test split: shuffle with seed 113, the last 20% is the test set."""
    f = load_npz(paths[0])
    order = np.arange(len(f["x"]))
    np.random.RandomState(113).shuffle(order)
    xs, ys = f["x"][order], f["y"][order]
    cut = int(len(xs) * 0.8)
    return xs[:cut], ys[:cut], xs[cut:], ys[cut:]


_FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


def _tf_file(fname: str, file_hash: str) -> tuple[Remote]:
    return (Remote(fname, _TF_DATASETS + fname, file_hash),)


def _toronto_archive(fname: str, archive: str, file_hash: str) -> tuple[Remote]:
    return (Remote(fname, f"https://www.cs.toronto.edu/~kriz/{archive}", file_hash, extract=True),)


KERAS_SOURCES: dict[str, KerasSource] = {
    "mnist": KerasSource(
        Modality.image,
        _tf_file("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
        _parse_mnist,
    ),
    "fashion_mnist": KerasSource(
        Modality.image,
        tuple(
            Remote(f, _TF_DATASETS + f, cache_subdir=os.path.join("datasets", "fashion-mnist"))
            for f in _FASHION_FILES
        ),
        _parse_fashion_mnist,
    ),
    "cifar10": KerasSource(
        Modality.image,
        _toronto_archive(
            "cifar-10-batches-py-target",
            "cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        ),
        _parse_cifar10,
    ),
    "cifar100": KerasSource(
        Modality.image,
        _toronto_archive(
            "cifar-100-python-target",
            "cifar-100-python.tar.gz",
            "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        ),
        _parse_cifar100,
    ),
    "imdb": KerasSource(
        Modality.text,
        _tf_file("imdb.npz", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
        _parse_imdb,
    ),
    "reuters": KerasSource(
        Modality.text,
        _tf_file("reuters.npz", "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),
        _parse_reuters,
    ),
}
