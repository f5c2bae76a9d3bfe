"""The structured schema: what the driver and the worker both accept or refuse."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from hpo.core.errors import ConfigError
from hpo.core.schema import CNNConf, LSTMConf, Modality, register_configs, validate
from hpo.driver.cli import CONF_DIR


@pytest.fixture
def composed(hydra_restore_singletons: Any) -> Any:
    """The default config, composed the way the CLI does it (Hydra's global state restored afterwards)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config")
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=False)


def test_defaults_validate_to_typed_objects(composed: Any) -> None:
    composed["launcher"]["backend"] = "local"
    cfg = validate(composed)
    assert cfg.dataset.name == "digits" and cfg.dataset.modality == Modality.image
    assert isinstance(cfg.model, CNNConf)
    assert cfg.launcher.workers == 2


def test_text_dataset_gets_the_lstm_schema(composed: Any) -> None:
    composed["launcher"]["backend"] = "local"
    composed["model"] = {"_target_": "worker.models.lstm", "units": 8}
    assert isinstance(validate(composed).model, LSTMConf)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("launcher", "workers"), 0, "launcher.workers must be at least 1, got 0"),
        (("trainer", "max_epochs"), -1, "trainer.max_epochs must be at least 1, got -1"),
        (("trainer", "learning_rate"), 0.0, "trainer.learning_rate must be positive"),
        (("model", "dropout"), 1.0, "model.dropout must be in [0, 1)"),
        (("model", "filtres"), 8, "filtres"),
        (("model", "_target_"), "transformer", "model._target_ must be a dotted path module.attr"),
        (("dataset", "modality"), "audio", "audio"),
        (("trainer", "batch_size"), "big", "big"),
        (("mode", "direction"), "sideways", "mode.direction must be maximize or minimize, got 'sideways'"),
        (("mlflow", "experiment_name"), " ", "mlflow.experiment_name must be a non-blank name"),
    ],
)
def test_bad_values_name_their_key(composed: Any, path: tuple[str, str], value: Any, message: str) -> None:
    composed["launcher"]["backend"] = "local"
    composed[path[0]][path[1]] = value
    with pytest.raises(ConfigError) as raised:
        validate(composed)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_checked_sections_are_remembered_but_each_config_gets_its_own_objects(composed: Any) -> None:
    composed["launcher"]["backend"] = "local"
    plain: dict[str, Any] = OmegaConf.to_container(OmegaConf.create(composed), resolve=True)  # type: ignore[assignment]
    first = validate(plain)
    plain["trainer"]["learning_rate"] = 0.5
    second = validate(plain)
    assert (first.trainer.learning_rate, second.trainer.learning_rate) == (1e-3, 0.5)
    assert second.dataset == first.dataset and second.dataset is not first.dataset
    plain["trainer"]["learning_rate"] = -1.0
    with pytest.raises(ConfigError, match="trainer.learning_rate must be positive"):
        validate(plain)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"dataset": None}, "dataset"),
        ({"model": "cnn"}, "model._target_ must be a dotted path module.attr"),
        ({"bogus": 1}, "bogus: not a key of hpo's config, whose keys are seed, dataset, model"),
    ],
)
def test_bad_sections_name_their_key(composed: Any, change: dict[str, Any], message: str) -> None:
    composed["launcher"]["backend"] = "local"
    composed.update(change)
    if change.get("dataset", 0) is None:
        del composed["dataset"]
    with pytest.raises(ConfigError) as raised:
        validate(composed)
    assert message in str(raised.value)
