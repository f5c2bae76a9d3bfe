"""What ``hpo.core.private_apis`` relies on in Hydra's and hydra-optuna-sweeper's private code still holds: a
release that changes it fails here, naming the library and its version, before a sweep meets it."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.core import private_apis
from hpo.driver.cli import CONF_DIR


def _lib(name: str) -> str:
    return f"{name} {importlib.metadata.version(name)}"


HYDRA = _lib("hydra-core")
SWEEPER = _lib("hydra-optuna-sweeper")
OPTUNA = _lib("optuna")
IMPL = "hydra_plugins.hydra_optuna_sweeper._impl"


def _parameters(library: str, owner: Any, name: str) -> list[str]:
    """The parameter names of ``owner.name``, failing with the library's name when it is gone."""
    function = getattr(owner, name, None)
    assert callable(function), f"{library}: {getattr(owner, '__name__', owner)}.{name} is gone"
    return list(inspect.signature(function).parameters)


def _impl(**settings: Any) -> Any:
    """The plugin's sweeper, built as Hydra builds it from ``hydra.sweeper``."""
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    arguments: dict[str, Any] = {
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "direction": "maximize",
        "storage": None,
        "study_name": None,
        "n_trials": 4,
        "n_jobs": 2,
        "max_failure_rate": 0.0,
        "search_space": None,
        "custom_search_space": None,
        "params": None,
    }
    arguments.update(settings)
    return OptunaSweeperImpl(**arguments)


