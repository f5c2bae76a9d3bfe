"""Debian's headless Chromium driven through its own chromedriver, so Selenium never downloads a browser:
where the browser tests and the architecture benchmark open pages."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
)


def missing() -> str | None:
    """Why no headless Chromium can start on this machine, or None when one can."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return (
            "Debian's chromium and chromium-driver are not installed (apt install chromium chromium-driver)"
        )
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (it is in the dev group: uv sync)"
    return None


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Selenium driver of a headless Chromium that keeps the page's console log, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
