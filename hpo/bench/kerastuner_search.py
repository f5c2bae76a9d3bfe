"""``python -m hpo.bench.kerastuner_search OUT``: KerasTuner's ``BayesianOptimization`` on hpo's default
sweep, for ``hpo.bench e2e`` to time against hpo.

Everything a trial depends on comes from hpo itself: the composed config (dataset, model family, trainer,
seed), the search space the sweep would search (``hydra.sweeper.params``, parsed by hydra-optuna-sweeper's
grammar and mapped to ``hp.Choice``/``hp.Int``/``hp.Float``), the model builder, the data split and the
input pipeline. Each trial keeps its best epoch's ``val_accuracy``, as hpo's objective in ``mode=simple``.
The figures go to OUT as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from hpo.core.schema import HPOConfig

STARTED = time.perf_counter()
OBJECTIVE = "val_accuracy"


def sweep_setup(overrides: list[str]) -> tuple[HPOConfig, dict[str, BaseDistribution]]:
    """hpo's composed config under ``overrides`` and the distributions its sweep searches."""
    from hydra import compose, initialize_config_dir

    from hpo.core import private_apis
    from hpo.core.schema import register_configs, validate
    from hpo.driver.cli import CONF_DIR

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    space = private_apis.search_distributions([f"{key}={value}" for key, value in params.items()])
    return validate(cfg), space


def with_values(config: HPOConfig, values: dict[str, Any]) -> HPOConfig:
    """``config`` with each ``section.field`` of ``values`` set, as a trial's overrides set them."""
    sections: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        section, key = name.split(".", 1)
        sections.setdefault(section, {})[key] = value
    changed = {s: _updated(getattr(config, s), fields) for s, fields in sections.items()}
    return dataclasses.replace(config, **changed)


def _updated(section: Any, fields: dict[str, Any]) -> Any:
    """A config section (a dataclass, or a user model's plain keys) with ``fields`` set."""
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        return dataclasses.replace(section, **fields)
    return {**section, **fields}


def hyperparameter(hp: Any, name: str, distribution: BaseDistribution) -> Any:
    """The KerasTuner hyperparameter that samples what Optuna's ``distribution`` does."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return hp.Choice(name, list(distribution.choices))
    if isinstance(distribution, IntDistribution | FloatDistribution):
        kind = hp.Int if isinstance(distribution, IntDistribution) else hp.Float
        step = None if distribution.log else distribution.step
        sampling = "log" if distribution.log else "linear"
        return kind(name, distribution.low, distribution.high, step=step, sampling=sampling)
    raise TypeError(f"{name}: no KerasTuner hyperparameter for {type(distribution).__name__}")


def search(config: HPOConfig, space: dict[str, BaseDistribution], trials: int, directory: Path) -> float:
    """Run ``trials`` trials of ``BayesianOptimization`` and return the best ``val_accuracy``."""
    import keras
    import keras_tuner

    from worker import runtime
    from worker.datasets import load_dataset
    from worker.models import build_model
    from worker.trainer import pipeline

    runtime.configure(config.seed, runtime.cpu_threads(1))
    data = load_dataset(config.dataset, split_seed=config.seed)

    class HyperModel(keras_tuner.HyperModel):
        def build(self, hp: Any) -> keras.Model:
            trial = with_values(config, {name: hyperparameter(hp, name, d) for name, d in space.items()})
            model = build_model(trial.model, data.input_shape, data.num_classes)
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=trial.trainer.learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            return model

        def fit(self, hp: Any, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
            trainer = with_values(config, {name: hp.get(name) for name in space}).trainer
            stops = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=trainer.patience)]
            return model.fit(
                pipeline(data.x_train, data.y_train, trainer.batch_size, config.seed),
                validation_data=pipeline(data.x_val, data.y_val, trainer.batch_size, None),
                epochs=trainer.max_epochs,
                callbacks=[*kwargs.get("callbacks", []), *(stops if trainer.early_stopping else [])],
                verbose=0,
            )

    tuner = keras_tuner.BayesianOptimization(
        HyperModel(),
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_trials=trials,
        seed=config.seed,
        directory=str(directory),
        project_name="kerastuner",
        overwrite=True,
    )
    tuner.search(verbose=0)
    return float(tuner.oracle.get_best_trials(1)[0].score)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hpo.bench.kerastuner_search", description=__doc__)
    parser.add_argument("out", type=Path, help="where to write the figures (JSON)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config, space = sweep_setup([f"seed={args.seed}", f"trainer.max_epochs={args.epochs}"])
    ready = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpo-bench-kerastuner-") as directory:
        best = search(config, space, args.trials, Path(directory))
    figures = {
        "best": best,
        "setup_s": round(ready - STARTED, 3),
        "search_s": round(time.perf_counter() - ready, 3),
        "searched": sorted(space),
    }
    args.out.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
