"""``python -m hpo.bench``: run one benchmark and print its figures (``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
import sys

from hpo.errors import HPOError


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
    args = parser.parse_args(argv)

    from hpo.bench.train import measure

    try:
        figures = measure(args.dataset, args.batch_size, args.epochs, args.rounds, args.mixed_precision)
    except HPOError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
