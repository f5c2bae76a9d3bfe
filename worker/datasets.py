"""Dataset loading for trials: scikit-learn's digits and Keras' download-and-cache datasets.

Images come back as float32 in [0, 1] shaped like ``dataset.input_shape``; text as int32 word indices
encoded the way Keras' loaders do and pre-padded to ``dataset.input_shape[0]``. The validation split
depends on nothing but ``split_seed``, so every trial of a sweep sees the same validation data.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from keras.src.backend.config import keras_home
from keras.src.datasets.cifar import load_batch
from keras.src.datasets.npz_utils import load_npz
from keras.utils import get_file, pad_sequences
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from hpo.errors import DatasetError
from hpo.schema import DatasetConf, DataSource, Modality

_TF_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_START_CHAR, _OOV_CHAR, _INDEX_FROM = 1, 2, 3
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Train, validation and test arrays of one dataset, and its number of classes."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


class _Raw(NamedTuple):
    """Arrays as stored (images unscaled, text as raw word-id lists) and where they came from."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    where: str


@dataclass(frozen=True)
class _Remote:
    """One file of a Keras dataset, with the arguments Keras' own loader passes to ``get_file``."""

    fname: str
    origin: str
    file_hash: str | None = None
    cache_subdir: str = "datasets"
    extract: bool = False


@dataclass(frozen=True)
class _KerasSource:
    """A Keras dataset: its modality, its cached files and the parser that reads them."""

    modality: Modality
    files: tuple[_Remote, ...]
    parse: Callable[[list[Path]], tuple[Any, Any, Any, Any]]


def load_dataset(cfg: DatasetConf, split_seed: int) -> DatasetSplits:
    """Load a dataset and hold out a stratified validation split seeded by ``split_seed``.

    Raises:
        DatasetError: unknown name, not cached and not downloadable, unreadable file, or data that
            disagrees with ``cfg.input_shape`` / ``cfg.num_classes``.
    """
    raw = _load_raw(cfg)
    if Modality(cfg.modality) == Modality.image:
        x_train, x_test = (_as_images(x, cfg, raw.where) for x in (raw.x_train, raw.x_test))
    else:
        x_train, x_test = (_as_sequences(x, cfg) for x in (raw.x_train, raw.x_test))
    y_train, y_test = _as_labels(raw.y_train, raw.y_test, cfg, raw.where)
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            x_train, y_train, test_size=cfg.validation_split, stratify=y_train, random_state=split_seed
        )
    except ValueError as exc:
        raise DatasetError(
            f"dataset {cfg.name!r}: cannot hold out a stratified validation split of "
            f"{cfg.validation_split} from {len(y_train)} training examples ({_one_line(exc)}); "
            "change dataset.validation_split"
        ) from exc
    return DatasetSplits(x_train, y_train, x_val, y_val, x_test, y_test, cfg.num_classes)


def _load_raw(cfg: DatasetConf) -> _Raw:
    """Dispatch on the dataset name after checking that its source and modality match the config."""
    if cfg.name == "digits":
        _expect(cfg, DataSource.sklearn, Modality.image)
        return _load_digits()
    source = _KERAS_SOURCES.get(cfg.name)
    if source is None:
        known = ", ".join(["digits", *_KERAS_SOURCES])
        raise DatasetError(f"unknown dataset {cfg.name!r}; known datasets: {known}")
    _expect(cfg, DataSource.keras, source.modality)
    return _load_keras(cfg.name, source)


def _expect(cfg: DatasetConf, source: DataSource, modality: Modality) -> None:
    if DataSource(cfg.source) != source or Modality(cfg.modality) != modality:
        raise DatasetError(
            f"dataset {cfg.name!r} is {modality.value} data from {source.value}, but the config has "
            f"dataset.source={DataSource(cfg.source).value} and dataset.modality="
            f"{Modality(cfg.modality).value}; fix the dataset config"
        )


