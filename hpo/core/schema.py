"""Structured config schemas: Hydra validates every composed config against these dataclasses.

Types and key names are checked by OmegaConf when the config is composed; value ranges are checked
by each dataclass's ``__post_init__`` when :func:`validate` turns the config into objects.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import IntegerNode

from hpo.core.errors import ConfigError
from hpo.core.names import TRIAL_LIBRARIES

PAYLOAD_KEYS = ("seed", "dataset", "model", "mode", "hardware", "trainer", "launcher", "mlflow", "reports")


# where trials can run: local subprocesses, RunPod serverless workers, or SLURM jobs
BACKENDS = ("local", "runpod", "slurm")


class Modality(StrEnum):
    image = "image"
    text = "text"


class DataSource(StrEnum):
    sklearn = "sklearn"
    keras = "keras"
    web = "web"


def _require(condition: bool, key: str, rule: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def require_importable(key: str, target: Any) -> None:
    """Check that ``target`` is a dotted ``module.attr`` path whose module can be found, without importing
    the module itself (only its parent packages), so the driver catches a typo before any trial.

    Raises:
        ConfigError: not a dotted path, or no module of that name on ``sys.path``.
    """
    parts = target.split(".") if isinstance(target, str) else []
    _require(
        len(parts) >= 2 and all(part.isidentifier() for part in parts),
        key,
        "a dotted path module.attr to a callable",
        target,
    )
    module = target.rsplit(".", 1)[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing, or is a module rather than a package
        found = False
    except Exception as exc:  # a parent package's __init__ failed
        raise ConfigError(
            f"{key}={target}: importing {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not found:
        raise ConfigError(
            f"{key}={target}: no module named {module!r} "
            f"(is the folder holding {parts[0]!r} the directory you run from?)"
        )


@dataclass
class DatasetConf:
    # name of the dataset: a built-in one (digits, mnist, cifar10, imdb, ...), or any name for a loader's data
    name: str = MISSING
    # your own data: `_target_` (an importable callable, see worker.user_data) and its keyword arguments;
    # null: the built-in dataset called `name`
    loader: dict[str, Any] | None = None
    # built-in datasets: image or text (left out with a loader: the data's shape tells)
    modality: Modality | None = None
    # built-in datasets: scikit-learn's bundled data, Keras' loaders, or hpo's own downloader
    source: DataSource | None = None
    # shape of one example: [height, width, channels] for images, [sequence_length] for text; with a
    # loader optional (the data's shape, checked against this when set)
    input_shape: list[int] | None = None
    # number of target classes; with a loader optional (the labels' highest id + 1, checked when set)
    num_classes: int | None = None
    # text: keep the vocab_size most frequent words, the rest become out-of-vocabulary
    vocab_size: int | None = None
    # fraction of the training data held out (stratified, seeded) for validation, where the loader gives none
    validation_split: float = 0.2
    # train and validate on this stratified fraction of the training data, for quick sweeps
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.loader is None:
            self._check_built_in()
        else:
            require_importable("dataset.loader._target_", self.loader.get("_target_"))
            for key in ("modality", "source"):
                value = getattr(self, key)
                _require(value is None, f"dataset.{key}", "left out with dataset.loader", str(value))
        _require(0.0 < self.fraction <= 1.0, "dataset.fraction", "in (0, 1]", self.fraction)
        classes = self.num_classes
        _require(classes is None or classes >= 2, "dataset.num_classes", "at least 2", classes)
        _require(
            0.0 < self.validation_split < 1.0, "dataset.validation_split", "in (0, 1)", self.validation_split
        )
        shape = self.input_shape
        _require(
            shape is None or (len(shape) > 0 and all(d > 0 for d in shape)),
            "dataset.input_shape",
            "positive sizes",
            shape,
        )
        if self.modality == Modality.text or self.vocab_size is not None:
            _require(
                self.vocab_size is not None and self.vocab_size > 2,
                "dataset.vocab_size",
                "set above 2 for text data",
                self.vocab_size,
            )

    def _check_built_in(self) -> None:
        """A built-in dataset's config says all it is: its modality, source, shape and classes."""
        for key in ("modality", "source", "input_shape", "num_classes"):
            _require(getattr(self, key) is not None, f"dataset.{key}", "set (or name a dataset.loader)", None)
        assert self.modality is not None and self.input_shape is not None
        expected_rank = 3 if self.modality == Modality.image else 1
        _require(
            len(self.input_shape) == expected_rank,
            "dataset.input_shape",
            f"{expected_rank} positive sizes for {self.modality.value} data",
            list(self.input_shape),
        )


