"""What can be checked of the worker image without docker: one TensorFlow, the lock's CUDA wheels, the
platform RunPod runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "worker" / "Dockerfile").read_text()
INSTRUCTIONS = [line for line in DOCKERFILE.splitlines() if line and not line.startswith("#")]


def test_one_slim_python_base_for_amd64() -> None:
    froms = [line for line in INSTRUCTIONS if line.startswith("FROM ")]
    assert froms == ["FROM --platform=linux/amd64 python:3.11-slim"]
    assert "tensorflow/tensorflow" not in DOCKERFILE, "TensorFlow comes from the lock only"


def test_the_locked_gpu_extra_is_installed() -> None:
    syncs = [line for line in INSTRUCTIONS if "uv sync" in line]
    assert syncs and all(
        all(flag in line for flag in ("--frozen", "--no-dev", "--extra gpu")) for line in syncs
    )
    assert "apt-get" not in DOCKERFILE, "the architecture diagrams need no system package"
    assert re.search(r"^RUN python -m worker\.prefetch ", DOCKERFILE, re.M)
    assert INSTRUCTIONS[-1] == 'CMD ["python", "-m", "worker"]'
    assert not re.search(r"HPO_GPUS_PER_WORKER\s*=", "\n".join(INSTRUCTIONS)), "the template sets it"


def test_the_lock_brings_cuda_and_cudnn_for_linux_only() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    (gpu,) = packages["hpo"]["optional-dependencies"]["gpu"]
    assert gpu["name"] == "tensorflow" and gpu["extra"] == ["and-cuda"]
    assert gpu["marker"] == "sys_platform == 'linux'"
    cuda = {d["name"] for d in packages["tensorflow"]["optional-dependencies"]["and-cuda"]}
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= cuda
    cudnn = tuple(int(n) for n in packages["nvidia-cudnn-cu12"]["version"].split(".")[:2])
    assert cudnn >= (9, 3)
    runpod = tuple(int(n) for n in packages["runpod"]["version"].split(".")[:3])
    assert runpod >= (1, 10, 1), "per-job stop reaches the worker from runpod 1.10 on"
