"""A sweep's reports: results, ``trials.csv``, Optuna's plots and ``python -m hpo.reports``."""
