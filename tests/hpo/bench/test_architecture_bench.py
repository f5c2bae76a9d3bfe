"""``python -m hpo.bench architecture`` measures real artifacts and prints figures a script can read."""

from __future__ import annotations

import json

import pytest

from hpo.bench.__main__ import main


def test_bench_architecture_prints_sizes_and_times_per_trial_and_gallery(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["architecture", "--trials", "30", "--models", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    per_trial = figures["per_trial"]
    assert all(per_trial[f"{ext}_bytes"] > 0 for ext in ("json", "svg", "png", "html", "glb"))
    assert per_trial["html_bytes"] > figures["view_script_bytes"], "the view inlines its script"
    assert figures["gallery_trials"] == 30 and figures["gallery_bytes"] > figures["gallery_script_bytes"]


def test_bench_architecture_rejects_an_empty_gallery() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["architecture", "--trials", "0"])
    assert exit_info.value.code == 2
