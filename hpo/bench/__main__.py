"""``python -m hpo.bench``: run one benchmark and print its figures (``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
import sys

from hpo.core.errors import HPOError


def _train(args: argparse.Namespace) -> None:
    from hpo.bench.train import measure

    figures = measure(args.dataset, args.batch_size, args.epochs, args.rounds, args.mixed_precision)
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['dataset']}: pipeline {figures['throughput']:.0f} samples/s, "
            f"ceiling {figures['ceiling']:.0f} samples/s, ratio {figures['ratio']:.3f} "
            f"(batch {figures['batch_size']} on {figures['replicas']} replica(s), "
            f"mixed precision {'on' if figures['mixed_precision'] else 'off'}, "
            f"best of {figures['rounds']} x {figures['epochs']} epochs, {figures['device']})"
        )


def _dispatch(args: argparse.Namespace) -> None:
    from hpo.bench import dispatch

    backends = {"all": ["local", "runpod"], "slurm": ["local", "slurm"]}.get(args.backend, [args.backend])
    modes = list(dispatch.SWEEPERS) if args.mode == "both" else [args.mode]
    results = []
    runs = dispatch.run(
        backends, modes, args.workers, args.trials, args.seed, args.median_s, args.cold_start_s
    )
    for result in runs:
        results.append(result)
        print(json.dumps(result) if args.json else dispatch.describe(result), flush=True)
    if not args.json:
        for line in dispatch.speedups(results):
            print(line)


def _architecture(args: argparse.Namespace) -> None:
    from hpo.bench import architecture

    figures = architecture.measure(args.trials, args.models, args.seed)
    print(json.dumps(figures) if args.json else "\n".join(architecture.describe(figures)))


def _e2e(args: argparse.Namespace) -> None:
    from hpo.bench import e2e

    pruners = args.pruner or [None]
    cases = [e2e.Case(args.trials, args.epochs, args.workers, s, p) for s in args.seeds for p in pruners]
    for result in e2e.run(cases, kerastuner=args.kerastuner):
        print(json.dumps(result) if args.json else "\n".join(e2e.describe(result)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpo.bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="input pipeline throughput against the in-memory ceiling")
    train.add_argument("--dataset", default="digits", help="a dataset config name (default: digits)")
    train.add_argument("--batch-size", type=int, default=64, help="examples per replica and step")
    train.add_argument("--mixed-precision", action="store_true", help="float16 compute on capable GPUs")
    train.add_argument("--epochs", type=int, default=20, help="timed epochs per round")
    train.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    train.add_argument("--json", action="store_true", help="print one JSON object")
    dispatch = commands.add_parser(
        "dispatch", help="async against batch sweeps of a waiting workload: wall time, efficiency, overhead"
    )
    dispatch.add_argument("--workers", type=int, default=4, help="trials in flight (default: 4)")
    dispatch.add_argument("--trials", type=int, default=40, help="trials per sweep (default: 40)")
    dispatch.add_argument(
        "--backend",
        choices=("local", "runpod", "slurm", "all"),
        default="all",
        help="all: local and runpod; slurm: local and slurm side by side, on the cluster sbatch reaches",
    )
    dispatch.add_argument("--mode", choices=("async", "batch", "both"), default="both")
    dispatch.add_argument("--seed", type=int, default=0, help="study seed; it also draws the task times")
    dispatch.add_argument(
        "--median-s", type=float, default=2.0, help="median task time in seconds (lognormal, sigma 0.6)"
    )
    dispatch.add_argument(
        "--cold-start-s",
        type=float,
        nargs="+",
        default=[0.0],
        help="runpod: emulated workers' boot seconds, one case each (default: 0; e.g. --cold-start-s 0 10)",
    )
    dispatch.add_argument("--json", action="store_true", help="print one JSON object per backend and mode")
    arch = commands.add_parser(
        "architecture", help="sizes and drawing times of the architecture artifacts and the sweep's gallery"
    )
    arch.add_argument("--trials", type=int, default=200, help="trials in the gallery (default: 200)")
    arch.add_argument("--models", type=int, default=12, help="distinct real models measured (default: 12)")
    arch.add_argument("--seed", type=int, default=0, help="draws the models and the trials' results")
    arch.add_argument("--json", action="store_true", help="print one JSON object")
    e2e = commands.add_parser(
        "e2e", help="the whole sweep command against KerasTuner on the same model, space, data and epochs"
    )
    e2e.add_argument("--trials", type=int, default=8, help="trials per search (default: 8)")
    e2e.add_argument("--epochs", type=int, default=5, help="epochs per trial (default: 5)")
    e2e.add_argument("--workers", type=int, default=2, help="hpo's trials in flight (default: 2)")
    e2e.add_argument(
        "--pruner",
        nargs="+",
        help="hpo's hydra/sweeper/pruner options, one hpo sweep each per seed, each with its settings if "
        "any, e.g. none hyperband successive_halving,min_resource=2 (default: the sweep's)",
    )
    e2e.add_argument(
        "--kerastuner",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run KerasTuner on each shape and seed too (default: yes)",
    )
    e2e.add_argument("--seeds", type=int, nargs="+", default=[0], help="one comparison per seed (default: 0)")
    e2e.add_argument("--json", action="store_true", help="print one JSON object per seed")
    args = parser.parse_args(argv)
    if args.command == "e2e" and min(args.trials, args.epochs, args.workers) < 1:
        parser.error("--trials, --epochs and --workers must be at least 1")
    if args.command == "dispatch" and (args.workers < 1 or args.trials < 1 or args.median_s <= 0):
        parser.error("--workers and --trials must be at least 1 and --median-s positive")
    if args.command == "dispatch" and min(args.cold_start_s) < 0:
        parser.error("--cold-start-s must be 0 or more")
    if args.command == "architecture" and (args.trials < 1 or args.models < 1):
        parser.error("--trials and --models must be at least 1")

    try:
        commands_run = {"train": _train, "dispatch": _dispatch, "architecture": _architecture, "e2e": _e2e}
        commands_run[args.command](args)
    except HPOError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
