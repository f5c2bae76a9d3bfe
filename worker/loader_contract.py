"""A dataset config's own loader: called the Hydra way, and what it returns checked against the contract.

``dataset.loader`` names the loader with ``_target_`` (any importable callable); its other keys are the
loader's keyword arguments, passed as plain Python values: ``hydra.utils.instantiate(dataset.loader)``.
The loader returns a mapping::

    {"train": (x, y), "test": (x, y)}            # and optionally "validation": (x, y)

- ``x``: one row per example, numbers (NumPy arrays or anything ``np.asarray`` takes); it is used as it
  is, so scale it in the loader. Float64 becomes float32, integers (word ids, say) stay integers.
- ``y``: one integer class id per example, 0..C-1 (shape ``(n,)`` or ``(n, 1)``); C is the highest id + 1,
  every class needs a training example, and ``dataset.num_classes`` / ``dataset.input_shape``, when set,
  must match the data.
- Any pair may instead be a ``tf.data.Dataset`` of ``(x, y)`` elements, batched or not (a label per
  example is a scalar). hpo reads it into memory once, up to ``MATERIALISE_LIMIT_BYTES``: a bigger or
  endless (repeated) dataset is refused.
- Without ``"validation"``, hpo holds a stratified ``dataset.validation_split`` out of the training pair,
  seeded by the study seed; a given validation pair is used whole. ``dataset.fraction`` keeps a stratified
  part of the training pair either way.

Anything else is a ``DatasetError`` naming what the loader returned.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from hpo.core.errors import DatasetError, HPOError
from hpo.core.schema import DatasetConf
from worker.downloads import one_line

MATERIALISE_LIMIT_BYTES = 2 * 1024**3
"""The most a ``tf.data.Dataset`` from a loader may hold: hpo keeps every split in memory as arrays."""

_SPLITS, _REQUIRED = ("train", "validation", "test"), {"train", "test"}
_CONTRACT = "return {'train': (x, y), 'test': (x, y)}, optionally with 'validation': (x, y)"

Pair = tuple[np.ndarray, np.ndarray]


class LoadedData(NamedTuple):
    """A loader's splits as checked arrays (labels int32, one per example) and the number of classes."""

    train: Pair
    validation: Pair | None
    test: Pair
    num_classes: int


def call_loader(cfg: DatasetConf) -> LoadedData:
    """Call ``cfg.loader`` and check what it returns against the contract above.

    Raises:
        DatasetError: the loader failed (its own error, on one line), or returned something that breaks
            the contract; the message names what it returned and what to return instead.
    """
    assert cfg.loader is not None
    where = f"dataset {cfg.name!r} (loader {cfg.loader.get('_target_')})"
    returned = _call(cfg.loader, where)
    if not isinstance(returned, Mapping):
        raise DatasetError(f"{where} returned {describe(returned)}; {_CONTRACT}")
    keys = sorted(str(key) for key in returned)
    if not set(keys) >= _REQUIRED or not set(keys) <= set(_SPLITS):
        raise DatasetError(f"{where} returned a mapping with keys {keys}; {_CONTRACT}")
    pairs = {split: _pair(split, returned[split], where) for split in _SPLITS if split in keys}
    _check_shapes(pairs, cfg, where)
    num_classes = _check_classes(pairs, cfg, where)
    return LoadedData(pairs["train"], pairs.get("validation"), pairs["test"], num_classes)


def _call(loader: dict[str, Any], where: str) -> Any:
    """The loader's return value; what it raised as one ``DatasetError`` line (hpo's own errors kept)."""
    try:
        return instantiate(loader, _convert_="all")
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, InstantiationException) and exc.__cause__ else exc
        if isinstance(cause, HPOError):
            raise DatasetError(f"{where}: {cause}") from cause
        raise DatasetError(f"{where} failed: {type(cause).__name__}: {one_line(cause)}") from exc


def describe(value: Any) -> str:
    """What a value is, in a few words: its type, and its shape, keys or length."""
    kind = type(value).__name__
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {kind} of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, Mapping):
        return f"a {kind} with keys {sorted(map(str, value))}"
    if isinstance(value, list | tuple):
        return f"a {kind} of {len(value)} items"
    return f"a {kind}"


