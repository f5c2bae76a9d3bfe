"""Fixtures of the driver's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for each test module: creating its tables is the slow part."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