@dataclass
class CNNConf:
    # the builder that turns these hyperparameters into a network
    _target_: str = "worker.models.cnn"
    # number of conv blocks (conv, optional batch norm, activation, 2x2 max-pool)
    conv_layers: int = 2
    # filters of the first conv block; each later block doubles them
    filters: int = 32
    # square kernel size of every conv layer
    kernel_size: int = 3
    # activation of conv and dense layers (any Keras activation name)
    activation: str = "relu"
    # batch normalisation after each conv layer
    batch_norm: bool = False
    # dropout rate before the classifier head
    dropout: float = 0.25
    # units of the hidden dense layer; 0 removes it
    dense_units: int = 64

    def __post_init__(self) -> None:
        _require(self.conv_layers >= 1, "model.conv_layers", "at least 1", self.conv_layers)
        _require(self.filters >= 1, "model.filters", "at least 1", self.filters)
        _require(self.kernel_size >= 1, "model.kernel_size", "at least 1", self.kernel_size)
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)
        _require(self.dense_units >= 0, "model.dense_units", "0 or more", self.dense_units)


@dataclass
class LSTMConf:
    # the builder that turns these hyperparameters into a network
    _target_: str = "worker.models.lstm"
    # size of the learned word embedding
    embedding_dim: int = 64
    # units of each recurrent layer
    units: int = 64
    # number of stacked LSTM layers
    layers: int = 1
    # read sequences in both directions
    bidirectional: bool = False
    # dropout rate on the recurrent layers' inputs and before the classifier head
    dropout: float = 0.2
    # text: the token vocabulary's size (model/lstm.yaml takes dataset.vocab_size); null: the examples are
    # feature sequences or images, not token ids
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        _require(self.embedding_dim >= 1, "model.embedding_dim", "at least 1", self.embedding_dim)
        _require(self.units >= 1, "model.units", "at least 1", self.units)
        _require(self.layers >= 1, "model.layers", "at least 1", self.layers)
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)


@dataclass
class MLPConf:
    # the builder that turns these hyperparameters into a network
    _target_: str = "worker.models.mlp"
    # number of hidden dense layers; 0 leaves a linear softmax classifier
    layers: int = 2
    # units of each hidden dense layer
    units: int = 64
    # activation of the hidden layers (any Keras activation name)
    activation: str = "relu"
    # batch normalisation after each hidden layer's dense transform
    batch_norm: bool = False
    # dropout rate after each hidden layer
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _require(self.layers >= 0, "model.layers", "0 or more", self.layers)
        _require(self.units >= 1, "model.units", "at least 1", self.units)
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)


@dataclass
class HealthWeights:
    # share of validation accuracy in the health-mode objective; the health score gets the rest
    accuracy: float = 0.7
    # relative weights of the health components in the health score (normalised to sum to 1)
    overfitting: float = 1.0
    convergence: float = 1.0
    gradients: float = 1.0
    dead_units: float = 1.0
    weight_health: float = 1.0

    def __post_init__(self) -> None:
        _require(0.0 <= self.accuracy <= 1.0, "mode.weights.accuracy", "in [0, 1]", self.accuracy)
        parts = (self.overfitting, self.convergence, self.gradients, self.dead_units, self.weight_health)
        _require(
            min(parts) >= 0 and sum(parts) > 0,
            "mode.weights (components)",
            "non-negative with a positive sum",
            parts,
        )


@dataclass
class ModeConf:
    # name of the scoring mode: simple (validation accuracy) or health (accuracy blended with health)
    name: str = "simple"
    # metric the sweep optimises, as logged per trial
    objective: str = "val_accuracy"
    # whether a larger objective is better
    direction: str = "maximize"
    # health mode's blend; ignored by simple mode
    weights: HealthWeights = field(default_factory=HealthWeights)

    def __post_init__(self) -> None:
        _require(self.name in ("simple", "health"), "mode.name", "simple or health", self.name)
        direction = self.direction
        _require(direction in ("maximize", "minimize"), "mode.direction", "maximize or minimize", direction)


