"""Ready loaders for the common shapes of a user's data, named by ``dataset.loader._target_``.

Each returns what ``worker.loader_contract`` asks of a loader. A relative path is read from the directory
hpo runs in (local and SLURM trials run there too); ``pkg://my_pkg/data/file.csv`` is read from the folder
of the importable package ``my_pkg``, which is where a RunPod worker finds data shipped inside the user's
package. ``image_folder`` and ``table`` hold a fixed
stratified ``test_split`` out as the test set (the same whatever the study seed), unless ``test_path``
names a separate one laid out the same way. Everything is read into memory.
"""

from __future__ import annotations

import importlib.util
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from hpo.core.errors import DatasetError
from worker.downloads import one_line

log = logging.getLogger(__name__)

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABLE_READERS = {".csv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet"}
COLOR_MODES = {"rgb": "RGB", "grayscale": "L"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# a path inside an importable package's folder: pkg://<package>/<path in it>
PACKAGE_SCHEME = "pkg://"


def image_folder(
    path: str,
    image_size: Sequence[int],
    color_mode: str = "rgb",
    test_path: str | None = None,
    test_split: float = 0.2,
) -> Splits:
    """Images in one subfolder per class (PNG or JPEG), classes numbered in the order of their folders'
    names, resized to ``image_size`` ([height, width]) and scaled to float32 in [0, 1].

    ``color_mode`` is ``rgb`` (3 channels) or ``grayscale`` (1). Other files are ignored.
    """
    if color_mode not in COLOR_MODES:
        raise DatasetError(
            f"dataset.loader.color_mode must be one of {sorted(COLOR_MODES)}, got {color_mode!r}"
        )
    if len(image_size) != 2 or min(image_size) < 1:
        raise DatasetError(f"dataset.loader.image_size must be [height, width], got {list(image_size)}")
    root = _existing(path, "folder")
    classes = _class_folders(root)
    if len(classes) < 2:
        raise DatasetError(
            f"{root} holds {len(classes)} class folder(s) {classes}; it needs one subfolder "
            "of images per class, at least 2"
        )
    x, y = _read_images(root, classes, image_size, COLOR_MODES[color_mode])
    if test_path is None:
        return _hold_out_test(x, y, test_split, str(root))
    test_root = _existing(test_path, "folder")
    test_classes = _class_folders(test_root)
    if test_classes != classes:
        raise DatasetError(
            f"the test folder {test_root} has classes {test_classes}, but {root} has {classes}"
        )
    return {"train": (x, y), "test": _read_images(test_root, classes, image_size, COLOR_MODES[color_mode])}


def _class_folders(root: Path) -> list[str]:
    """The names of ``root``'s subfolders (hidden ones left out), sorted: class i is the i-th."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_images(
    root: Path, classes: list[str], image_size: Sequence[int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    height, width = image_size
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"the class folder {root / name} holds no PNG or JPEG images")
        for file in files:
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(
                        image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                    )
            except (OSError, UnidentifiedImageError) as exc:
                raise DatasetError(f"cannot read the image {file}: {one_line(exc)}") from exc
            images.append(pixels if pixels.ndim == 3 else pixels[..., np.newaxis])
            labels.append(label)
    return np.stack(images).astype(np.float32) / 255.0, np.asarray(labels, dtype=np.int32)


def table(
    path: str,
    target: str,
    test_path: str | None = None,
    test_split: float = 0.2,
    standardize: bool = True,
) -> Splits:
    """A CSV or Parquet table (by its suffix): ``target`` is the class column, every other column a feature.

    The target's distinct values, sorted, become class ids 0..C-1. Any feature column that is not numeric
    (strings, categories) is one-hot encoded, one 0/1 column per value seen in the training or test rows.
    Numeric features are standardised with the mean and standard deviation of the rows that are not the
    test set (``standardize: false`` keeps them as they are). Missing values are refused: fill or drop them.
    """
    frame = _read_table(path, target)
    test_frame = None if test_path is None else _read_table(test_path, target)
    both = frame if test_frame is None else pd.concat([frame, test_frame], ignore_index=True)
    classes, ids = np.unique(both[target].to_numpy(), return_inverse=True)
    log.info(f"table {path}: classes {list(classes)} are ids 0..{len(classes) - 1}")
    features = both.drop(columns=[target])
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    encoded = pd.get_dummies(features, columns=categorical, dtype=np.float32)
    numeric = [encoded.columns.get_loc(c) for c in features.columns if c not in categorical]
    x, y = encoded.to_numpy(dtype=np.float32), ids.astype(np.int32).reshape(-1)
    if test_frame is None:
        splits = _hold_out_test(x, y, test_split, path)
    else:
        splits = {"train": (x[: len(frame)], y[: len(frame)]), "test": (x[len(frame) :], y[len(frame) :])}
    if standardize and numeric:
        train = splits["train"][0][:, numeric]
        mean, std = train.mean(axis=0), train.std(axis=0)
        for x_part, _ in splits.values():
            x_part[:, numeric] = (x_part[:, numeric] - mean) / np.where(std > 0, std, 1.0)
    return splits


def _read_table(path: str, target: str) -> Any:
    file = _existing(path, "file")
    reader = TABLE_READERS.get(file.suffix.lower())
    if reader is None:
        raise DatasetError(f"cannot read {file}: the suffix must be one of {', '.join(TABLE_READERS)}")
    try:
        frame = getattr(pd, reader)(file)
    except Exception as exc:  # pandas' and pyarrow's parser errors share no base class
        raise DatasetError(f"cannot read {file}: {type(exc).__name__}: {one_line(exc)}") from exc
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise DatasetError(f"{file} has no target column {target!r}; its columns are: {columns}")
    if gaps := [str(c) for c in frame.columns if frame[c].isna().any()]:
        raise DatasetError(f"{file} has missing values in columns {gaps}; fill or drop them first")
    return frame


def npz(path: str) -> Splits:
    """A NumPy ``.npz`` file holding x_train, y_train, x_test, y_test and, optionally, x_val and y_val,
    taken as stored (``np.savez``; images scaled to [0, 1] train better than raw pixels)."""
    file = _existing(path, "file")
    if not zipfile.is_zipfile(file):
        raise DatasetError(f"{file} is not an .npz file (np.savez writes one)")
    try:
        with np.load(file, allow_pickle=False) as arrays:
            stored = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {file}: {one_line(exc)}") from exc
    missing = [key for key in NPZ_KEYS if key not in stored]
    has_val = [key in stored for key in ("x_val", "y_val")]
    if any(has_val) and not all(has_val):
        missing.append("y_val" if has_val[0] else "x_val")
    if missing:
        raise DatasetError(
            f"{file} lacks {missing}; it holds {sorted(stored)} (it needs {', '.join(NPZ_KEYS)}, "
            "and x_val with y_val or neither)"
        )
    splits = {"train": (stored["x_train"], stored["y_train"]), "test": (stored["x_test"], stored["y_test"])}
    if all(has_val):
        splits["validation"] = (stored["x_val"], stored["y_val"])
    return splits


def _existing(path: str, kind: str) -> Path:
    """``path`` as given (relative to the working directory) or inside a package (``pkg://``), refused
    with one line if it is not there."""
    package, _, inner = path.removeprefix(PACKAGE_SCHEME).partition("/")
    if path.startswith(PACKAGE_SCHEME):
        found, where = _package_dir(package, path) / inner, f"in the package {package!r}"
    else:
        found, where = (
            Path(path).expanduser(),
            f"(a relative path is read from the directory hpo runs in, {Path.cwd()})",
        )
    if not (found.is_dir() if kind == "folder" else found.is_file()):
        raise DatasetError(f"no {kind} {found} {where}")
    return found


def _package_dir(package: str, path: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"{path}: no package {package!r} to read it from (is it importable where hpo runs?)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _hold_out_test(x: np.ndarray, y: np.ndarray, test_split: float, where: str) -> Splits:
    """A fixed, stratified ``test_split`` of the examples as the test set (seeded by 0, like digits')."""
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_split, stratify=y, random_state=0
        )
    except ValueError as exc:
        raise DatasetError(
            f"{where}: cannot hold out test_split={test_split} stratified ({one_line(exc)}); add examples, "
            "change dataset.loader.test_split or give a dataset.loader.test_path"
        ) from exc
    return {"train": (x_train, y_train), "test": (x_test, y_test)}
