"""Where a sweep's study lives and what it is called: the same command must find the same study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import OmegaConf

from hpo.driver.search_space import SearchSpace
from hpo.driver.study import default_storage, public_url


@pytest.mark.parametrize(
    "tracking_uri, folder",
    [
        ("sqlite:///mlflow.db", "."),
        ("sqlite:///stores/runs.db", "stores"),
        ("http://mlflow.example:5000", "."),
        ("mlruns", "."),
    ],
)
def test_the_study_is_stored_beside_a_sqlite_mlflow_store(
    tmp_path: Path, tracking_uri: str, folder: str
) -> None:
    assert default_storage(tracking_uri, tmp_path) == str((tmp_path / folder).resolve() / "optuna.journal")


def test_a_study_an_earlier_version_kept_in_optuna_db_resumes_there(tmp_path: Path) -> None:
    (tmp_path / "optuna.db").touch()
    assert default_storage("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    (tmp_path / "optuna.journal").touch()
    assert default_storage("sqlite:///mlflow.db", tmp_path) == str(tmp_path.resolve() / "optuna.journal")


def test_a_storage_password_is_never_shown() -> None:
    assert "s3cret" not in public_url("postgresql://hpo:s3cret@db.example/studies")
    assert public_url("sqlite:////data/optuna.db") == "sqlite:////data/optuna.db"
    assert public_url("/data/optuna.journal") == "/data/optuna.journal"


def _space(params: dict[str, str], *arguments: str) -> SearchSpace:
    impl = OptunaSweeperImpl(
        optuna.samplers.RandomSampler(),
        "maximize",
        None,
        None,
        4,
        2,
        1.0,
        None,
        None,
        OmegaConf.create(params),
    )
    return SearchSpace.parse(impl, list(arguments))


def _identity(params: dict[str, str], *arguments: str) -> str:
    return _space(params, *arguments).identity("maximize")


def test_a_space_knows_which_config_sections_it_searches() -> None:
    assert _space({"model.filters": "choice(8, 16)"}, "dataset=mnist").searches("model")
    assert not _space({"model.filters": "choice(8, 16)"}, "dataset=mnist").searches("dataset"), "fixed"
    assert _space({}, "dataset=choice(digits, mnist)").searches("dataset"), "a choice of option"
    assert _space({"dataset.fraction": "interval(0.5, 1.0)"}).searches("dataset")
    assert not _space({"datasets_extra.x": "choice(1, 2)"}).searches("dataset")


def test_the_same_command_names_the_same_study() -> None:
    space = {"model.filters": "choice(8, 16)", "trainer.learning_rate": "tag(log, interval(0.001, 0.1))"}
    name = _identity(space, "trainer.max_epochs=1", "dataset=digits")
    assert len(name) == 8
    assert _identity(space, "dataset=digits", "trainer.max_epochs=1") == name, "order does not matter"
    assert _identity(space, "trainer.max_epochs=1", "dataset=digits", "launcher.workers=4") == name
    assert _identity(space, "trainer.max_epochs=1", "dataset=digits", "mlflow.log_model=false") == name
    assert _identity(space, "trainer.max_epochs=2", "dataset=digits") != name, "another trial, another study"
    assert (
        _identity({**space, "model.filters": "choice(8, 32)"}, "trainer.max_epochs=1", "dataset=digits")
        != name
    )
