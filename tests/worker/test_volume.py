"""The dataset cache of a RunPod worker on the endpoint's network volume, with the image's baked cache
read first."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.worker.conftest import write_mnist
from worker import __main__ as worker_main
from worker.distribution import check_gpus
from worker.downloads import load_files
from worker.keras_datasets import KERAS_SOURCES
from worker.volume import IMAGE_CACHE_ENV, VOLUME_ENV, share_dataset_cache


@pytest.fixture
def image_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The image's cache as the Dockerfile sets it (``KERAS_HOME``), and no moved cache yet."""
    baked = tmp_path / "opt-keras"
    baked.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(baked))
    monkeypatch.delenv(IMAGE_CACHE_ENV, raising=False)
    return baked


def test_a_writable_volume_holds_the_shared_cache(
    image_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = tmp_path / "runpod-volume"
    volume.mkdir()
    monkeypatch.setenv(VOLUME_ENV, str(volume))
    shared = share_dataset_cache()
    assert shared == volume / "hpo" / "keras" and shared.is_dir()
    assert os.environ["KERAS_HOME"] == str(shared)
    assert os.environ[IMAGE_CACHE_ENV] == str(image_cache)


def test_without_a_writable_volume_the_image_cache_stays(
    image_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VOLUME_ENV, str(tmp_path / "no-volume"))
    assert share_dataset_cache() is None
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    monkeypatch.setenv(VOLUME_ENV, str(read_only))
    if not os.access(read_only, os.W_OK):  # root writes anywhere
        assert share_dataset_cache() is None
    assert os.environ["KERAS_HOME"] == str(image_cache)
    assert IMAGE_CACHE_ENV not in os.environ


def test_a_dataset_baked_into_the_image_is_read_there_and_others_land_on_the_volume(
    image_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(image_cache)
    volume = tmp_path / "runpod-volume"
    volume.mkdir()
    monkeypatch.setenv(VOLUME_ENV, str(volume))
    shared = share_dataset_cache()
    assert shared is not None
    mnist = KERAS_SOURCES["mnist"]
    raw = load_files("mnist", mnist.files, mnist.parse)
    assert raw.where == str(image_cache / "datasets" / "mnist.npz")
    write_mnist(shared, n_train=30)
    monkeypatch.delenv(IMAGE_CACHE_ENV)
    assert len(load_files("mnist", mnist.files, mnist.parse).x_train) == 30, "the volume's own copy"


def test_the_worker_shares_the_volume_registers_its_gpu_check_and_serves_trials(
    image_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpod

    import hpo.core.process
    import worker.serverless
    from worker.handler import handle

    volume = tmp_path / "runpod-volume"
    volume.mkdir()
    monkeypatch.setenv(VOLUME_ENV, str(volume))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(hpo.core.process, "own_process", lambda stop_on_signals: None)
    monkeypatch.setattr(runpod.serverless, "register_fitness_check", lambda f: seen.setdefault("check", f))
    monkeypatch.setattr(worker.serverless, "serve", lambda h: seen.setdefault("handler", h))
    worker_main.main()
    assert seen == {"check": check_gpus, "handler": handle}
    assert os.environ["KERAS_HOME"] == str(volume / "hpo" / "keras")
