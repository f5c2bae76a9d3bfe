"""The benchmark CLI runs the real pipeline and prints figures a script can read."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_train_prints_throughput_ceiling_and_ratio() -> None:
    cmd = [
        sys.executable,
        "-m",
        "hpo.bench",
        "train",
        "--dataset",
        "digits",
        "--json",
        "--epochs",
        "1",
        "--rounds",
        "1",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["throughput"] > 0 and figures["ceiling"] > 0
    assert figures["ratio"] == pytest.approx(figures["throughput"] / figures["ceiling"])
