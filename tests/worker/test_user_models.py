"""A user's own model builder named by ``model._target_``: built, checked and trained like the built-in
families, and every mistake in it one line that names it.

The builders live in a real package written to a temporary folder on ``sys.path``, as a user's package sits
in the directory hpo runs from, beside a config dir with its model config.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

from hpo.core.errors import ConfigError, ModelConfigError
from hpo.core.payload import payload_config
from hpo.core.schema import register_configs, validate
from hpo.driver.cli import CONF_DIR
from worker.models import build_model
from worker.trial import TrialRequest, run_trial

PACKAGE = "hpo_test_user_nets"
BUILDERS = '''
import keras


def tiny(input_shape, num_classes, units=8, activation="relu"):
    """A user's classifier: what hpo passes arrives as it is, for the test to check."""
    assert type(input_shape) is tuple and type(num_classes) is int, (input_shape, num_classes)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(units, activation=activation, name="hidden"),
            keras.layers.Dense(num_classes, activation="softmax", name="probs"),
        ],
        name="tiny",
    )


def with_initializer(input_shape, num_classes, initializer):
    """Takes a nested _target_ of its config, instantiated by hpo the Hydra way."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=initializer)(x)
    return keras.Model(inputs, outputs)


def without_shape(num_classes):
    return keras.Sequential([keras.layers.Dense(num_classes)])


def returns_layers(input_shape, num_classes):
    return {"layers": [keras.layers.Dense(num_classes)]}


def five_outputs(input_shape, num_classes):
    return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Flatten(), keras.layers.Dense(5)])


NOT_A_BUILDER = 3
'''
MODEL_CONFIG = f"""
defaults:
  - /search_space@_global_.hydra.sweeper.params: tiny
  - _self_

_target_: {PACKAGE}.models.tiny
units: 16
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user's project: the package ``hpo_test_user_nets`` (``models``: builders; ``broken``: fails on
    import) on sys.path, and ``conf/`` with the model ``tiny`` and its search space."""
    root = tmp_path_factory.mktemp("project")
    package = root / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(BUILDERS))
    (package / "broken.py").write_text("import a_module_nobody_installed\n")
    for group, text in (("model", MODEL_CONFIG), ("search_space", "model.units: choice(8, 16)\n")):
        (root / "conf" / group).mkdir(parents=True)
        (root / "conf" / group / "tiny.yaml").write_text(text)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
        del sys.modules[name]


@pytest.fixture
def user_package(project: Path) -> str:
    """The module of the user's builders."""
    return f"{PACKAGE}.models"


@pytest.fixture
def config(project: Path, hydra_restore_singletons: Any, tmp_path: Path) -> dict[str, Any]:
    """The config of ``python -m hpo --config-dir conf model=tiny mode=health ...`` run in ``project`` (half
    of digits, one epoch, the store in tmp_path), resolved as the driver sends it to a trial."""
    register_configs()
    overrides = [
        f"hydra.searchpath=[file://{project / 'conf'}]",
        "model=tiny",
        "mode=health",
        "dataset.fraction=0.5",
        "trainer.max_epochs=1",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "mlflow.experiment_name=user",
        "mlflow.system_metrics=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.sweeper.params == {"model.units": "choice(8, 16)"}, "the search space beside the model"
    return payload_config(cfg)


def _one_line(error: pytest.ExceptionInfo[Exception]) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_user_builder_gets_shape_classes_and_its_keys(user_package: str) -> None:
    model = build_model({"_target_": f"{user_package}.tiny", "units": 6}, (8, 8, 1), 10)
    assert model.name == "tiny" and model.get_layer("hidden").units == 6
    assert model.outputs[0].shape == (None, 10)


def test_nested_target_in_the_model_config_is_instantiated(user_package: str) -> None:
    initializer = {"_target_": "keras.initializers.Constant", "value": 0.5}
    model = build_model({"_target_": f"{user_package}.with_initializer", "initializer": initializer}, (3,), 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[-1].kernel), 0.5)


def test_driver_names_a_missing_module_before_any_trial(config: dict[str, Any]) -> None:
    config["model"]["_target_"] = f"{PACKAGE}.modelz.tiny"
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert _one_line(error) == (
        f"model._target_={PACKAGE}.modelz.tiny: no module named '{PACKAGE}.modelz' "
        f"(is the folder holding '{PACKAGE}' the directory you run from?)"
    )


