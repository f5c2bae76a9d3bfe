"""The architecture gallery on the parent run, against a real Optuna study and a real MLflow SQLite store:
what it holds per trial, that the live report publishes it and reads each trial's architecture once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hpo.reports import gallery
from hpo.reports.sweep_report import CSV_FILE, REPORTS_DIR, LiveReport, SweepReport
from tests.hpo.reports.fake_sweep import build_sweep, new_store
from tests.hpo.reports.gallery_sweep import architecture, gallery_sweep, log_architectures


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return new_store(tmp_path)


def gallery_data(path: Path) -> dict[str, Any]:
    match = re.search(r"window\.HPO_GALLERY = (\{.*?\});</script>", path.read_text())
    assert match, "the data is inlined"
    return json.loads(match.group(1).replace("<\\/", "</"))


class CountingClient(MlflowClient):
    """A real client that counts its artifact downloads."""

    downloads = 0

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        self.downloads += 1
        return super().download_artifacts(run_id, path, dst_path)


def test_compact_keeps_each_layer_and_edge_by_index() -> None:
    spec = architecture({"model.filters": 20, "model.activation": "relu"})
    spec["edges"].append({"from": "input", "to": "flatten", "direct": False})
    rows = gallery.compact(spec)
    assert [row[0] for row in rows["layers"]] == [entry["name"] for entry in spec["layers"]]
    conv = rows["layers"][1]
    assert conv == ["conv_1", "conv", "(?, 8, 8, 20)", 200, "Conv2D relu", "#9ecae1"]
    assert rows["edges"][0] == [0, 1, True] and rows["edges"][-1] == [0, 5, False]


def test_live_report_publishes_the_gallery_and_reads_each_architecture_once(
    tracking_uri: str, tmp_path: Path
) -> None:
    sweep, logged = gallery_sweep(tracking_uri, "gallery-a", 5, failed=(1,), running=(3,))
    client = CountingClient(tracking_uri)
    live = LiveReport(client, sweep.parent_run_id, tmp_path / "reports", plot_interval_s=float("inf"))
    first = live.refresh(sweep.study)
    page = tmp_path / "reports" / gallery.GALLERY_FILE
    assert first.written == [tmp_path / "reports" / CSV_FILE, page]
    published = {a.path for a in client.list_artifacts(sweep.parent_run_id, REPORTS_DIR)}
    assert f"{REPORTS_DIR}/{gallery.GALLERY_FILE}" in published
    data = gallery_data(page)
    assert [t["number"] for t in data["trials"]] == [0, 1, 2, 3, 4]
    assert [t["state"] for t in data["trials"]] == ["COMPLETE", "FAIL", "COMPLETE", "RUNNING", "COMPLETE"]
    drawn = {t["number"]: t["architecture"] for t in data["trials"] if t["architecture"]}
    assert drawn == {n: gallery.compact(spec) for n, spec in logged.items()}
    assert data["params"] == first.varying_params() and data["direction"] == "maximize"
    assert client.downloads == 5, "three architectures, a failed trial's and a running one's absence"

    log_architectures(sweep, [3])
    sweep.study.tell(3, 0.99)
    client.log_metric(sweep.run_ids[3], "objective", 0.99)
    client.set_terminated(sweep.run_ids[3], "FINISHED")
    live.refresh(sweep.study)
    assert client.downloads == 6, "only the trial that was running is read again"
    data = gallery_data(page)
    assert data["trials"][3]["architecture"] and data["trials"][3]["objective"] == 0.99


def test_a_sweep_without_architectures_has_no_gallery(tracking_uri: str, tmp_path: Path) -> None:
    sweep = build_sweep(tracking_uri, "gallery-b", 3)
    report = SweepReport.collect(sweep.study, MlflowClient(tracking_uri), sweep.parent_run_id)
    assert report.architectures == {}
    assert report.write(tmp_path, plots=False) == [tmp_path / CSV_FILE]


def test_the_page_is_self_contained_and_keeps_a_hostile_name_inert(tracking_uri: str, tmp_path: Path) -> None:
    sweep, _ = gallery_sweep(tracking_uri, "gallery-c", 3, failed=())
    report = SweepReport.collect(sweep.study, MlflowClient(tracking_uri), sweep.parent_run_id)
    report.trials[0].params["model.note"] = "</script><script>alert(1)</script>"
    page = gallery.page(report, report.architectures)
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|https?://|fetch\(", page), "loads nothing"
    assert page.count("</script>") == 2
