"""The spirals data, read from points.csv beside this module (so it travels with the package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

POINTS = Path(__file__).with_name("points.csv")


def load(test_fraction: float = 0.25, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """hpo's loader contract: ``{"train": (x, y), "test": (x, y)}``, labels 0..2; hpo holds the
    validation split out of train."""
    table = np.loadtxt(POINTS, delimiter=",", skiprows=1)
    x, y = table[:, :2].astype("float32"), table[:, 2].astype("int64")
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = np.split(order, [int(len(y) * test_fraction)])
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}
