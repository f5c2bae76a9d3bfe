"""``python -m hpo.bench.workload_driver -m ...``: hpo's Hydra app with the benchmark workload as its task.

It composes the same ``conf/`` tree as ``python -m hpo`` and runs whatever sweeper and launcher the
overrides pick, so the benchmark measures the real driver. :class:`SweepProbe`, added as a Hydra callback,
samples this process's CPU time while the sweep runs and writes what it saw to a JSON file.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

# coarse enough that sampling costs the driver next to nothing, fine enough for sweeps of a minute or more
SAMPLE_INTERVAL_S = 0.25
_sampler: _CPUSampler | None = None


class _CPUSampler(threading.Thread):
    """Records (wall clock, process CPU seconds) pairs until stopped."""

    def __init__(self) -> None:
        super().__init__(name="bench-cpu-sampler", daemon=True)
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_INTERVAL_S):
            self.samples.append((time.time(), time.process_time()))

    def stop(self) -> list[tuple[float, float]]:
        self._stop_event.set()
        self.join()
        self.samples.append((time.time(), time.process_time()))
        return self.samples


class SweepProbe(Callback):
    """Times the sweep from the driver's side: wall clock, CPU time of every thread, peak RSS.

    It holds nothing but its output path, so it pickles into job processes like any Hydra callback.
    """

    def __init__(self, out: str) -> None:
        self.out = out

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        global _sampler
        _sampler = _CPUSampler()
        _sampler.samples.append((time.time(), time.process_time()))
        _sampler.start()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        global _sampler
        if _sampler is None:
            return
        samples, _sampler = _sampler.stop(), None
        report = {
            "start": samples[0][0],
            "end": samples[-1][0],
            "cpu_s": samples[-1][1] - samples[0][1],
            "samples": samples,
            # ru_maxrss is in KiB on Linux, bytes on macOS
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / (1024 if sys.platform != "darwin" else 1024 * 1024),
            "tensorflow_imported": "tensorflow" in sys.modules,
        }
        Path(self.out).write_text(json.dumps(report))


def main() -> None:
    """Run hpo's Hydra app on the workload task (arguments: Hydra's, from the command line)."""
    import hydra

    from hpo.bench.workload import task
    from hpo.core.process import own_process
    from hpo.core.schema import register_configs
    from hpo.driver.cli import CONF_DIR
    from hpo.driver.imports import leave_out_unused_libraries

    leave_out_unused_libraries()
    own_process()
    register_configs()
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)()


if __name__ == "__main__":
    main()
