"""The per-trial 3D/2D view (``architecture.html``) in a real headless Chromium: it renders without a
script error, holds one block per layer, shows a layer's details on hover, and toggles to 2D and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import open_page, severe
from tests.worker.test_architecture import MODELS
from worker.architecture import view
from worker.architecture.describe import describe
from worker.models import build_model


def hover_block(driver: Any, index: int) -> str:
    """Move the mouse over block ``index`` (where it was last drawn); return the details panel's text."""
    from selenium.webdriver.common.action_chains import ActionChains

    polygon = next(
        h["polygon"] for h in reversed(driver.execute_script("return hpoScene.hits()")) if h["block"] == index
    )
    x, y = sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon)
    canvas = driver.find_element("id", "view")
    box = canvas.rect
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(x - box["width"] / 2), int(y - box["height"] / 2)
    ).perform()
    return str(driver.find_element("id", "details").text)


@pytest.mark.parametrize("family", ["cnn", "lstm"])
def test_view_renders_a_block_per_layer_with_details_and_a_2d_toggle(
    browser: Any, tmp_path: Path, family: str
) -> None:
    model = build_model(*MODELS[family])
    spec = describe(model, {})
    open_page(browser, view.write(spec, tmp_path))
    assert browser.execute_script("return hpoScene.blocks.length") == len(model.layers)
    assert browser.execute_script("return hpoScene.edges.length") == len(spec["edges"])
    assert browser.execute_script("return hpoScene.view.mode") == "3d"
    drawn = {h["block"] for h in browser.execute_script("return hpoScene.hits()")}
    assert drawn == set(range(len(model.layers))), "every block shows at least one face"
    browser.save_screenshot(str(tmp_path / f"{family}-3d.png"))

    layer = model.layers[1]
    details = hover_block(browser, 1)
    assert f"1. {layer.name}" in details and f"{layer.count_params():,}" in details

    browser.find_element("id", "mode").click()
    assert browser.execute_script("return hpoScene.view.mode") == "2d"
    assert browser.find_element("id", "mode").text == "3D"
    assert len(browser.execute_script("return hpoScene.hits()")) == len(model.layers), "a box per layer"
    assert f"{len(model.layers) - 1}. {model.layers[-1].name}" in hover_block(browser, len(model.layers) - 1)
    browser.save_screenshot(str(tmp_path / f"{family}-2d.png"))
    browser.find_element("id", "mode").click()
    assert browser.execute_script("return hpoScene.view.mode") == "3d"
    assert severe(browser) == []
    assert (tmp_path / f"{family}-3d.png").stat().st_size > 5_000
