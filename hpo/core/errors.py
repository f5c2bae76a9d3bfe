"""Project exceptions: each carries a message a user can act on."""

from __future__ import annotations


class HPOError(Exception):
    """Base of every error hpo raises on purpose; the CLI prints it as one line and exits 2."""


class ConfigError(HPOError):
    """The composed configuration is invalid: a value out of range or an impossible combination."""


class DatasetError(HPOError):
    """A dataset cannot be loaded: unknown name, not cached and not downloadable, or a corrupt file.

    It depends on the dataset's config alone, so every trial of a sweep that does not search the dataset
    meets it too: the sweep stops at the first.
    """


class ModelConfigError(HPOError):
    """A model's hyperparameters describe a network that cannot be built for the dataset."""


class TrialError(HPOError):
    """A trial failed; the message names the trial and the underlying cause."""


class BackendError(HPOError):
    """A launcher backend cannot run jobs: misconfigured, unreachable or out of resources."""


class EndpointError(BackendError):
    """The RunPod endpoint cannot run this sweep's jobs (no workers allowed, none starting, the wrong GPUs).

    Every trial of the sweep would meet it, so the sweep stops at the first.
    """


class DeviceError(HPOError):
    """A worker sees fewer GPUs than the hardware profile promises: the infrastructure's failure, so the
    trial is resubmitted elsewhere instead of training on the CPU."""