@dataclass
class HardwareConf:
    # name of the hardware profile
    name: str = "cpu"
    # launcher backend that runs the trials: local (subprocesses on this machine), runpod (serverless GPUs) or
    # slurm (one SLURM job per trial)
    backend: str = "local"
    # GPUs given to each concurrent trial; 0 trains on the CPU
    gpus_per_worker: int = 0
    # USD per hour of one worker; null: RunPod's GPU catalog price for the endpoint's GPUs (runpod), else 0.
    # Set it to override the catalog, or where the catalog cannot be read
    price_per_hour: float | None = None
    # RunPod serverless GPU pools the endpoint may place workers on, cheapest first (runpod deploy)
    gpu_pools: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(self.gpus_per_worker >= 0, "hardware.gpus_per_worker", "0 or more", self.gpus_per_worker)
        _require(self.backend in BACKENDS, "hardware.backend", f"one of {', '.join(BACKENDS)}", self.backend)
        _require(
            self.price_per_hour is None or self.price_per_hour >= 0,
            "hardware.price_per_hour",
            "null or 0 or more",
            self.price_per_hour,
        )


@dataclass
class TrainerConf:
    # most epochs a trial trains for
    max_epochs: int = 5
    # examples per gradient step
    batch_size: int = 64
    # Adam's learning rate (per replica; see scale_batch_with_replicas)
    learning_rate: float = 1e-3
    # stop when the validation loss has not improved for `patience` epochs
    early_stopping: bool = True
    # epochs without validation-loss improvement before stopping
    patience: int = 3
    # on several GPUs: global batch = batch_size x replicas, learning rate x replicas (linear scaling)
    scale_batch_with_replicas: bool = True
    # float16 compute with float32 weights on GPUs that support it (the output layer stays float32)
    mixed_precision: bool = False
    # evaluate the best epoch's model on the test split and log test_accuracy (never the objective)
    evaluate_test: bool = True

    def __post_init__(self) -> None:
        _require(self.patience >= 1, "trainer.patience", "at least 1", self.patience)
        _require(self.max_epochs >= 1, "trainer.max_epochs", "at least 1", self.max_epochs)
        _require(self.batch_size >= 1, "trainer.batch_size", "at least 1", self.batch_size)
        _require(self.learning_rate > 0, "trainer.learning_rate", "positive", self.learning_rate)


@dataclass
class RunPodDeployConf:
    """What ``python -m launchers.runpod deploy`` creates or updates: a template and an endpoint."""

    # the worker image, built for linux/amd64 and pushed (see the README); required to deploy
    image: str | None = None
    # the endpoint's (and template's) name; null: hpo-<hardware.name>
    name: str | None = None
    # the lowest CUDA driver version a worker's host may have (TensorFlow's wheels need 12.5)
    min_cuda_version: str = "12.5"
    # FlashBoot: RunPod keeps stopped workers' state for faster cold starts
    flashboot: bool = True
    # a network volume to mount at /runpod-volume (datasets are cached there); null: none
    network_volume_id: str | None = None
    # seconds a worker with no job stays up (and billed) before RunPod stops it
    idle_timeout_s: int = 5
    # container disk per worker, GB
    disk_gb: int = 20

    def __post_init__(self) -> None:
        _require(
            1 <= self.idle_timeout_s <= 3600,
            "launcher.runpod.deploy.idle_timeout_s",
            "between 1 and 3600",
            self.idle_timeout_s,
        )
        _require(self.disk_gb >= 1, "launcher.runpod.deploy.disk_gb", "at least 1", self.disk_gb)


@dataclass
class RunPodConf:
    # serverless endpoint running hpo's worker image; RUNPOD_ENDPOINT_ID overrides it
    endpoint_id: str | None = None
    # RunPod's endpoint (jobs) API; point it at `python -m launchers.runpod.emulator` to try the cloud path
    api_base: str = "https://api.runpod.ai/v2"
    # RunPod's REST API (v2: endpoints, templates, workers, GPU catalog), for deploy, checks and cost
    rest_api_base: str = "https://api.runpod.io"
    # resubmit a trial whose job hit its execution timeout (false: a timed-out trial fails)
    retry_timeouts: bool = False
    # a job waiting in the queue this long with no worker starting stops the sweep (endpoint cannot run jobs)
    queue_timeout_s: float = 600.0
    deploy: RunPodDeployConf = field(default_factory=RunPodDeployConf)
    # what to do when the endpoint is unreachable at start: fail, or run the sweep locally (with a warning)
    fallback: str = "fail"
    # seconds between two status polls of one job (shared across jobs to stay under RunPod's rate limits)
    poll_interval_s: float = 1.0
    # trials submitted beyond launcher.workers: each worker holds the next one while it trains (its next
    # trial starts at once), and the rest wait in the endpoint's queue; null: one per worker plus one per 4
    queue_ahead: int | None = None

    def __post_init__(self) -> None:
        _require(
            self.fallback in ("fail", "local"), "launcher.runpod.fallback", "fail or local", self.fallback
        )
        _require(
            self.poll_interval_s > 0, "launcher.runpod.poll_interval_s", "positive", self.poll_interval_s
        )
        _require(
            self.queue_ahead is None or self.queue_ahead >= 0,
            "launcher.runpod.queue_ahead",
            "null or at least 0",
            self.queue_ahead,
        )
        _require(
            self.queue_timeout_s > 0, "launcher.runpod.queue_timeout_s", "positive", self.queue_timeout_s
        )


