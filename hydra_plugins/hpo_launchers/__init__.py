"""Hydra discovers hpo's plugins here; the real code lives in the ``launchers`` package."""

__version__ = "0.1.0"
