"""The names the driver, the launchers and the workers agree on: environment variables and MLflow tags."""

from __future__ import annotations

# set by the driver for every trial's job: the sweep's MLflow parent run
PARENT_RUN_ENV = "HPO_PARENT_RUN_ID"
# set in a trial's job by the launcher: the MLflow run it continues (if any), the study's best so far
TRIAL_RUN_ENV = "HPO_TRIAL_RUN_ID"
BEST_SO_FAR_ENV = "HPO_BEST_SO_FAR"
# set to any value: hpo's commands show the traceback of a failure instead of one line
DEBUG_ENV = "HPO_DEBUG"
# the module that imports every library a trial loads: what hpo's local slots have loaded before a job
TRIAL_LIBRARIES = "worker.libraries"

# the child-run tag holding the trial's Optuna state (COMPLETE, FAIL): set with the run's end by the trial
# (or a remote trial's backend), else once the study is told
OPTUNA_STATE_TAG = "hpo.optuna_state"
# why a trial's run failed or was killed; also the study's user attribute with the same meaning
ERROR_TAG = "hpo.error"
# the Optuna trial number a child run belongs to
TRIAL_NUMBER_TAG = "hpo.trial_number"
# set on a pruned trial's run ("true"), with the last epoch it finished (1-based)
PRUNED_TAG = "hpo.pruned"
PRUNED_EPOCH_TAG = "hpo.pruned_epoch"


def error_tag(message: str) -> dict[str, str]:
    """The ``hpo.error`` tag for ``message``, cut to a length every MLflow store accepts."""
    return {ERROR_TAG: message[:5000]}