@dataclass
class SlurmConf:
    """What a SLURM cluster asks of each trial's job (``sbatch`` options, named as hydra-submitit-launcher
    names them); the time limit is ``launcher.timeout_min`` and the GPUs come from the hardware profile."""

    # partition the jobs are submitted to; null: the cluster's default partition
    partition: str | None = None
    # account the jobs are charged to; null: the user's default account
    account: str | None = None
    # quality of service of the jobs; null: the account's default
    qos: str | None = None
    # memory per job, GB; null: the partition's default
    mem_gb: float | None = None
    # CPUs per job; null: SLURM's default (one)
    cpus_per_task: int | None = None
    # node features the jobs need (sbatch --constraint, e.g. a100); null: any node
    constraint: str | None = None
    # further #SBATCH options, name to value (e.g. {exclude: node01, mail_type: FAIL}); true: a bare flag
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # shell lines the job script runs before the trial (module load ..., source venv/bin/activate)
    setup: list[str] = field(default_factory=list)
    # seconds between two sacct reads of the jobs' states (a finished job's result is seen at once)
    state_poll_s: float = 5.0

    def __post_init__(self) -> None:
        _require(self.mem_gb is None or self.mem_gb > 0, "launcher.slurm.mem_gb", "positive", self.mem_gb)
        cpus = self.cpus_per_task
        _require(cpus is None or cpus >= 1, "launcher.slurm.cpus_per_task", "at least 1", cpus)
        _require(self.state_poll_s > 0, "launcher.slurm.state_poll_s", "positive", self.state_poll_s)


@dataclass
class LauncherConf:
    """The hpo launcher's settings: the app's ``launcher`` node, and ``hydra.launcher`` (which hpo's own app
    links to it field by field, see ``register_configs``)."""

    # trials run at once
    workers: int = 2
    # backend that runs the trials (local: processes on this machine; runpod: serverless GPUs; slurm: SLURM
    # jobs); hpo's app takes it from the hardware profile
    backend: str = "local"
    # a trial running longer than this is stopped and counted as failed
    timeout_min: int = 60
    # resubmissions of a trial lost to the infrastructure (worker lost, timed out, API unreachable)
    max_retries: int = 2
    # stop submitting trials once spent plus in-flight estimated cost would pass this (USD); null: no cap
    budget_usd: float | None = None
    # GPUs given to each running trial (local: a CUDA_VISIBLE_DEVICES partition; 0 hides them); hpo's app
    # takes it from the hardware profile
    gpus_per_worker: int = 0
    # USD per hour of one worker (runpod); null: the GPU catalog price; hpo's app takes it from the profile
    price_per_hour: float | None = None
    # seconds between two checks of the running jobs, where the backend cannot wake the sweeper itself
    poll_interval_s: float = 0.1
    # modules every local slot has loaded before its first job, imported once per sweep, in the process the
    # slots are forked from (hpo's app: its trials' libraries)
    preload: list[str] = field(default_factory=list)
    runpod: RunPodConf = field(default_factory=RunPodConf)
    slurm: SlurmConf = field(default_factory=SlurmConf)

    def __post_init__(self) -> None:
        _require(self.workers >= 1, "launcher.workers", "at least 1", self.workers)
        _require(self.gpus_per_worker >= 0, "launcher.gpus_per_worker", "0 or more", self.gpus_per_worker)
        _require(
            self.price_per_hour is None or self.price_per_hour >= 0,
            "launcher.price_per_hour",
            "null or 0 or more",
            self.price_per_hour,
        )
        _require(self.poll_interval_s > 0, "launcher.poll_interval_s", "positive", self.poll_interval_s)
        _require(self.timeout_min >= 1, "launcher.timeout_min", "at least 1", self.timeout_min)
        _require(self.backend in BACKENDS, "launcher.backend", f"one of {', '.join(BACKENDS)}", self.backend)
        _require(self.max_retries >= 0, "launcher.max_retries", "0 or more", self.max_retries)
        _require(
            self.budget_usd is None or self.budget_usd > 0, "launcher.budget_usd", "positive", self.budget_usd
        )


