"""The trial payload: what a worker accepts, and the one-line reason it gives for what it refuses."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from hpo.core.payload import PROTOCOL_VERSION, PayloadError, TrialPayload, parse_payload, payload_config
from hpo.core.schema import register_configs
from hpo.driver.cli import CONF_DIR


@pytest.fixture
def payload(hydra_restore_singletons: Any) -> dict[str, Any]:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hardware=runpod_2gpu"])
    GlobalHydra.instance().clear()
    built = TrialPayload(protocol=PROTOCOL_VERSION, config=payload_config(cfg), gpus_expected=2)
    built.trial.study, built.trial.number, built.trial.seed = "study", 4, 0
    return built.to_json()


def test_a_payload_is_small_json_and_parses_back(payload: dict[str, Any]) -> None:
    size = len(json.dumps(payload).encode())
    assert size < 10_000, f"payload is {size} bytes"
    parsed = parse_payload(json.loads(json.dumps(payload)))
    assert parsed.trial.number == 4 and parsed.gpus_expected == 2
    assert parsed.config["hardware"]["backend"] == "runpod"
    assert parsed.config["model"]["filters"] == payload["config"]["model"]["filters"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["config"]["trainer"].update(lr=0.1), "trainer.lr: Key 'lr' not in 'TrainerConf'"),
        (lambda p: p["config"]["model"].update(filterz=3), "Key 'filterz' not in 'CNNConf'"),
        (lambda p: p["config"]["trainer"].update(max_epochs="many"), "trainer.max_epochs"),
        (lambda p: p["config"].pop("trainer"), "missing section(s) trainer"),
        (lambda p: p["config"].update(extra={}), "unknown section(s) extra"),
        (lambda p: p.update(protocol=PROTOCOL_VERSION + 1), "rebuild the worker image"),
        (lambda p: p.update(surprise=1), "Key 'surprise' not in 'TrialPayload'"),
        (lambda p: p["trial"].pop("number"), "trial.number"),
        (lambda p: p.update(gpus_expected="two"), "gpus_expected"),
    ],
)
def test_a_malformed_payload_is_refused_with_its_reason(
    payload: dict[str, Any], mutate: Any, message: str
) -> None:
    bad = copy.deepcopy(payload)
    mutate(bad)
    with pytest.raises(PayloadError, match=re.escape(message)) as info:
        parse_payload(bad)
    assert "\n" not in str(info.value)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(PayloadError, match="must be a JSON object"):
        parse_payload(["not", "a", "payload"])
