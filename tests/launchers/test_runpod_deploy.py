"""``python -m launchers.runpod deploy|status``: the bodies it sends, and the whole path against the
emulator's REST API (templates and endpoints found by name, so a second deploy updates, never duplicates)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launchers.runpod.__main__ import main
from launchers.runpod.deploy import changes, endpoint_body, load_config, template_body
from launchers.runpod.emulator import EmulatorProcess
from launchers.runpod.rest import RestClient

pytestmark = pytest.mark.timeout(180)

TOY_WORKER = [sys.executable, str(Path(__file__).with_name("toy_worker.py"))]
REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = "docker.io/me/hpo-worker:1"


def test_bodies_follow_the_profile_and_the_launcher() -> None:
    cfg = load_config(
        [
            "hardware=runpod_2gpu",
            "launcher.workers=4",
            "launcher.timeout_min=30",
            f"launcher.runpod.deploy.image={IMAGE}",
        ]
    )
    assert template_body(cfg) == {
        "name": "hpo-runpod_2gpu",
        "image": IMAGE,
        "serverless": True,
        "env": {"HPO_GPUS_PER_WORKER": "2"},
        "disk": 20,
        "category": "NVIDIA",
    }
    assert endpoint_body(cfg, "tpl-1") == {
        "name": "hpo-runpod_2gpu",
        "type": "QUEUE",
        "templateId": "tpl-1",
        "gpu": {"pools": ["ADA_24", "AMPERE_24"], "count": 2, "minCudaVersion": "12.5"},
        "workers": {"min": 0, "max": 4, "idleTimeout": 5},
        "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
        "flashboot": "FLASHBOOT",
        "networkVolumes": [],
        "timeout": 30 * 60_000,
    }


def test_deploy_settings_reach_the_bodies() -> None:
    cfg = load_config(
        [
            "hardware=runpod_4gpu",
            f"launcher.runpod.deploy.image={IMAGE}",
            "launcher.runpod.deploy.name=mine",
            "launcher.runpod.deploy.flashboot=false",
            "launcher.runpod.deploy.network_volume_id=vol-1",
            "launcher.runpod.deploy.idle_timeout_s=60",
            "launcher.runpod.deploy.disk_gb=40",
            "launcher.runpod.deploy.min_cuda_version='12.8'",
        ]
    )
    template, endpoint = template_body(cfg), endpoint_body(cfg, "tpl-1")
    assert (template["name"], template["disk"], template["env"]) == ("mine", 40, {"HPO_GPUS_PER_WORKER": "4"})
    assert endpoint["name"] == "mine"
    assert endpoint["gpu"] == {"pools": ["AMPERE_48", "ADA_48_PRO"], "count": 4, "minCudaVersion": "12.8"}
    assert endpoint["workers"]["idleTimeout"] == 60
    assert (endpoint["flashboot"], endpoint["networkVolumes"]) == ("OFF", ["vol-1"])


def test_changes_name_each_differing_field_and_ignore_absent_empty_ones() -> None:
    current = {"name": "a", "workers": {"min": 0, "max": 1, "idleTimeout": 5}, "extra": 1}
    wanted = {"name": "a", "workers": {"min": 0, "max": 4, "idleTimeout": 5}, "networkVolumes": []}
    assert changes(current, wanted) == ["workers.max: 1 -> 4"]
    assert changes(wanted, wanted) == []


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(
        workers=1, workers_min=0, worker_command=TOY_WORKER, log_dir=tmp_path_factory.mktemp("emu")
    )
    with emu:
        yield emu


@pytest.fixture
def on_emulator(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The emulator's API key in the environment, no endpoint id, and the override for its REST API."""
    monkeypatch.setenv("RUNPOD_API_KEY", emulator.api_key)
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    monkeypatch.delenv("HPO_DEBUG", raising=False)
    return [f"launcher.runpod.rest_api_base={emulator.rest_api_base}"]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_deploy_creates_a_template_and_an_endpoint_then_updates_them(
    emulator: EmulatorProcess, on_emulator: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "hardware=runpod_1gpu",
        "launcher.workers=1",
        f"launcher.runpod.deploy.image={IMAGE}",
        *on_emulator,
    ]
    code, out, err = run_main(capsys, "deploy", *args)
    assert (code, err) == (0, "")
    template_id = re.search(r"^template hpo-runpod_1gpu \((\S+)\): created$", out, re.M)
    endpoint_id = re.search(r"^endpoint hpo-runpod_1gpu \((\S+)\): created$", out, re.M)
    assert template_id and endpoint_id, out
    assert f"export RUNPOD_ENDPOINT_ID={endpoint_id[1]}\n" in out
    assert (
        "uv run python -m hpo -m hardware=runpod_1gpu launcher.workers=1 launcher.runpod.rest_api_base="
        in out
    )
    rest = RestClient(emulator.api_key, emulator.rest_api_base)
    endpoint = rest.endpoint(endpoint_id[1])
    assert endpoint["templateId"] == template_id[1]
    assert endpoint["gpu"]["pools"] == ["ADA_24", "AMPERE_24"] and endpoint["gpu"]["count"] == 1
    assert endpoint["workers"]["min"] == 0 and endpoint["workers"]["max"] == 1
    template = next(t for t in rest.templates() if t["id"] == template_id[1])
    assert template["image"] == IMAGE and template["env"] == {"HPO_GPUS_PER_WORKER": "1"}

    code, out, _ = run_main(capsys, "deploy", *args)
    assert code == 0
    assert f"template hpo-runpod_1gpu ({template_id[1]}): unchanged" in out
    assert f"endpoint hpo-runpod_1gpu ({endpoint_id[1]}): unchanged" in out

    code, out, _ = run_main(capsys, "deploy", *args, "launcher.workers=2")
    assert code == 0
    assert f"endpoint hpo-runpod_1gpu ({endpoint_id[1]}): updated: workers.max: 1 -> 2" in out
    assert rest.endpoint(endpoint_id[1])["workers"]["max"] == 2
    assert [e["id"] for e in rest.endpoints() if e["name"] == "hpo-runpod_1gpu"] == [endpoint_id[1]]
    assert [t["id"] for t in rest.templates() if t["name"] == "hpo-runpod_1gpu"] == [template_id[1]]


