"""Dataset loading for trials: scikit-learn's digits, Keras' datasets, GTSRB or a config's own loader,
split and shaped.

A config with ``dataset.loader`` gets its data from that loader, taken as it is (``worker.loader_contract``
says what a loader returns and checks it). Built-in images come back as float32 in [0, 1] shaped like
``dataset.input_shape``; built-in text as int32 word indices encoded the way Keras' loaders do and
pre-padded to ``dataset.input_shape[0]``. ``dataset.fraction`` keeps a stratified part of the training
data; the validation split is then held out of it, unless a loader gives its own (used whole). Both
depend on nothing but ``split_seed``, so every trial of a sweep sees the same data. A worker process
loads a dataset once: later trials with the same config and seed get the same read-only arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from keras.utils import pad_sequences
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from hpo.core.errors import DatasetError
from hpo.core.schema import DatasetConf, DataSource, Modality
from worker.downloads import RawArrays, load_files, one_line
from worker.gtsrb import load_gtsrb
from worker.keras_datasets import KERAS_SOURCES
from worker.loader_contract import call_loader

_START_CHAR, _OOV_CHAR, _INDEX_FROM = 1, 2, 3


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

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, as a model's input takes it."""
        return tuple(int(size) for size in self.x_train.shape[1:])


_loaded: dict[tuple[str, int, str | None], DatasetSplits] = {}
"""This process's last load, by config, seed and cache location; one at a time bounds the memory."""


def load_dataset(cfg: DatasetConf, split_seed: int) -> DatasetSplits:
    """Load a dataset, keep ``cfg.fraction`` of its training data and hold out a validation split.

    Both subsets are stratified and seeded by ``split_seed``. The arrays are read-only: a second call
    with the same config and seed returns the very same ones without reading any file.

    Raises:
        DatasetError: unknown name, not cached and not downloadable, unreadable file, a loader that
            fails or breaks its contract, data that disagrees with ``cfg.input_shape`` /
            ``cfg.num_classes``, or too few examples to stratify.
    """
    key = (
        json.dumps(asdict(cfg), sort_keys=True, default=str),
        split_seed,
        os.environ.get("KERAS_HOME"),
    )
    if key not in _loaded:
        _loaded.clear()  # free the last dataset before loading the next
        _loaded[key] = _split(cfg, split_seed)
    return _loaded[key]


def _split(cfg: DatasetConf, split_seed: int) -> DatasetSplits:
    """Read, shape and split a dataset into read-only arrays (``load_dataset`` without the memo)."""
    if cfg.loader is not None:
        data = call_loader(cfg)
        x_train, y_train = _keep_fraction(*data.train, cfg, split_seed)
        if data.validation is None:
            return _hold_out_validation(cfg, split_seed, x_train, y_train, *data.test, data.num_classes)
        splits = DatasetSplits(x_train, y_train, *data.validation, *data.test, data.num_classes)
        return _read_only(splits)
    raw = _load_raw(cfg)
    if cfg.modality == Modality.image:
        x_train, x_test = (_as_images(x, cfg, raw.where) for x in (raw.x_train, raw.x_test))
    else:
        x_train, x_test = (_as_sequences(x, cfg) for x in (raw.x_train, raw.x_test))
    y_train, y_test = _as_labels(raw.y_train, raw.y_test, cfg, raw.where)
    x_train, y_train = _keep_fraction(x_train, y_train, cfg, split_seed)
    assert cfg.num_classes is not None  # DatasetConf requires it for built-in datasets
    return _hold_out_validation(cfg, split_seed, x_train, y_train, x_test, y_test, cfg.num_classes)


def _keep_fraction(
    x: np.ndarray, y: np.ndarray, cfg: DatasetConf, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The stratified ``cfg.fraction`` of the training data (all of it at 1.0)."""
    if cfg.fraction == 1.0:
        return x, y
    x, _, y, _ = _stratified_split(x, y, cfg, split_seed, "fraction", train_size=cfg.fraction)
    return x, y


def _hold_out_validation(
    cfg: DatasetConf,
    split_seed: int,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
) -> DatasetSplits:
    """Hold the validation split out of the training data and make every array read-only."""
    x_train, x_val, y_train, y_val = _stratified_split(
        x, y, cfg, split_seed, "validation_split", test_size=cfg.validation_split
    )
    return _read_only(DatasetSplits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes))


def _read_only(splits: DatasetSplits) -> DatasetSplits:
    for array in (splits.x_train, splits.y_train, splits.x_val, splits.y_val, splits.x_test, splits.y_test):
        array.flags.writeable = False
    return splits


def _stratified_split(
    x: np.ndarray, y: np.ndarray, cfg: DatasetConf, split_seed: int, setting: str, **size: float
) -> list[np.ndarray]:
    """``train_test_split`` keeping class proportions and every class in the first (training) part."""
    try:
        parts = train_test_split(x, y, stratify=y, random_state=split_seed, **size)
        missing = np.setdiff1d(y, parts[2])
        if missing.size:
            raise ValueError(f"class {missing[0]} would have no training example")
    except ValueError as exc:
        raise DatasetError(
            f"dataset {cfg.name!r}: cannot split {len(y)} training examples stratified by "
            f"dataset.{setting}={getattr(cfg, setting)} ({one_line(exc)}); change dataset.{setting}"
        ) from exc
    return parts


def _load_raw(cfg: DatasetConf) -> RawArrays:
    """Dispatch on the dataset name after checking that its source and modality match the config."""
    if cfg.name == "digits":
        _expect(cfg, DataSource.sklearn, Modality.image)
        return _load_digits()
    if cfg.name == "gtsrb":
        _expect(cfg, DataSource.web, Modality.image)
        return load_gtsrb(*_declared_shape(cfg)[:2])
    source = KERAS_SOURCES.get(cfg.name)
    if source is None:
        known = ", ".join(["digits", *KERAS_SOURCES, "gtsrb"])
        raise DatasetError(f"unknown dataset {cfg.name!r}; known datasets: {known}")
    _expect(cfg, DataSource.keras, source.modality)
    return load_files(cfg.name, source.files, source.parse)


def _expect(cfg: DatasetConf, source: DataSource, modality: Modality) -> None:
    if cfg.source != source or cfg.modality != modality:
        raise DatasetError(
            f"dataset {cfg.name!r} is {modality.value} data from {source.value}, but the config has "
            f"dataset.source={cfg.source} and dataset.modality={cfg.modality}; fix the dataset config"
        )


def _declared_shape(cfg: DatasetConf) -> list[int]:
    assert cfg.input_shape is not None  # DatasetConf requires it for built-in datasets
    return list(cfg.input_shape)


def _load_digits() -> RawArrays:
    """scikit-learn's bundled 8x8 digits (no download), with a fixed stratified 20% test split."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    return RawArrays(x_train, y_train, x_test, y_test, "scikit-learn's digits")


def _as_images(x: Any, cfg: DatasetConf, where: str) -> np.ndarray:
    """Add the channel axis grayscale files lack, check the shape, scale uint8 pixels to [0, 1]."""
    images = np.asarray(x)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if list(images.shape[1:]) != _declared_shape(cfg):
        raise DatasetError(
            f"dataset {cfg.name!r}: {where} holds images of shape {list(images.shape[1:])} but "
            f"dataset.input_shape is {_declared_shape(cfg)}; set dataset.input_shape to match"
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
    return pad_sequences(encoded, maxlen=_declared_shape(cfg)[0], dtype="int32")


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
