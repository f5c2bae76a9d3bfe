"""The user's code shipped with RunPod jobs: which packages go, the zip's hash, and the worker's unpacking."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpo.core import user_code
from hpo.core.payload import PROTOCOL_VERSION, TrialPayload, UserCode, parse_payload
from hpo.core.user_code import UserCodeError, code_bundle, install, target_packages, user_packages

PACKAGE = "hpo_test_user_pkg"


def _write_package(root: Path, version: int) -> Path:
    package = root / PACKAGE
    (package / "__pycache__").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"VERSION = {version}\n")
    (package / "net.py").write_text("def build(input_shape, num_classes):\n    return num_classes\n")
    (package / "points.csv").write_text("x,y,label\n0.1,0.2,0\n")
    (package / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"stale")
    return package


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user project folder on ``sys.path`` holding ``PACKAGE``, as the directory hpo runs from is."""
    root = tmp_path / "project"
    _write_package(root, version=1)
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def _config(*targets: str) -> dict[str, Any]:
    return {
        "model": {"_target_": targets[0], "units": 8},
        "dataset": {"name": "mine", "loader": {"_target_": targets[1], "extra": [{"_target_": targets[2]}]}},
    }


def test_the_packages_of_every_target_are_found_at_any_depth() -> None:
    config = _config(f"{PACKAGE}.net.build", "worker.user_data.table", "numpy.load")
    assert target_packages(config) == [PACKAGE, "numpy", "worker"]


def test_only_the_users_own_packages_are_shipped(project: Path) -> None:
    config = _config(f"{PACKAGE}.net.build", "worker.user_data.table", "numpy.load")
    config["trainer"] = {"_target_": "json.loads", "other": {"_target_": "no_such_package_anywhere.f"}}
    assert user_packages(config) == {PACKAGE: [(project / PACKAGE).resolve()]}
    assert code_bundle({"model": {"_target_": "worker.models.cnn"}}) is None


def test_the_bundle_holds_the_package_with_its_data_and_the_same_files_give_the_same_hash(
    project: Path,
) -> None:
    config = _config(f"{PACKAGE}.net.build", "numpy.load", "numpy.load")
    bundle = code_bundle(config)
    assert bundle is not None and bundle.packages == (PACKAGE,)
    import zipfile
    from io import BytesIO

    names = zipfile.ZipFile(BytesIO(base64.b64decode(bundle.zip_b64))).namelist()
    assert sorted(names) == [f"{PACKAGE}/__init__.py", f"{PACKAGE}/net.py", f"{PACKAGE}/points.csv"]
    assert code_bundle(config) == bundle, "a second zip of the same files has the same hash"
    (project / PACKAGE / "net.py").write_text("def build(input_shape, num_classes):\n    return 0\n")
    changed = code_bundle(config)
    assert changed is not None and changed.sha256 != bundle.sha256


def test_a_single_module_ships_as_its_file(project: Path, tmp_path: Path) -> None:
    (project / "hpo_test_user_module.py").write_text("def load():\n    return {}\n")
    bundle = code_bundle({"dataset": {"loader": {"_target_": "hpo_test_user_module.load"}}})
    assert bundle is not None and bundle.packages == ("hpo_test_user_module",)
    unpacked = install(bundle, tmp_path / "cache")
    assert [p.name for p in unpacked.iterdir()] == ["hpo_test_user_module.py"]


def test_a_bundle_over_the_limit_is_refused_with_the_image_to_build(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user_code, "MAX_BUNDLE_BYTES", 100)
    with pytest.raises(
        UserCodeError, match=r"^your code \(hpo_test_user_pkg\) zips to .* build an image FROM"
    ):
        code_bundle(_config(f"{PACKAGE}.net.build", "numpy.load", "numpy.load"))


def test_the_worker_imports_the_shipped_package_and_drops_an_earlier_copy(
    project: Path, tmp_path: Path
) -> None:
    assert importlib.import_module(PACKAGE).VERSION == 1
    _write_package(project, version=2)
    bundle = code_bundle(_config(f"{PACKAGE}.net.build", "numpy.load", "numpy.load"))
    assert bundle is not None
    shutil.rmtree(project / PACKAGE)
    cache = tmp_path / "cache"
    unpacked = install(bundle, cache)
    assert unpacked == (cache / bundle.sha256).resolve()
    assert sys.path[0] == str(unpacked)
    module = importlib.import_module(PACKAGE)
    assert module.VERSION == 2 and Path(module.__file__ or "").parent == unpacked / PACKAGE
    assert (unpacked / PACKAGE / "points.csv").read_text().startswith("x,y,label")
    assert install(bundle, cache) == unpacked, "the same hash unpacks once"
    assert sys.path.count(str(unpacked)) == 1


def test_a_bundle_whose_bytes_do_not_match_its_hash_is_refused(project: Path, tmp_path: Path) -> None:
    bundle = code_bundle(_config(f"{PACKAGE}.net.build", "numpy.load", "numpy.load"))
    assert bundle is not None
    raw = bytearray(base64.b64decode(bundle.zip_b64))
    raw[-1] ^= 1
    altered = dataclasses.replace(bundle, zip_b64=base64.b64encode(bytes(raw)).decode())
    with pytest.raises(UserCodeError, match="has sha256 .* not the .* the driver sent"):
        install(altered, tmp_path / "cache")
    assert not (tmp_path / "cache" / bundle.sha256).exists()


def test_a_received_payload_puts_its_code_on_the_path_and_parses_back(
    project: Path, tmp_path: Path, payload_config: dict[str, Any]
) -> None:
    bundle = code_bundle(_config(f"{PACKAGE}.net.build", "numpy.load", "numpy.load"))
    assert bundle is not None
    sent = TrialPayload(
        protocol=PROTOCOL_VERSION, config=payload_config, gpus_expected=0, code=UserCode.of(bundle)
    )
    sent.trial.study, sent.trial.number, sent.trial.seed = "study", 0, 0
    received = parse_payload(json.loads(json.dumps(sent.to_json())), tmp_path / "cache")
    assert received.code is not None and received.code.bundle() == bundle
    assert sys.path[0] == str((tmp_path / "cache" / bundle.sha256).resolve())
    sent.code = None
    assert parse_payload(json.loads(json.dumps(sent.to_json()))).code is None


@pytest.fixture
def payload_config(hydra_restore_singletons: Any) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hpo.core.payload import payload_config
    from hpo.driver.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hardware=runpod_cpu"])
    GlobalHydra.instance().clear()
    return payload_config(cfg)
