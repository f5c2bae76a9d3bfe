"""The contract the driver shares with ``launchers`` and ``worker``: errors, config schemas, the trial
payload, trial identity, and the names of tags and environment variables. It imports nothing of hpo's."""