def _load_digits() -> _Raw:
    """scikit-learn's bundled 8x8 digits (no download), with a fixed stratified 20% test split."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    return _Raw(x_train, y_train, x_test, y_test, "scikit-learn's digits")


def _load_keras(name: str, source: _KerasSource) -> _Raw:
    root = _cache_root()
    paths = [_fetch(name, remote, root) for remote in source.files]
    where = ", ".join(map(str, paths))
    try:
        return _Raw(*source.parse(paths), where)
    except _READ_ERRORS as exc:
        cached = sorted({str(p) for r in source.files for p in _cache_paths(r, root) if p.exists()})
        raise DatasetError(
            f"dataset {name!r}: cannot read the cached {where} ({_one_line(exc)}); "
            f"delete {', '.join(cached)} so that it is downloaded again"
        ) from exc


def _cache_root() -> Path:
    """The cache root: ``$KERAS_HOME`` (read now, not at Keras import) or ``~/.keras``, else /tmp/.keras."""
    root = Path(os.environ.get("KERAS_HOME") or keras_home()).expanduser()
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK):  # the fallback get_file applies
        root = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
        root.mkdir(parents=True, exist_ok=True)
    return root


def _cache_paths(remote: _Remote, root: Path) -> tuple[Path, Path]:
    """Where ``get_file`` stores the download and the path it returns (an archive's extraction dir)."""
    folder = root / remote.cache_subdir
    if remote.extract:  # get_file's layout for an fname without a dot
        return folder / f"{remote.fname}_archive", folder / remote.fname
    return folder / remote.fname, folder / remote.fname


def _is_cached(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _fetch(name: str, remote: _Remote, root: Path) -> Path:
    """Return one cached file (or extracted folder), fetching it through ``get_file`` if missing.

    A fresh download is verified against Keras' hash; a file already in the cache is trusted.
    ``get_file`` works in a private staging dir whose results are renamed into the cache, so
    concurrent trials and killed downloads never leave a half-written file there.
    """
    target, result = _cache_paths(remote, root)
    if _is_cached(result):
        return result
    fresh = not target.exists()
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    staged_target, staged_result = _cache_paths(remote, staging)
    try:
        if not fresh:  # an archive is cached but not extracted: let get_file extract a link to it
            staged_target.parent.mkdir(parents=True)
            os.link(target, staged_target)
        get_file(
            fname=remote.fname,
            origin=remote.origin,
            file_hash=remote.file_hash if fresh else None,
            cache_subdir=remote.cache_subdir,
            extract=remote.extract,
            cache_dir=str(staging),
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_target, target)
        if remote.extract and not _is_cached(result):  # another trial may have just put it there
            os.replace(staged_result, result)
    except Exception as exc:
        looked = target if target == result else f"{result} or {target}"
        raise DatasetError(
            f"dataset {name!r} is not in the Keras cache at {looked} and fetching it from "
            f"{remote.origin} failed ({_one_line(exc)}); run once with network access, or copy the "
            f"file at {remote.origin} to {target} (KERAS_HOME, default ~/.keras, moves the cache)"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _as_images(x: Any, cfg: DatasetConf, where: str) -> np.ndarray:
    """Add the channel axis grayscale files lack, check the shape, scale uint8 pixels to [0, 1]."""
    images = np.asarray(x)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if list(images.shape[1:]) != list(cfg.input_shape):
        raise DatasetError(
            f"dataset {cfg.name!r}: {where} holds images of shape {list(images.shape[1:])} but "
            f"dataset.input_shape is {list(cfg.input_shape)}; set dataset.input_shape to match"
        )
    scaled = images.astype(np.float32)
    if images.dtype == np.uint8:  # Keras' files; digits arrive scaled already
        scaled /= 255.0
    return scaled


def _as_sequences(x: Sequence[Sequence[int]], cfg: DatasetConf) -> np.ndarray:
    """Encode stored word ids like Keras' loaders (start 1, OOV 2, ids from 3) and pre-pad them."""
    assert cfg.vocab_size is not None  # DatasetConf requires it for text
    encoded = []
    for seq in x:
        ids = np.asarray(seq, dtype=np.int64) + _INDEX_FROM
        encoded.append(np.concatenate(([_START_CHAR], np.where(ids < cfg.vocab_size, ids, _OOV_CHAR))))
    return pad_sequences(encoded, maxlen=cfg.input_shape[0], dtype="int32")


def _as_labels(y_train: Any, y_test: Any, cfg: DatasetConf, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten labels to int32 and check that they run over exactly ``cfg.num_classes`` classes."""
    train, test = (np.asarray(y).reshape(-1).astype(np.int32) for y in (y_train, y_test))
    low, high = int(min(train.min(), test.min())), int(max(train.max(), test.max()))
    if low < 0 or high + 1 != cfg.num_classes:
        raise DatasetError(
            f"dataset {cfg.name!r}: {where} holds labels {low}..{high} but dataset.num_classes is "
            f"{cfg.num_classes}; set dataset.num_classes to match"
        )
    return train, test


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


def _tf_file(fname: str, file_hash: str) -> tuple[_Remote]:
    return (_Remote(fname, _TF_DATASETS + fname, file_hash),)


def _toronto_archive(fname: str, archive: str, file_hash: str) -> tuple[_Remote]:
    return (_Remote(fname, f"https://www.cs.toronto.edu/~kriz/{archive}", file_hash, extract=True),)


# The fname / origin / hash / cache layout of Keras 3.15's own loaders, so both share one cache.
_KERAS_SOURCES: dict[str, _KerasSource] = {
    "mnist": _KerasSource(
        Modality.image,
        _tf_file("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
        _parse_mnist,
    ),
    "fashion_mnist": _KerasSource(
        Modality.image,
        tuple(
            _Remote(f, _TF_DATASETS + f, cache_subdir=os.path.join("datasets", "fashion-mnist"))
            for f in _FASHION_FILES
        ),
        _parse_fashion_mnist,
    ),
    "cifar10": _KerasSource(
        Modality.image,
        _toronto_archive(
            "cifar-10-batches-py-target",
            "cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        ),
        _parse_cifar10,
    ),
    "cifar100": _KerasSource(
        Modality.image,
        _toronto_archive(
            "cifar-100-python-target",
            "cifar-100-python.tar.gz",
            "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        ),
        _parse_cifar100,
    ),
    "imdb": _KerasSource(
        Modality.text,
        _tf_file("imdb.npz", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
        _parse_imdb,
    ),
    "reuters": _KerasSource(
        Modality.text,
        _tf_file("reuters.npz", "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),
        _parse_reuters,
    ),
}
