"""A local emulator of RunPod's serverless control plane, for running real workers and clients offline.

``python -m launchers.runpod.emulator`` serves the ``/v2`` endpoint API, the worker webhooks and the REST
API v2 (under ``/rest``) on 127.0.0.1, scaling and billing workers as RunPod does;
:class:`EmulatorProcess` starts and stops one from Python (tests, benchmarks).
"""

from __future__ import annotations

from launchers.runpod.emulator.process import EmulatorProcess

__all__ = ["EmulatorProcess"]
