"""The job protocol between the driver and a remote worker: one small JSON payload per trial.

The driver composes and validates each trial's config; the worker validates the payload again against
the same schemas before it trains, so a key it does not know, a missing key, a wrong type or another
protocol version fails the job at once instead of being silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, Container, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpo.core.errors import ConfigError
from hpo.core.schema import PAYLOAD_KEYS, validate
from hpo.core.user_code import CodeBundle, install

PROTOCOL_VERSION = 2
# RunPod refuses a /run request body over 10 MB (10**6 bytes each); a payload is a few KB, so this
# only guards against bugs: https://docs.runpod.io/serverless/endpoints/operation-reference
MAX_PAYLOAD_BYTES = 10_000_000
# jobs a RunPod worker holds at once: the trial it trains and the next, taken meanwhile, which waits its
# turn on the worker (the runpod SDK looks for work only once a second while it holds a job)
JOBS_HELD_PER_WORKER = 2
# the key of a held job's output that says how long it waited for its turn, which is not its own cost
WORKER_WAIT_KEY = "worker_wait_s"


class PayloadError(ConfigError):
    """A trial payload a worker cannot run: malformed, incomplete, or from another protocol version."""


@dataclass
class TrialIdentity:
    # the Optuna study (or sweep) the trial belongs to
    study: str = MISSING
    # the trial's number in the study; with the seed it fixes the trial's own seed
    number: int = MISSING
    # the study seed
    seed: int = MISSING


@dataclass
class MLflowTarget:
    # log_from=worker: the child run the driver opened, which the worker continues; null: log locally
    # and ship the run back in the result
    run_id: str | None = None


@dataclass
class UserCode:
    # the top-level packages in the zip, imported from it rather than from any earlier copy
    packages: list[str] = field(default_factory=list)
    # sha256 of the zip's bytes, which the worker checks before it unpacks them
    sha256: str = MISSING
    # the zip of the packages' source folders, base64
    zip_b64: str = MISSING

    @classmethod
    def of(cls, bundle: CodeBundle | None) -> UserCode | None:
        """The payload section of ``bundle`` (None: the trial names no code of the user's)."""
        return None if bundle is None else cls(list(bundle.packages), bundle.sha256, bundle.zip_b64)

    def bundle(self) -> CodeBundle:
        """The section as the bundle ``hpo.core.user_code.install`` unpacks."""
        return CodeBundle(tuple(self.packages), self.sha256, self.zip_b64)


@dataclass
class TrialPayload:
    # version of this protocol; a worker refuses any other
    protocol: int = MISSING
    # the trial's resolved hpo config: exactly the PAYLOAD_KEYS sections
    config: dict[str, Any] = MISSING
    trial: TrialIdentity = field(default_factory=TrialIdentity)
    # GPUs the hardware profile promises each worker; a worker that sees another count says so
    gpus_expected: int = MISSING
    # the sweeper's overrides that define this trial, for the record
    overrides: list[str] = field(default_factory=list)
    # best objective of the study when the trial was asked (drives reports.plots=best)
    best_so_far: float | None = None
    mlflow: MLflowTarget = field(default_factory=MLflowTarget)
    # the user's packages the config's _target_s name, which the worker image lacks; null: none
    code: UserCode | None = None

    def to_json(self) -> dict[str, Any]:
        """The payload as the JSON object sent to the endpoint."""
        out = asdict(self)
        size = len(json.dumps(out).encode())
        if size > MAX_PAYLOAD_BYTES:
            raise PayloadError(f"trial payload is {size} bytes, over RunPod's {MAX_PAYLOAD_BYTES}-byte limit")
        return {str(k): v for k, v in out.items()}


def parse_payload(data: Any, code_cache: Path | None = None) -> TrialPayload:
    """Check a received payload field by field and return it typed.

    The user's code it carries is unpacked (under ``code_cache``, by default the system's temporary
    directory) and put first on ``sys.path`` before the config is checked, whose ``_target_``s name it.

    Raises:
        PayloadError: naming what is wrong (unknown or missing key, wrong type, protocol version).
        UserCodeError: the user's code is not what the driver sent.
    """
    if not isinstance(data, dict):
        raise PayloadError(f"trial payload must be a JSON object, got {type(data).__name__}")
    if data.get("protocol") != PROTOCOL_VERSION:
        raise PayloadError(
            f"trial payload protocol {data.get('protocol')!r} is not this worker's {PROTOCOL_VERSION}: "
            "rebuild the worker image from the same hpo version as the driver"
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrialPayload), data)
        payload = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise PayloadError(f"trial payload: {exc.full_key or 'payload'}: {first_line}") from None
    assert isinstance(payload, TrialPayload)
    config = data["config"]
    unknown = sorted(set(config) - set(PAYLOAD_KEYS))
    missing = sorted(set(PAYLOAD_KEYS) - set(config))
    if unknown or missing:
        raise PayloadError(
            "trial payload config: "
            + "; ".join(
                part
                for part in (
                    f"unknown section(s) {', '.join(unknown)}" if unknown else "",
                    f"missing section(s) {', '.join(missing)}" if missing else "",
                )
                if part
            )
        )
    if payload.code is not None:
        install(payload.code.bundle(), code_cache)
    try:
        validate(config)
    except ConfigError as exc:
        raise PayloadError(f"trial payload config: {exc}") from None
    payload.config = dict(config)
    return payload


def payload_config(cfg: DictConfig) -> dict[str, Any]:
    """The PAYLOAD_KEYS sections of a composed config, resolved to plain JSON-able values (section by
    section: a masked copy of the whole config cost twice as much)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], Container) else cfg[key]
        for key in PAYLOAD_KEYS
        if key in cfg
    }
