"""The Optuna study behind a sweep: its default name and storage, and what re-running the command resumes.

A study lives in a storage (by default the journal file ``optuna.journal`` beside the MLflow store, see
``hpo.driver.study_storage``) under a name derived from the command, so running the same command again
continues the same study: ``n_trials`` is the study's total, completed, pruned and failed trials are never
run again, and trials an earlier driver left RUNNING (it was interrupted or killed) are run again as the same
Optuna trials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.core.errors import ConfigError, HPOError
from hpo.core.store import resolve_tracking_uri

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.journal"
# the default storage of hpo's earlier versions: a sweep begun there resumes there
LEGACY_STORAGE_FILE = "optuna.db"
# study user attributes: where its MLflow parent run is, and what it optimises
PARENT_RUN_ATTR = "hpo.parent_run_id"
TRACKING_URI_ATTR = "hpo.tracking_uri"
OBJECTIVE_ATTR = "hpo.objective"
# trial user attributes (besides hpo.core.names.ERROR_TAG): what it cost, and the backend's id of the job
# running it (a RunPod job, a SLURM trial's job folder), which a resumed sweep re-attaches to
COST_ATTR = "hpo.cost_usd"
JOB_ID_ATTR = "hpo.job_id"


class StudyWrittenElsewhere(HPOError):
    """Another process added trials to the study this driver runs."""


def default_storage(tracking_uri: str, start_dir: str | Path) -> str:
    """The journal file ``optuna.journal`` in the directory of a SQLite MLflow store, else in the directory
    hpo started in; an ``optuna.db`` an earlier version left there, and no journal yet, is used instead."""
    uri = resolve_tracking_uri(tracking_uri, start_dir)
    folder = Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:///") else Path(start_dir)
    journal, legacy = folder.resolve() / STORAGE_FILE, folder.resolve() / LEGACY_STORAGE_FILE
    return f"sqlite:///{legacy}" if legacy.is_file() and not journal.exists() else str(journal)


def public_url(url: str) -> str:
    """A storage URL (or journal file) fit to print and record: any password in it is masked."""
    if "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***"


@dataclass
class StudyState:
    """A study's trials as a new driver finds them."""

    complete: int = 0
    # stopped early by the study's pruner: finished, neither completed nor failed
    pruned: int = 0
    failed: int = 0
    # trials an earlier driver left RUNNING: run again as the same trials
    stale: list[FrozenTrial] = field(default_factory=list)
    # every trial asked so far (waiting ones, enqueued by hand, are asked later)
    asked: int = 0

    @classmethod
    def of(cls, study: optuna.Study) -> StudyState:
        from optuna.trial import TrialState

        state = cls()
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.WAITING:
                continue
            state.asked += 1
            if trial.state == TrialState.COMPLETE:
                state.complete += 1
            elif trial.state == TrialState.PRUNED:
                state.pruned += 1
            elif trial.state == TrialState.RUNNING:
                state.stale.append(trial)
            else:
                state.failed += 1
        return state


def open_study(
    name: str, storage: str, sampler: Any, directions: list[str], pruner: Any = None
) -> optuna.Study:
    """Create the study, or load it when it exists, in the journal file or database URL ``storage``; it
    prunes with ``pruner`` (None: never), whatever an earlier sweep of it used."""
    import optuna
    from optuna.study import StudyDirection

    from hpo.core.optuna_storage import open_storage
    from hpo.driver.study_storage import SweepStudy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wrong = [d for d in directions if d.upper() not in StudyDirection.__members__]
    if wrong:
        raise ConfigError(f"hydra.sweeper.direction must be maximize or minimize, got {wrong[0]!r}")
    try:
        opened = open_storage(storage)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot open the Optuna storage {public_url(storage)}: {reason} (hydra.sweeper.storage takes a "
            "journal file such as optuna.journal or a database URL such as sqlite:///optuna.db)"
        ) from None
    try:
        optuna.create_study(
            study_name=name,
            storage=opened,
            sampler=sampler,
            directions=[StudyDirection[d.upper()] for d in directions],
            load_if_exists=True,
        )
    except ValueError as exc:
        raise ConfigError(
            f"study '{name}' in {public_url(storage)} cannot be resumed: {exc} "
            "(set hydra.sweeper.study_name to start another)"
        ) from None
    study = SweepStudy(name, opened, sampler)
    study.pruner = pruner or optuna.pruners.NopPruner()
    return study


def reopen(study: optuna.Study, number: int) -> optuna.Trial:
    """Trial ``number`` of ``study``, left RUNNING by an earlier driver, as a trial to run again as it is."""
    from hpo.driver.study_storage import SweepStudy

    if not isinstance(study, SweepStudy):
        raise TypeError(f"trial #{number} can be taken up again only in a study that open_study opened")
    return study.reopen(number)


def reseeded(sampler: Any, sampler_conf: Any, seed: int, n_asked: int) -> Any:
    """The sampler to resume a study that holds ``n_asked`` trials with: one seeded anew from the study seed
    and that count, so that it does not draw the first trials' parameters again (a grid needs no reseed)."""
    if (
        not n_asked
        or sampler_conf is None
        or sampler_conf.get("seed") is None
        or sampler_conf.get("_partial_")
    ):
        return sampler
    from hydra.utils import instantiate

    from hpo.core.trial_identity import trial_seed

    return instantiate(sampler_conf, seed=trial_seed(seed, n_asked))
