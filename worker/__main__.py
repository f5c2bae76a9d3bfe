"""``python -m worker``: a RunPod serverless worker that runs hpo trials (the worker image's command)."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    """Share the network volume's dataset cache, check the GPUs at start (fitness check), serve trials."""
    import runpod

    from hpo.core.process import own_process
    from worker.volume import share_dataset_cache

    # the runpod SDK handles the signals of its worker process
    own_process(stop_on_signals=False)

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    share_dataset_cache()  # before Keras is imported, which reads KERAS_HOME once
    from worker.distribution import check_gpus
    from worker.handler import handle
    from worker.serverless import serve

    runpod.serverless.register_fitness_check(check_gpus)
    serve(handle)


if __name__ == "__main__":
    main()
