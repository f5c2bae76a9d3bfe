"""Bad input to a sweep, in every config group, search space and store: each is one ``error: ...`` line on
stderr and exit code 2, found before the first trial (test_cli.py has the first few cases)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RunHPO

# keeps a sweep short should a case ever get as far as a trial
SHORT = ["trainer.max_epochs=1", "hydra.sweeper.n_trials=1", "launcher.workers=1"]


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CASES = {
    # keys and values of every group
    "unknown-top-level-key": ("+bogus=1", "bogus: not a key of hpo's config"),
    "unknown-added-key": ("+trainer.foo=1", "trainer.foo: Key 'foo' not in 'TrainerConf'"),
    "fraction-zero": ("dataset.fraction=0", "dataset.fraction must be in (0, 1], got 0.0"),
    "dropout-over-one": ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
    "unknown-mode-name": ("mode.name=foo", "mode.name must be simple or health, got 'foo'"),
    "unknown-direction": ("mode.direction=sideways", "mode.direction must be maximize or minimize"),
    "negative-gpus": ("hardware.gpus_per_worker=-1", "hardware.gpus_per_worker must be 0 or more, got -1"),
    "unknown-fallback": ("launcher.runpod.fallback=maybe", "launcher.runpod.fallback must be fail or local"),
    "unknown-plots": ("reports.plots=some", "reports.plots must be all, best or none, got 'some'"),
    "blank-experiment": ("mlflow.experiment_name=", "mlflow.experiment_name must be a non-blank name"),
    # options of config groups
    "unknown-hardware": ("hardware=nope", "Could not find 'hardware/nope'"),
    "unknown-sampler": ("hydra/sweeper/sampler=nope", "Could not find 'hydra/sweeper/sampler/nope'"),
    # the sweeper's settings and the search space
    "zero-trials": ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials must be at least 1, got 0"),
    "failure-rate-over-one": (
        "hydra.sweeper.max_failure_rate=2",
        "hydra.sweeper.max_failure_rate must be in [0, 1], got 2.0",
    ),
    "reversed-interval": (
        "trainer.learning_rate=interval(0.1, 0.01)",
        "bad search space 'trainer.learning_rate=interval(0.1, 0.01)': `low <= high` must hold",
    ),
    "log-from-zero": (
        "trainer.learning_rate=tag(log, interval(0, 1))",
        "bad search space 'trainer.learning_rate=tag(log, interval(0, 1))': `low > 0` must hold",
    ),
    "reversed-range": ("model.filters=range(8, 4)", "bad search space 'model.filters=range(8, 4)'"),
    "empty-choice": ("model.filters=choice()", "empty choice is not legal"),
    "choice-out-of-range": (
        "model.dropout=choice(0.1, 1.5)",
        "the search space offers a value no trial can run with: model.dropout must be in [0, 1), got 1.5",
    ),
    "searched-unknown-key": (
        "+model.foo=choice(1, 2)",
        "the search space offers a value no trial can run with: model.foo: Key 'foo' not in 'CNNConf'",
    ),
    # stores
    "unknown-store-scheme": (
        "mlflow.tracking_uri=bogus://x",
        "mlflow.tracking_uri bogus://x cannot be opened",
    ),
    "store-directory-blocked": (
        "mlflow.tracking_uri=sqlite:///blocked/mlflow.db",
        "mlflow.db: cannot create the directory",
    ),
}


@pytest.mark.parametrize("override, expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_and_exit_2(
    run_hpo: RunHPO, tmp_path: Path, override: str, expected: str
) -> None:
    (tmp_path / "blocked").write_text("a file where the store's directory would be\n")
    _assert_one_line(run_hpo(["-m", *SHORT, override]), expected)
    assert not (tmp_path / "optuna.journal").exists(), "no study is begun for a sweep that cannot start"


def test_unreachable_tracking_server_fails_at_once(run_hpo: RunHPO) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    out = run_hpo(["-m", *SHORT, f"mlflow.tracking_uri={uri}"], timeout=60)
    _assert_one_line(out, f"mlflow.tracking_uri {uri}: the MLflow tracking server does not answer")


@pytest.mark.parametrize(
    "hardware, env, expected",
    [
        ("local_2gpu", {"CUDA_VISIBLE_DEVICES": "0"}, "need 2 GPUs, but this machine offers 1"),
        ("runpod_1gpu", {"RUNPOD_ENDPOINT_ID": "abc", "RUNPOD_API_KEY": ""}, "RUNPOD_API_KEY is not set"),
    ],
    ids=["gpus-lacking", "runpod-without-key"],
)
def test_hardware_the_sweep_cannot_have(
    run_hpo: RunHPO, tmp_path: Path, hardware: str, env: dict[str, str], expected: str
) -> None:
    _assert_one_line(run_hpo(["-m", *SHORT, f"hardware={hardware}"], **env), expected)
    assert not (tmp_path / "optuna.journal").exists(), "the backend is refused before a study is begun"


def test_a_single_run_with_a_store_it_cannot_open(run_hpo: RunHPO) -> None:
    _assert_one_line(
        run_hpo(["mlflow.tracking_uri=bogus://x"]), "mlflow.tracking_uri bogus://x cannot be opened"
    )


def _assert_one_line(out: subprocess.CompletedProcess[str], expected: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out.stderr + out.stdout
