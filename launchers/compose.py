"""Each job's config, composed in the driver: fully once per choice of config groups, then by copying.

A full Hydra compose costs 100+ ms on a small machine, which caps how fast a sweep can start trials.
A sweep's trials usually differ only in values (``model.filters=16``), so the first trial with a given
set of config-group choices is composed by Hydra and kept as a template; later ones copy it and set
their values exactly as Hydra applies command-line overrides (``OmegaConf.update(..., merge=True)``).
Templates are kept pickled, as unpickling copies a config three times faster than ``copy.deepcopy``, and
each override string is parsed once: the fixed ones recur in every trial. What this needs of Hydra's private
config loader is in ``hpo.core.private_apis``.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

import cloudpickle
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict

from hpo.core import private_apis

PARSED_KEPT = 1024


class JobComposer:
    """Composes job configs for one sweep (``master_config``) through ``config_loader``."""

    def __init__(self, config_loader: Any, master_config: DictConfig) -> None:
        self._loader = config_loader
        self._master = master_config
        self._parser = OverridesParser.create()
        self._templates: dict[tuple[tuple[str, ...], tuple[str, ...]], bytes] = {}
        # the most recent parses: fixed overrides recur in every trial, sampled values rarely
        self._parsed: OrderedDict[str, Override] = OrderedDict()
        self._groups: dict[str, bool] = {}

    def compose(self, overrides: list[str]) -> DictConfig:
        """The config Hydra's ``load_sweep_config`` would give for ``overrides``."""
        parsed = [self._parse(line) for line in overrides]
        values = [o for o in parsed if self._is_value(o)]
        if len(values) != len([o for o in parsed if not self._is_group(o)]):
            return self._loader.load_sweep_config(self._master, overrides)
        shape = (
            tuple(o.input_line or "" for o in parsed if self._is_group(o)),
            tuple(o.key_or_group for o in values),
        )
        template = self._templates.get(shape)
        if template is None:
            config = self._loader.load_sweep_config(self._master, overrides)
            # cloudpickle: a class Hydra's plugin scan re-executed since import is pickled by value
            self._templates[shape] = cloudpickle.dumps(config)
            return config
        config = pickle.loads(template)
        for override in values:
            OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
        dirname = config.hydra.job.config.override_dirname
        with open_dict(config.hydra):
            config.hydra.overrides.task = list(overrides)
            config.hydra.job.override_dirname = private_apis.overrides_dirname(
                parsed,
                kv_sep=dirname.kv_sep,
                item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys,
            )
        return config

    def _parse(self, line: str) -> Override:
        override = self._parsed.get(line)
        if override is None:
            (override,) = self._parser.parse_overrides([line])
            self._parsed[line] = override
            if len(self._parsed) > PARSED_KEPT:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(line)
        return override

    def _is_group(self, override: Override) -> bool:
        key = override.key_or_group
        if key not in self._groups:
            self._groups[key] = private_apis.group_exists(self._loader, key)
        return self._groups[key]

    def _is_value(self, override: Override) -> bool:
        """A plain ``key=value`` change of a config key (no group, package, ``+``, ``~`` or ``hydra.``)."""
        return (
            override.type == OverrideType.CHANGE
            and override.package is None
            and not override.is_hydra_override()
            and not override.is_sweep_override()
            and not self._is_group(override)
        )