@dataclass
class MLflowConf:
    # MLflow tracking store; a relative sqlite path is relative to the directory hpo was started in
    tracking_uri: str = "sqlite:///mlflow.db"
    # experiment that holds one parent run per sweep and one child run per trial
    experiment_name: str = "hpo"
    # log the trained model of every trial as an MLflow Keras model
    log_model: bool = True
    # who logs a remote trial: the driver, from the worker's result (works with a local store), or the
    # worker itself (needs an http(s) tracking server the workers can reach; suits large models)
    log_from: str = "driver"
    # register the sweep's best model in the Model Registry, under the experiment's name
    register_best: bool = True
    # sample CPU, memory and GPU use into each trial's run (MLflow system metrics)
    system_metrics: bool = True

    def __post_init__(self) -> None:
        _require(bool(self.tracking_uri.strip()), "mlflow.tracking_uri", "set", self.tracking_uri)
        name = self.experiment_name
        _require(bool(name.strip()), "mlflow.experiment_name", "a non-blank name", name)
        _require(self.log_from in ("driver", "worker"), "mlflow.log_from", "driver or worker", self.log_from)
        if self.log_from == "worker":
            _require(
                self.tracking_uri.startswith(("http://", "https://")),
                "mlflow.tracking_uri",
                "an http(s) server when mlflow.log_from=worker",
                self.tracking_uri,
            )


@dataclass
class ReportsConf:
    # which trials draw plots (curves, confusion matrix, gradients, weights): every trial, only those that
    # beat the study's best when they started (the ones worth a look; drawing took a fifth of a short
    # trial's time), or none
    plots: str = "best"

    def __post_init__(self) -> None:
        _require(self.plots in ("all", "best", "none"), "reports.plots", "all, best or none", self.plots)


@dataclass
class HPOConfig:
    # study seed; each trial's seed derives from it and the trial number
    seed: int = 0
    dataset: DatasetConf = MISSING
    # a built-in family's schema (CNNConf, LSTMConf, MLPConf, chosen by its _target_), or a user builder's
    # own keys as a dict
    model: Any = MISSING
    mode: ModeConf = field(default_factory=ModeConf)
    hardware: HardwareConf = field(default_factory=HardwareConf)
    trainer: TrainerConf = field(default_factory=TrainerConf)
    # hpo's app preloads its trials' libraries in local slots; the launcher alone preloads nothing
    launcher: LauncherConf = field(default_factory=lambda: LauncherConf(preload=[TRIAL_LIBRARIES]))
    mlflow: MLflowConf = field(default_factory=MLflowConf)
    reports: ReportsConf = field(default_factory=ReportsConf)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``trainer.max_epochs``)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def validate(cfg: DictConfig | dict[str, Any]) -> HPOConfig:
    """Check every value of an hpo config and return it as typed objects.

    Each section is checked on its own and remembered, so the trials of a sweep, which share all but a
    few sections, pay only for the ones their overrides change. A top-level key that is none of them (and
    not ``hydra``), which Hydra lets ``+bogus=1`` add, is refused: no part of hpo would read it.

    Raises:
        ConfigError: naming the first offending key.
    """
    if unknown := sorted(str(key) for key in cfg if key not in PAYLOAD_KEYS and key != "hydra"):
        keys = ", ".join(PAYLOAD_KEYS)
        raise ConfigError(f"{unknown[0]}: not a key of hpo's config, whose keys are {keys}")
    try:
        sections = {key: _typed_section(key, text) for key, text in _section_texts(cfg).items()}
    except OmegaConfBaseException as exc:
        raise _config_error(exc.full_key or "config", exc) from exc
    if missing := sorted(_REQUIRED_SECTIONS - sections.keys()):
        raise ConfigError(f"{missing[0]}: missing mandatory value")
    return HPOConfig(**{key: copy.deepcopy(value) for key, value in sections.items()})


