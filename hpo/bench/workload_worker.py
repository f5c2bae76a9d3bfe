"""``python -m hpo.bench.workload_worker``: a RunPod serverless worker serving the benchmark workload."""

from __future__ import annotations


def main() -> None:
    import hpo.core.payload  # noqa: F401  (the handler's import, done before the first job as a worker image does)
    from hpo.bench.workload import handle
    from hpo.core.process import own_process
    from worker.serverless import serve

    own_process(stop_on_signals=False)
    serve(handle)


if __name__ == "__main__":
    main()
