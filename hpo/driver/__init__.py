"""The sweep's driver: the CLI, the asynchronous sweeper and its trial loop, and the Optuna study."""