def _legacy(build: Any, *args: Any) -> BaseDistribution:
    """One of Optuna's pre-3.0 distributions, as the plugin builds them, without their FutureWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return build(*args)  # type: ignore[no-any-return]


def _extend(config: DictConfig, trial: optuna.Trial) -> None:
    """A ``custom_search_space`` function, as a user writes one."""
    trial.suggest_int("model.extra", 1, 2)


# --- Hydra ----------------------------------------------------------------------------------------------


def test_hydras_private_names_are_there() -> None:
    loader_impl = importlib.import_module("hydra._internal.config_loader_impl")
    assert _parameters(HYDRA, loader_impl, "get_overrides_dirname") == [
        "overrides",
        "exclude_keys",
        "item_sep",
        "kv_sep",
    ], f"{HYDRA}: get_overrides_dirname's parameters changed"
    repository = importlib.import_module("hydra._internal.config_repository")
    assert _parameters(HYDRA, repository.ConfigRepository, "group_exists") == ["self", "config_path"], (
        f"{HYDRA}: ConfigRepository.group_exists's parameters changed"
    )


def test_override_dirname_is_hydras() -> None:
    overrides = OverridesParser.create().parse_overrides(["model.filters=8", "dataset=digits", "seed=3"])
    dirname = private_apis.overrides_dirname(overrides, kv_sep=":", item_sep=",", exclude_keys=["seed"])
    assert dirname == "dataset:digits,model.filters:8", (
        f"{HYDRA}: override_dirname is no longer the sorted overrides, keys excluded, '=' as kv_sep"
    )


@pytest.fixture
def config_loader(hydra_restore_singletons: Any) -> Iterator[Any]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield GlobalHydra.instance().hydra.config_loader
    GlobalHydra.instance().clear()


def test_config_groups_are_found_through_the_loaders_repository(config_loader: Any) -> None:
    assert hasattr(config_loader, "repository"), f"{HYDRA}: the config loader has no .repository"
    found = {name: private_apis.group_exists(config_loader, name) for name in ("model", "hydra/launcher")}
    assert found == {"model": True, "hydra/launcher": True}, f"{HYDRA}: group_exists misses config groups"
    assert not private_apis.group_exists(config_loader, "model.filters"), (
        f"{HYDRA}: group_exists takes a config key for a group"
    )


# --- hydra-optuna-sweeper -------------------------------------------------------------------------------


def test_the_sweepers_private_names_are_there() -> None:
    impl = importlib.import_module(IMPL)
    assert _parameters(SWEEPER, impl, "create_params_from_overrides") == ["arguments"], (
        f"{SWEEPER}: create_params_from_overrides's parameters changed"
    )
    expected = {
        "_process_searchspace_config": ["self"],
        "_parse_sweeper_params_config": ["self"],
        "_configure_trials": ["self", "trials", "search_space_distributions", "fixed_params"],
        "_get_directions": ["self"],
        "_to_grid_sampler_choices": ["self", "distribution"],
    }
    for name, parameters in expected.items():
        assert _parameters(SWEEPER, impl.OptunaSweeperImpl, name) == parameters, (
            f"{SWEEPER}: OptunaSweeperImpl.{name}'s parameters changed"
        )
    sweeper = _impl()
    for name in (
        "sampler",
        "n_trials",
        "storage",
        "study_name",
        "max_failure_rate",
        "custom_search_space_extender",
        "search_space_distributions",
    ):
        assert hasattr(sweeper, name), f"{SWEEPER}: OptunaSweeperImpl has no attribute {name}"


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("choice(8, 16)", CategoricalDistribution((8, 16))),
        ("choice(relu, elu)", CategoricalDistribution(("relu", "elu"))),
        ("range(1, 3)", IntDistribution(1, 3)),
        ("range(1, 9, 2)", IntDistribution(1, 9, step=2)),
        ("range(0.0, 1.0, 0.25)", FloatDistribution(0.0, 1.0, step=0.25)),
        ("interval(0.0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("interval(1, 8)", FloatDistribution(1.0, 8.0)),
        ("tag(log, interval(0.0003, 0.01))", FloatDistribution(0.0003, 0.01, log=True)),
        ("tag(log, interval(1, 64))", FloatDistribution(1.0, 64.0, log=True)),
        ("tag(log, int(interval(1, 64)))", IntDistribution(1, 64, log=True)),
        ("int(interval(1, 8))", IntDistribution(1, 8)),
    ],
)
def test_each_expression_parses_to_a_current_distribution(
    expression: str, expected: BaseDistribution
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        space = private_apis.parse_search_space(
            _impl(params=OmegaConf.create({"model.x": expression})), ["trainer.max_epochs=1"]
        )
    assert space.expressions == [f"model.x={expression}", "trainer.max_epochs=1"]
    assert space.fixed == {"trainer.max_epochs": "1"}, f"{SWEEPER}: fixed overrides parse differently"
    parsed = space.distributions["model.x"]
    assert type(parsed) is type(expected) and parsed == expected, (
        f"{SWEEPER}: '{expression}' now parses to {parsed!r}, not {expected!r}"
    )


def test_a_fixed_override_replaces_a_sampled_one() -> None:
    impl = _impl(params=OmegaConf.create({"model.x": "choice(1, 2)", "model.y": "choice(1, 2)"}))
    space = private_apis.parse_search_space(impl, ["model.x=3"])
    assert list(space.distributions) == ["model.y"] and space.fixed == {"model.x": "3"}, SWEEPER


def test_the_deprecated_search_space_setting_is_read_and_named_as_before() -> None:
    config = {"model.x": {"type": "float", "low": 0.1, "high": 1.0, "log": True}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Hydra's own notice that search_space is deprecated
        warnings.simplefilter("error", FutureWarning)
        space = private_apis.parse_search_space(_impl(search_space=OmegaConf.create(config)), [])
    assert space.distributions == {"model.x": FloatDistribution(0.1, 1.0, log=True)}, SWEEPER
    # part of the study's name: a change renames the study of every sweep configured this way
    assert space.configured == ["model.x=LogUniformDistribution(high=1.0, low=0.1)"], (
        f"{SWEEPER} with {OPTUNA}: the search_space setting's distributions print differently"
    )


@pytest.mark.parametrize(
    "expression",
    ["range(1, 5)", "range(1, 10, 3)", "range(0.0, 1.0, 0.25)", "choice(a, b)", "int(interval(1, 4))"],
)
def test_grid_points_are_the_plugins(expression: str) -> None:
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        theirs, _ = create_params_from_overrides([f"x={expression}"])
    (distribution,) = theirs.values()
    expected = _impl()._to_grid_sampler_choices(distribution)
    assert private_apis.grid_choices(private_apis.current(distribution)) == expected, (
        f"{SWEEPER}: the grid for '{expression}' is now {expected}"
    )


@pytest.mark.parametrize("expression", ["interval(0.0, 1.0)", "tag(log, int(interval(1, 8)))"])
def test_a_grid_over_a_continuous_range_is_refused(expression: str) -> None:
    space = private_apis.parse_search_space(_impl(params=OmegaConf.create({"x": expression})), [])
    with pytest.raises(ValueError, match="GridSampler only supports discrete distributions"):
        private_apis.grid_choices(space.distributions["x"])


def test_a_trials_overrides_come_from_its_suggestions_and_the_custom_search_space() -> None:
    impl = _impl(custom_search_space=f"{__name__}._extend")
    impl.config = OmegaConf.create({})  # set by setup() in a sweep
    trial = optuna.create_study().ask()
    overrides = private_apis.trial_overrides(impl, trial, {"model.x": IntDistribution(1, 3)})
    assert overrides == [
        f"model.x={trial.params['model.x']}",
        f"model.extra={trial.params['model.extra']}",
    ], f"{SWEEPER}: _configure_trials no longer gives one 'key=value' per suggested parameter"
    assert type(trial.distributions["model.x"]) is IntDistribution, SWEEPER


@pytest.mark.parametrize(
    "direction, expected",
    [("maximize", ["maximize"]), (["minimize", "maximize"], ["minimize", "maximize"])],
)
def test_directions(direction: Any, expected: list[str]) -> None:
    assert private_apis.directions(_impl(direction=direction)) == expected, SWEEPER


# --- Optuna's pre-3.0 classes, in the studies the plugin's classes began ----------------------------------

LEGACY = [
    ("UniformDistribution", (0.0, 1.0), FloatDistribution(0.0, 1.0)),
    ("LogUniformDistribution", (0.001, 1.0), FloatDistribution(0.001, 1.0, log=True)),
    ("DiscreteUniformDistribution", (0.0, 1.0, 0.25), FloatDistribution(0.0, 1.0, step=0.25)),
    ("IntUniformDistribution", (1, 9, 2), IntDistribution(1, 9, step=2)),
    ("IntLogUniformDistribution", (1, 64), IntDistribution(1, 64, log=True)),
]


@pytest.mark.parametrize("name, args, expected", LEGACY)
def test_each_pre_3_class_converts_and_converts_back(name: str, args: tuple[Any, ...], expected: Any) -> None:
    cls = getattr(optuna.distributions, name, None)
    if cls is None:
        pytest.skip(f"{OPTUNA} has no {name}: studies begun with it cannot be read, nothing to convert")
    legacy = _legacy(cls, *args)
    converted = private_apis.current(legacy)
    assert type(converted) is type(expected) and converted == expected, f"{OPTUNA}: {legacy!r}"
    study = optuna.create_study()
    study.ask()
    assert private_apis.as_stored({"x": converted}, study.get_trials()) == {"x": converted}
    study.ask()._suggest("x", legacy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        (back,) = private_apis.as_stored({"x": converted}, study.get_trials()).values()
    assert type(back) is cls and back == legacy, f"{OPTUNA}: {converted!r} goes back to {back!r}"


def test_a_study_begun_with_the_plugins_classes_resumes() -> None:
    study = optuna.create_study()
    legacy = _legacy(optuna.distributions.UniformDistribution, 0.0, 1.0)
    first = study.ask()
    first._suggest("x", legacy)
    study.tell(first, 0.5)
    with pytest.raises(ValueError, match="different distribution kind"):
        study.ask()._suggest("x", FloatDistribution(0.0, 1.0))
    space = private_apis.as_stored({"x": FloatDistribution(0.0, 1.0)}, study.get_trials(deepcopy=False))
    trial = study.ask()
    (override,) = private_apis.trial_overrides(_impl(), trial, space)
    assert override == f"x={trial.params['x']}", OPTUNA
