"""MLflow records of a sweep: the store, the parent run, and each trial's child run from open to end."""
