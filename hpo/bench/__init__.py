"""Benchmarks that print figures: ``python -m hpo.bench <name> --help``."""
