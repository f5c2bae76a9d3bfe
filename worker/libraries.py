"""Every library a trial loads, in one import: what a local slot's process has loaded before its first job
(``launcher.preload``), so that TensorFlow, Keras, MLflow and matplotlib are imported once per sweep."""

import mlflow.keras  # noqa: F401

import worker.reports  # noqa: F401
import worker.trial  # noqa: F401
from worker import distribution, models, progress, run_logging, runtime, scoring, trainer  # noqa: F401
from worker.datasets import load_dataset  # noqa: F401
