"""The browser tests' headless Chromium (``hpo.bench.chromium``) and what they ask of a page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpo.bench import chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session, its console log kept for ``severe``."""
    reason = chromium.missing()
    if reason:
        pytest.skip(reason)
    with chromium.headless_chromium() as driver:
        yield driver


def severe(driver: Any) -> list[dict[str, Any]]:
    """The browser log's SEVERE entries since the last call: script errors, failed loads."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(driver: Any, path: Path) -> None:
    """Open a local file, dropping the log of the page before."""
    severe(driver)
    driver.get(path.as_uri())
