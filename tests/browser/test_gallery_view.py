"""The sweep's architecture gallery (``gallery.html``) in a real headless Chromium, from a real MLflow
store: a card per trial, the best marked, filters by state and objective, and two trials compared with
their differences highlighted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from hpo.reports import gallery
from hpo.reports.sweep_report import SweepReport
from tests.browser.conftest import open_page, severe
from tests.hpo.reports.fake_sweep import new_store
from tests.hpo.reports.gallery_sweep import gallery_sweep


def test_gallery_filters_marks_the_best_and_compares_two_trials(browser: Any, tmp_path: Path) -> None:
    sweep, logged = gallery_sweep(new_store(tmp_path), "gallery", 8, failed=(1,))
    report = SweepReport.collect(sweep.study, MlflowClient(sweep.tracking_uri), sweep.parent_run_id)
    open_page(browser, gallery.write(report, report.architectures, tmp_path))
    assert browser.execute_script("return hpoGallery.shown()") == list(range(8))
    assert len(browser.find_elements("css selector", ".card canvas")) == len(logged) == 7
    best = sweep.study.best_trial.number
    assert browser.execute_script("return hpoGallery.best") == best
    assert browser.find_element("css selector", ".card.best").get_attribute("data-number") == str(best)
    browser.save_screenshot(str(tmp_path / "gallery.png"))

    browser.find_element("css selector", '[data-state="FAIL"]').click()
    assert 1 not in browser.execute_script("return hpoGallery.shown()")
    floor = sorted(t.value for t in sweep.study.trials if t.value is not None)[3]
    browser.find_element("id", "omin").send_keys(str(floor))
    shown = browser.execute_script("return hpoGallery.shown()")
    assert shown == [t.number for t in sweep.study.trials if t.value is not None and t.value >= floor]

    by_depth = sorted(logged, key=lambda n: len(logged[n]["layers"]))
    a, b = by_depth[0], by_depth[-1]
    assert len(logged[a]["layers"]) < len(logged[b]["layers"]), "the fake sweep varies the depth"
    browser.find_element("id", "omin").clear()
    for number in (a, b):
        browser.find_element("css selector", f'.card[data-number="{number}"] .pick').click()
    rows = browser.find_elements("css selector", "#compare tr")
    statuses = [row.get_attribute("class") for row in rows[1:]]
    assert "added" in statuses, "the deeper trial's extra conv block"
    assert "changed" in statuses, "different filters change shapes and parameter counts"
    assert [r["status"] for r in browser.execute_script(f"return hpoGallery.diff({a}, {b})")] == statuses
    browser.save_screenshot(str(tmp_path / "gallery-compare.png"))
    assert severe(browser) == []