@pytest.mark.parametrize(
    "model, message",
    [
        ({"_target_": "tiny"}, "model._target_ must be a dotted path module.attr to a callable, got 'tiny'"),
        ({"units": 3}, "model._target_ must be a dotted path module.attr to a callable, got None"),
        (
            {"_target_": f"{PACKAGE}.models.tiny", "num_classes": 3},
            "model.num_classes: hpo passes it to the builder from the data; remove it from model",
        ),
    ],
)
def test_driver_refuses_a_model_config_no_builder_can_take(
    config: dict[str, Any], model: dict[str, Any], message: str
) -> None:
    config["model"] = model
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert _one_line(error) == message


def test_user_model_config_stays_an_open_dict(config: dict[str, Any], user_package: str) -> None:
    assert validate(config).model == {"_target_": f"{user_package}.tiny", "units": 16}
    config["model"]["anything"] = {"nested": [1, 2]}
    assert validate(config).model["anything"] == {"nested": [1, 2]}


@pytest.mark.parametrize(
    "target, settings, message",
    [
        (
            f"{PACKAGE}.broken.build",
            {},
            f"model._target_={PACKAGE}.broken.build: importing {PACKAGE}.broken failed: ModuleNotFoundError: "
            "No module named 'a_module_nobody_installed'",
        ),
        ("{models}.biuld", {}, "model._target_={models}.biuld: module {models} has no attribute 'biuld'"),
        (
            "{models}.NOT_A_BUILDER",
            {},
            "model._target_={models}.NOT_A_BUILDER: module {models} has an attribute that is not callable "
            "'NOT_A_BUILDER'",
        ),
        (
            "{models}.without_shape",
            {},
            "model._target_={models}.without_shape cannot be called as hpo calls a builder (got an "
            "unexpected keyword argument 'input_shape')",
        ),
        ("{models}.tiny", {"widht": 3}, "(got an unexpected keyword argument 'widht')"),
        ("{models}.with_initializer", {}, "(missing a required argument: 'initializer')"),
        (
            "{models}.returns_layers",
            {},
            "model._target_={models}.returns_layers returned a dict with keys ['layers']: return a "
            "keras.Model (uncompiled: hpo compiles it)",
        ),
        (
            "{models}.five_outputs",
            {},
            "model._target_={models}.five_outputs built a model with output shape (None, 5); the data has 3 "
            "classes: end it in one Dense(num_classes, activation='softmax')",
        ),
    ],
    ids=[
        "import-fails",
        "no-attribute",
        "not-callable",
        "no-input_shape",
        "unknown-key",
        "missing-key",
        "not-a-model",
        "wrong-outputs",
    ],
)
def test_builder_mistakes_are_one_line(
    user_package: str, target: str, settings: dict[str, Any], message: str
) -> None:
    target = target.format(models=user_package)
    with pytest.raises(ModelConfigError) as error:
        build_model({"_target_": target, **settings}, (4,), 3)
    assert message.format(models=user_package) in _one_line(error)


@pytest.fixture
def mixed_precision() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_float16_output_is_cast_to_float32_under_mixed_precision(
    user_package: str, mixed_precision: None
) -> None:
    model = build_model({"_target_": f"{user_package}.tiny", "units": 4}, (8, 8, 1), 10)
    assert model.get_layer("probs").compute_dtype == "float16", "the user's layers keep the policy"
    assert model.outputs[0].dtype == "float32"
    assert model.layers[-1].name == "output_float32"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loss = model.train_on_batch(np.zeros((4, 8, 8, 1), "float32"), np.arange(4))
    assert np.isfinite(loss)


def test_user_model_trial_scores_logs_reports_and_a_loadable_model(
    config: dict[str, Any], user_package: str
) -> None:
    """One trial end to end in health mode: the downstream steps work on a model hpo did not write."""
    result = run_trial(TrialRequest(config=config, trial_number=0))
    client = MlflowClient(config["mlflow"]["tracking_uri"])
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert (
        run.data.params["model._target_"] == f"{user_package}.tiny" and run.data.params["model.units"] == "16"
    )
    assert {"health.score", "health.dead_units", "objective"} <= set(run.data.metrics)
    logged = {a.path for a in client.list_artifacts(result.run_id, "architecture")}
    assert "architecture/architecture.json" in logged
    mlflow.set_tracking_uri(config["mlflow"]["tracking_uri"])
    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    assert model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 10)


def test_user_model_mistake_fails_the_trial_and_its_run(config: dict[str, Any], user_package: str) -> None:
    config["model"] = {"_target_": f"{user_package}.returns_layers"}
    with pytest.raises(ModelConfigError, match=r"returned a dict with keys \['layers'\]: return a keras"):
        run_trial(TrialRequest(config=config, trial_number=0))
    client = MlflowClient(config["mlflow"]["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("user").experiment_id])
    assert run.info.status == "FAILED"
    assert "returned a dict" in run.data.tags["hpo.error"]
