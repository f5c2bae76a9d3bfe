"""Job configs copied from a template equal what Hydra composes from scratch, trial after trial."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from hpo.core.schema import register_configs
from hpo.driver.cli import CONF_DIR
from launchers.compose import JobComposer


@pytest.fixture
def hydra_app(hydra_restore_singletons: Any) -> Any:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "trials",
    [
        [
            ["model.filters=8", "trainer.learning_rate=0.01"],
            ["model.filters=32", "trainer.learning_rate=1e-05"],
        ],
        [["hardware=runpod_1gpu", "model.dropout=0.1"], ["hardware=runpod_1gpu", "model.dropout=0.3"]],
        [["model=lstm", "dataset=imdb", "model.units=8"], ["model=lstm", "dataset=imdb", "model.units=16"]],
        [["model.filters=8"], ["+extra=1", "model.filters=16"], ["model.filters=4"]],
    ],
)
def test_copied_configs_equal_full_compositions(hydra_app: Any, trials: list[list[str]]) -> None:
    master = hydra_app.compose_config("config", ["trainer.max_epochs=2"], run_mode=RunMode.MULTIRUN)
    composer = JobComposer(hydra_app.config_loader, master)
    for overrides in trials:
        fast = OmegaConf.to_container(composer.compose(overrides), resolve=False)
        full = OmegaConf.to_container(
            hydra_app.config_loader.load_sweep_config(master, overrides), resolve=False
        )
        assert fast == full
        key, value = overrides[-1].split("=")
        assert str(OmegaConf.select(OmegaConf.create(fast), key)) == value


def test_a_long_sweep_keeps_a_bounded_number_of_parsed_overrides(
    hydra_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("launchers.compose.PARSED_KEPT", 8)
    master = hydra_app.compose_config("config", [], run_mode=RunMode.MULTIRUN)
    composer = JobComposer(hydra_app.config_loader, master)
    for i in range(20):
        config = composer.compose([f"trainer.learning_rate={0.001 * (i + 1)}", "trainer.max_epochs=3"])
        assert config.trainer.learning_rate == pytest.approx(0.001 * (i + 1))
        assert config.trainer.max_epochs == 3
    assert len(composer._parsed) == 8
    assert "trainer.max_epochs=3" in composer._parsed, "an override every trial carries stays parsed"
