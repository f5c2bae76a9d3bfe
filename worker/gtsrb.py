"""The German Traffic Sign Recognition Benchmark (GTSRB, 43 classes), from its official archives.

The three zips are fetched into the Keras cache like Keras' own datasets. Each image is cropped to
its annotated sign (the ROI) and resized; the decoded uint8 arrays are saved per target size in
``datasets/gtsrb/gtsrb-<H>x<W>.npz``, so only the first load decodes the ~52,000 PPM files.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from worker.downloads import RawArrays, Remote, cache_root, cache_roots, load_files, one_line, reading

log = logging.getLogger(__name__)

_SUBDIR = os.path.join("datasets", "gtsrb")
_ORIGIN = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
# Training images, test images, test labels. The benchmark's checksums are not known here, so the
# downloads are not hash-verified (file_hash=None) rather than checked against made-up values.
FILES = tuple(
    Remote(stem, f"{_ORIGIN}{stem}.zip", cache_subdir=_SUBDIR, extract=True)
    for stem in ("GTSRB_Final_Training_Images", "GTSRB_Final_Test_Images", "GTSRB_Final_Test_GT")
)


def load_gtsrb(height: int, width: int) -> RawArrays:
    """RGB uint8 images cropped to their sign and resized to ``height`` x ``width``, with class ids.

    Raises:
        DatasetError: not cached and not downloadable, or a cached file cannot be read.
    """
    root, decoded_name = cache_root(), os.path.join(_SUBDIR, f"gtsrb-{height}x{width}.npz")
    for decoded in (r / decoded_name for r in cache_roots(root)):
        if not decoded.is_file():
            continue
        with reading("gtsrb", str(decoded), [decoded]), np.load(decoded, allow_pickle=False) as f:
            return RawArrays(f["x_train"], f["y_train"], f["x_test"], f["y_test"], str(decoded))
    raw = load_files("gtsrb", FILES, functools.partial(_parse, size=(width, height)))
    _save(root / decoded_name, raw)
    return raw


def _parse(paths: list[Path], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the extracted archives: per-class folders with ``GT-<class>.csv``, and the test set."""
    train_dir, test_dir, labels_dir = paths
    annotations = sorted((train_dir / "GTSRB" / "Final_Training" / "Images").glob("*/GT-*.csv"))
    if not annotations:
        raise FileNotFoundError(f"no GTSRB/Final_Training/Images/*/GT-*.csv under {train_dir}")
    x_train, y_train = _decode(
        [(csv_file.parent, row) for csv_file in annotations for row in _rows(csv_file)], size
    )
    test_images = test_dir / "GTSRB" / "Final_Test" / "Images"
    x_test, y_test = _decode([(test_images, row) for row in _rows(labels_dir / "GT-final_test.csv")], size)
    return x_train, y_train, x_test, y_test


def _rows(csv_file: Path) -> list[dict[str, str]]:
    with open(csv_file, newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


def _decode(rows: list[tuple[Path, dict[str, str]]], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop each image to its ROI (corners inclusive) and resize it; return images and class ids."""
    images = np.empty((len(rows), size[1], size[0], 3), dtype=np.uint8)
    for i, (folder, row) in enumerate(rows):
        x1, y1, x2, y2 = (int(row[key]) for key in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
        with Image.open(folder / row["Filename"]) as image:
            crop = image.convert("RGB").crop((x1, y1, x2 + 1, y2 + 1))
            images[i] = np.asarray(crop.resize(size, Image.Resampling.BILINEAR))
    return images, np.array([int(row["ClassId"]) for _, row in rows], dtype=np.int64)


def _save(path: Path, raw: RawArrays) -> None:
    """Write the decoded arrays atomically; a failure only costs decoding again next time."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x_train=raw.x_train, y_train=raw.y_train, x_test=raw.x_test, y_test=raw.y_test)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning(f"cannot cache the decoded GTSRB images at {path} ({one_line(exc)})")
    finally:
        Path(tmp).unlink(missing_ok=True)
