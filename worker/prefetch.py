"""``python -m worker.prefetch NAME ...``: download datasets into Keras' cache ahead of time.

The worker image runs it at build time, so cloud trials never wait on (or fail at) a download.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hpo.core.schema import DatasetConf

CONF_DATASETS = Path(__file__).resolve().parent.parent / "conf" / "dataset"


def dataset_conf(name: str) -> DatasetConf:
    """The dataset's config from ``conf/dataset/<name>.yaml``, without its defaults list."""
    node = OmegaConf.load(CONF_DATASETS / f"{name}.yaml")
    assert isinstance(node, DictConfig)
    node.pop("defaults", None)
    conf = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DatasetConf), node))
    assert isinstance(conf, DatasetConf)
    return conf


def main(argv: list[str] | None = None) -> None:
    from worker.datasets import load_dataset

    known = sorted(p.stem for p in CONF_DATASETS.glob("*.yaml"))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+", choices=known, metavar="NAME", help=f"one of {', '.join(known)}")
    for name in parser.parse_args(argv).names:
        splits = load_dataset(dataset_conf(name), split_seed=0)
        print(f"{name}: {len(splits.x_train)} train, {len(splits.x_val)} val, {len(splits.x_test)} test")


if __name__ == "__main__":
    main()