def _section_texts(cfg: DictConfig | dict[str, Any]) -> dict[str, str]:
    """Each PAYLOAD_KEYS section of the config as JSON, every interpolation resolved (a plain dict
    without any, such as a trial payload's config, is taken as it is)."""
    sections = {k: cfg[k] for k in PAYLOAD_KEYS if k in cfg}
    if isinstance(cfg, dict):
        texts = {key: json.dumps(value, sort_keys=True) for key, value in sections.items()}
        if not any("${" in text for text in texts.values()):
            return texts
    resolved = OmegaConf.to_container(OmegaConf.create(sections), resolve=True)
    assert isinstance(resolved, dict)
    return {str(key): json.dumps(value, sort_keys=True) for key, value in resolved.items()}


def _config_error(where: str, exc: OmegaConfBaseException) -> ConfigError:
    return ConfigError(f"{where}: {str(exc).strip().splitlines()[0]}")


@functools.lru_cache(maxsize=1024)
def _typed_section(key: str, text: str) -> Any:
    """One section (as JSON) checked against its schema; errors name the full key."""
    value = json.loads(text)
    try:
        if key == "seed":
            return _integer(key, value)
        if key == "model":
            schema = _model_schema(value)
            if schema is None:
                return value
        else:
            schema = _SECTION_SCHEMAS[key]
        return OmegaConf.to_object(OmegaConf.merge(_schema(schema), value))
    except OmegaConfBaseException as exc:
        where = key if not exc.full_key or exc.full_key == key else f"{key}.{exc.full_key}"
        raise _config_error(where, exc) from exc


def _integer(key: str, value: Any) -> int:
    try:
        return int(IntegerNode(value, is_optional=False)._value())
    except OmegaConfBaseException:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None


def _model_schema(value: Any) -> type | None:
    """The schema of a built-in family, known by its builder; None for a user's builder, whose keys are its
    own keyword arguments (the model's module is found, not imported: the driver never imports it)."""
    target = value.get("_target_") if isinstance(value, dict) else None
    require_importable("model._target_", target)
    if target in MODEL_SCHEMAS:
        return MODEL_SCHEMAS[target]
    if passed := sorted(BUILDER_KEYWORDS & value.keys()):
        raise ConfigError(
            f"model.{passed[0]}: hpo passes it to the builder from the data; remove it from model"
        )
    return None


# the keyword arguments hpo gives every model builder, besides the model config's keys
BUILDER_KEYWORDS = frozenset({"input_shape", "num_classes"})
# the built-in families' schemas, by builder
MODEL_SCHEMAS: dict[str, type] = {schema._target_: schema for schema in (CNNConf, LSTMConf, MLPConf)}
_SECTION_SCHEMAS: dict[str, type] = {
    "dataset": DatasetConf,
    "mode": ModeConf,
    "hardware": HardwareConf,
    "trainer": TrainerConf,
    "launcher": LauncherConf,
    "mlflow": MLflowConf,
    "reports": ReportsConf,
}
_REQUIRED_SECTIONS = {f.name for f in fields(HPOConfig) if f.default == MISSING}


@functools.cache
def _schema(node: type) -> DictConfig:
    """The structured config of a schema dataclass, built once: ``OmegaConf.merge`` copies it, never
    changes it, and building it was half of what validating a trial's config cost."""
    return OmegaConf.structured(node)


def register_configs() -> None:
    """Register the schemas that conf/ files extend, so Hydra type-checks them on composition."""
    cs = ConfigStore.instance()
    cs.store(name="hpo_schema", node=HPOConfig)
    # hydra.launcher follows the app's launcher node, so `launcher.workers=4` is all a user writes
    cs.store(
        name="hpo_launcher_link", node={"hydra": {"launcher": _interpolations(LauncherConf, "launcher")}}
    )
    for target, node in MODEL_SCHEMAS.items():
        cs.store(name=f"{target.rsplit('.', 1)[1]}_schema", node=node)


def _interpolations(node: type, prefix: str) -> dict[str, Any]:
    """Every leaf of a schema dataclass as an interpolation of the same key under ``prefix``."""
    types = get_type_hints(node)
    return {
        f.name: _interpolations(types[f.name], f"{prefix}.{f.name}")
        if is_dataclass(types[f.name])
        else f"${{{prefix}.{f.name}}}"
        for f in fields(node)
    }


def launcher_settings(params: Mapping[str, Any]) -> LauncherConf:
    """The launcher's settings from its resolved ``hydra.launcher`` node, checked like the app's config."""
    node = OmegaConf.to_container(OmegaConf.create(dict(params)), resolve=True)
    assert isinstance(node, dict)
    node.pop("_target_", None)
    settings: LauncherConf = copy.deepcopy(_typed_section("launcher", json.dumps(node, sort_keys=True)))
    return settings