def test_status_prints_the_settings_and_flags_what_stops_a_sweep(
    emulator: EmulatorProcess,
    on_emulator: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["launcher.workers=1", "launcher.runpod.deploy.name=hpo-status", *on_emulator]
    code, out, _ = run_main(
        capsys, "deploy", "hardware=runpod_1gpu", *args, f"launcher.runpod.deploy.image={IMAGE}"
    )
    assert code == 0
    endpoint_id = re.search(r"^export RUNPOD_ENDPOINT_ID=(\S+)$", out, re.M)
    assert endpoint_id, out
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", endpoint_id[1])

    code, out, err = run_main(capsys, "status", "hardware=runpod_1gpu", *args)
    assert (code, err) == (0, ""), out
    assert f"image: {IMAGE}" in out
    assert "GPUs: 1 per worker, from ADA_24, AMPERE_24; CUDA 12.5+" in out
    assert "workers: min 0, max 1, idle timeout 5 s" in out
    assert "flashboot: on" in out and "network volume: none" in out and "running now: no worker" in out
    assert re.search(r"price in ADA_24: \$\d+\.\d\d.* per worker-hour", out), out
    assert "problem" not in out

    code, out, _ = run_main(capsys, "status", "hardware=runpod_2gpu", *args, "launcher.workers=3")
    assert code == 1
    assert "problem: each worker gets 1 GPU(s), but hardware=runpod_2gpu trains on 2" in out
    assert "problem: max workers 1 is below launcher.workers=3" in out

    RestClient(emulator.api_key, emulator.rest_api_base).update_endpoint(
        endpoint_id[1], {"workers": {"min": 0, "max": 0, "idleTimeout": 5}}
    )
    code, out, _ = run_main(capsys, "status", "hardware=runpod_1gpu", *args)
    assert code == 1
    assert "problem: max workers is 0: the endpoint starts no worker" in out


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (["hardware=runpod_1gpu"], "k", "launcher.runpod.deploy.image is not set"),
        (
            ["hardware=runpod_cpu", f"launcher.runpod.deploy.image={IMAGE}"],
            "k",
            "hardware=runpod_cpu names no GPUs",
        ),
        (["hardware=cpu", f"launcher.runpod.deploy.image={IMAGE}"], "k", "hardware=cpu runs trials on this"),
        (
            ["hardware=runpod_2gpu", f"launcher.runpod.deploy.image={IMAGE}"],
            None,
            "RUNPOD_API_KEY is not set",
        ),
    ],
)
def test_deploy_refuses_bad_input_in_one_line(
    args: list[str],
    key: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HPO_DEBUG", raising=False)
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    if key:
        monkeypatch.setenv("RUNPOD_API_KEY", key)
    code, out, err = run_main(capsys, "deploy", *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_the_command_line_shows_the_traceback_only_under_hpo_debug() -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("RUNPOD_API_KEY", "HPO_DEBUG")}
    command = [sys.executable, "-m", "launchers.runpod", "deploy", "hardware=cpu"]
    plain = subprocess.run(command, cwd=REPO_ROOT, env=environ, capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.startswith("error: hardware=cpu runs") and plain.stderr.count("\n") == 1, plain.stderr
    debug = subprocess.run(
        command, cwd=REPO_ROOT, env={**environ, "HPO_DEBUG": "1"}, capture_output=True, text=True
    )
    assert "Traceback" in debug.stderr and "hardware=cpu runs" in debug.stderr