def _pair(split: str, value: Any, where: str) -> Pair:
    """One split's ``(x, y)`` as arrays: x numeric, y int32 class ids, as many of each."""
    tf = sys.modules.get("tensorflow")  # a loader that made a tf.data.Dataset has imported TensorFlow
    if tf is not None and isinstance(value, tf.data.Dataset):
        x, y = _materialise(split, value, where)
    elif isinstance(value, list | tuple) and len(value) == 2:
        x, y = (_array(split, part, item, where) for part, item in zip("xy", value, strict=True))
    else:
        raise DatasetError(
            f"{where}: its {split!r} is {describe(value)}; give an (x, y) pair of arrays or a "
            "tf.data.Dataset of (x, y)"
        )
    if x.ndim < 2 or x.dtype.kind not in "biuf":
        raise DatasetError(
            f"{where}: its {split} x is {describe(x)}; give one row of numbers per example "
            "(x.reshape(-1, 1) for a single feature)"
        )
    labels = _labels(split, y, where)
    if len(x) != len(labels):
        raise DatasetError(
            f"{where}: its {split} split has {len(x)} examples in x but {len(labels)} labels in y"
        )
    return (x.astype(np.float32) if x.dtype.kind in "bf" and x.dtype != np.float32 else x), labels


def _array(split: str, part: str, value: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise DatasetError(f"{where}: its {split} {part} is not an array ({one_line(exc)})") from exc


def _materialise(split: str, dataset: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A ``tf.data.Dataset`` of ``(x, y)`` read into two arrays, batched or not, within the size limit."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    size = 0
    for element in dataset.as_numpy_iterator():
        if not (isinstance(element, tuple) and len(element) == 2):
            raise DatasetError(f"{where}: its {split} tf.data.Dataset yields {describe(element)}, not (x, y)")
        x, y = np.asarray(element[0]), np.asarray(element[1])
        size += x.nbytes + y.nbytes
        if size > MATERIALISE_LIMIT_BYTES:
            raise DatasetError(
                f"{where}: its {split} tf.data.Dataset holds over {MATERIALISE_LIMIT_BYTES // 1024**2} MiB "
                "(or repeats without end); hpo keeps the data in memory: return a smaller one or arrays"
            )
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DatasetError(f"{where}: its {split} tf.data.Dataset is empty")
    batched = ys[0].ndim >= 1 and xs[0].ndim >= 1 and xs[0].shape[0] == ys[0].shape[0]
    try:
        return (np.concatenate(xs), np.concatenate(ys)) if batched else (np.stack(xs), np.stack(ys))
    except ValueError as exc:
        raise DatasetError(
            f"{where}: its {split} tf.data.Dataset's examples differ in shape ({exc})"
        ) from exc


def _labels(split: str, y: np.ndarray, where: str) -> np.ndarray:
    """Labels as int32 class ids, one per example; strings, fractions and one-hot rows are refused."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(
            f"{where}: its {split} y is {describe(y)}; give one integer class id per example "
            "(one-hot rows: y.argmax(axis=1))"
        )
    if y.dtype.kind in "biu" or (y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()):
        return y.astype(np.int32)
    kind = "strings" if y.dtype.kind in "USO" else f"{y.dtype} values"
    example = y[0].item() if len(y) else None
    raise DatasetError(
        f"{where}: its {split} labels are {kind} (the first: {example!r}); labels must be integer class "
        "ids 0..C-1: map them to ids in the loader"
    )


def _check_shapes(pairs: dict[str, Pair], cfg: DatasetConf, where: str) -> None:
    shapes = {split: list(x.shape[1:]) for split, (x, _) in pairs.items()}
    if any(shape != shapes["train"] for shape in shapes.values()):
        raise DatasetError(f"{where}: its splits' examples differ in shape: {shapes}")
    if cfg.input_shape is not None and list(cfg.input_shape) != shapes["train"]:
        raise DatasetError(
            f"{where} returned examples of shape {shapes['train']} but dataset.input_shape is "
            f"{list(cfg.input_shape)}; set it to match, or leave it out"
        )


def _check_classes(pairs: dict[str, Pair], cfg: DatasetConf, where: str) -> int:
    """The number of classes the labels run over, checked against ``cfg.num_classes`` when set."""
    labels = np.concatenate([y for _, y in pairs.values()])
    if not len(pairs["train"][1]):
        raise DatasetError(f"{where}: its train split is empty")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DatasetError(f"{where}: its labels include {low}; labels must be class ids 0..C-1")
    if cfg.num_classes is not None and high + 1 != cfg.num_classes:
        raise DatasetError(
            f"{where}: its labels run 0..{high} but dataset.num_classes is {cfg.num_classes}; set it to "
            f"{high + 1}, or leave it out"
        )
    if high < 1:
        raise DatasetError(f"{where}: its labels hold one class ({high}); a classifier needs at least 2")
    missing = np.setdiff1d(np.arange(high + 1), pairs["train"][1])
    if missing.size:
        raise DatasetError(
            f"{where}: class {int(missing[0])} has no training example (labels run 0..{high}); "
            "every class id needs one"
        )
    return high + 1
