"""How the driver writes the trial runs it records: one transaction per write where the store is SQL.

MLflow's client takes a transaction (and reads the run back) for each of a run's creation, its params,
each ``log_batch`` and its end, about 40 ms of the driver's CPU per remote trial. ``SqlRunWriter`` writes
the same rows (MLflow's own table models, checked by MLflow's validators) in one transaction per write:
the run with its tags and params, then its metrics, tags and end together, so a killed driver leaves a
write either whole or absent. Any other store (an ``mlflow server``) is written through ``ClientRunWriter``.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Protocol, TypeVar

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.uri import append_to_uri_path
from mlflow.utils.validation import _validate_batch_log_data
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

# MLflow's batch limits (mlflow.utils.validation): 1000 entities, 100 params or tags, per batch
_METRICS_PER_BATCH, _PARAMS_PER_BATCH = 900, 50
_Item = TypeVar("_Item")


@dataclass(frozen=True)
class RunChanges:
    """One write to a run: metric points and params to add, tags to set, and its end status if it ends."""

    metrics: Sequence[Metric] = ()
    params: Sequence[Param] = ()
    tags: Sequence[RunTag] = ()
    status: str | None = None


class RunWriter(Protocol):
    """Creates a trial's run and writes to it."""

    def create(
        self, experiment_id: str, run_name: str, tags: Sequence[RunTag], params: Sequence[Param]
    ) -> str:
        """A new RUNNING run with ``tags`` and ``params``; returns its id."""

    def write(self, run_id: str, changes: RunChanges) -> None:
        """Apply ``changes`` to the run."""


def run_writer(client: MlflowClient) -> RunWriter:
    """The writer for ``client``'s store."""
    store = client._tracking_client.store
    return SqlRunWriter(client, store) if isinstance(store, SqlAlchemyStore) else ClientRunWriter(client)


class ClientRunWriter:
    """Writes through MLflow's client, as many batches as its limits need."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def create(
        self, experiment_id: str, run_name: str, tags: Sequence[RunTag], params: Sequence[Param]
    ) -> str:
        run = self.client.create_run(experiment_id, run_name=run_name, tags={t.key: t.value for t in tags})
        self.write(run.info.run_id, RunChanges(params=params))
        return run.info.run_id

    def write(self, run_id: str, changes: RunChanges) -> None:
        batches = zip_longest(
            _chunks(changes.metrics, _METRICS_PER_BATCH),
            _chunks(changes.params, _PARAMS_PER_BATCH),
            _chunks(changes.tags, _PARAMS_PER_BATCH),
        )
        for batch_metrics, batch_params, batch_tags in batches:
            self.client.log_batch(
                run_id, metrics=batch_metrics or [], params=batch_params or [], tags=batch_tags or []
            )
        if changes.status is not None:
            self.client.set_terminated(run_id, changes.status)


class SqlRunWriter:
    """Writes the rows of MLflow's SQL store directly, one transaction per call."""

    def __init__(self, client: MlflowClient, store: SqlAlchemyStore) -> None:
        self.client = client
        self.store = store

    def create(
        self, experiment_id: str, run_name: str, tags: Sequence[RunTag], params: Sequence[Param]
    ) -> str:
        _, params, tags = _validated((), params, [*tags, RunTag(MLFLOW_RUN_NAME, run_name)])
        run_id = uuid.uuid4().hex
        with self.store.ManagedSessionMaker(read_only=False) as session:
            session.add(
                SqlRun(
                    run_uuid=run_id,
                    name=run_name,
                    artifact_uri=append_to_uri_path(
                        _experiment_artifact_location(self.client, experiment_id), run_id, "artifacts"
                    ),
                    experiment_id=int(experiment_id),
                    source_type="UNKNOWN",
                    source_name="",
                    entry_point_name="",
                    user_id="unknown",
                    status="RUNNING",
                    start_time=int(time.time() * 1000),
                    source_version="",
                    lifecycle_stage="active",
                )
            )
            session.flush()
            session.execute(insert(SqlTag), _key_values(run_id, tags))
            if params:
                session.execute(insert(SqlParam), _key_values(run_id, params))
        return run_id

    def write(self, run_id: str, changes: RunChanges) -> None:
        metrics, params, tags = _validated(changes.metrics, changes.params, changes.tags)
        with self.store.ManagedSessionMaker(read_only=False) as session:
            run = session.get(SqlRun, run_id)
            if run is None or run.lifecycle_stage != "active":
                raise MlflowException(f"Run {run_id} does not exist or is deleted")
            self._add_params(session, run_id, params)
            self._add_metrics(session, run_id, metrics)
            self._set_tags(session, run_id, tags)
            if changes.status is not None:
                run.status = RunStatus.to_string(RunStatus.from_string(changes.status))
                run.end_time = int(time.time() * 1000)

    @staticmethod
    def _add_params(session: Session, run_id: str, params: Sequence[Param]) -> None:
        if not params:
            return
        keys = [p.key for p in params]
        logged: dict[str, str] = dict(
            session.execute(
                select(SqlParam.key, SqlParam.value).where(
                    SqlParam.run_uuid == run_id, SqlParam.key.in_(keys)
                )
            ).all()
        )
        changed = [p.key for p in params if p.key in logged and logged[p.key] != p.value]
        if changed:
            raise MlflowException(f"Changing param values is not allowed: {changed} of run {run_id}")
        new = [p for p in params if p.key not in logged]
        if new:
            session.execute(insert(SqlParam), _key_values(run_id, new))

    def _add_metrics(self, session: Session, run_id: str, metrics: Sequence[Metric]) -> None:
        """Insert the points not logged yet, and move each key's latest value (by step, time, value)."""
        if not metrics:
            return
        points: dict[tuple[str, int, int, float, bool], None] = {}
        for m in metrics:
            is_nan, value = self.store.sanitize_metric_value(m.value)
            points[(m.key, int(m.timestamp), int(m.step), float(value), bool(is_nan))] = None
        keys = sorted({p[0] for p in points})
        query: Any = select(
            SqlMetric.key, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value, SqlMetric.is_nan
        )
        logged = set(
            session.execute(query.where(SqlMetric.run_uuid == run_id, SqlMetric.key.in_(keys))).tuples()
        )
        new = [p for p in points if p not in logged]
        if not new:
            return
        session.execute(
            insert(SqlMetric),
            [
                {"run_uuid": run_id, "key": k, "timestamp": t, "step": s, "value": v, "is_nan": n}
                for k, t, s, v, n in new
            ],
        )
        latest: dict[str, tuple[str, int, int, float, bool]] = {}
        for point in new:
            if point[0] not in latest or _recency(point) > _recency(latest[point[0]]):
                latest[point[0]] = point
        rows = _rows_by_key(session, SqlLatestMetric, run_id, keys)
        for key, point in latest.items():
            _, t, s, v, n = point
            row = rows.get(key)
            if row is None:
                session.add(SqlLatestMetric(run_uuid=run_id, key=key, timestamp=t, step=s, value=v, is_nan=n))
            elif _recency(point) > (row.step, row.timestamp, row.value):
                row.timestamp, row.step, row.value, row.is_nan = t, s, v, n

    @staticmethod
    def _set_tags(session: Session, run_id: str, tags: Sequence[RunTag]) -> None:
        if not tags:
            return
        values = {t.key: t.value for t in tags}
        rows = _rows_by_key(session, SqlTag, run_id, list(values))
        for key, value in values.items():
            if key in rows:
                rows[key].value = value
            else:
                session.add(SqlTag(run_uuid=run_id, key=key, value=value))


def _validated(
    metrics: Sequence[Metric], params: Sequence[Param], tags: Sequence[RunTag]
) -> tuple[list[Metric], list[Param], list[RunTag]]:
    """MLflow's own checks of keys and values (as its ``log_batch`` runs them)."""
    checked_metrics, checked_params, checked_tags = _validate_batch_log_data(
        list(metrics), list(params), list(tags)
    )
    return list(checked_metrics), list(checked_params), list(checked_tags)


def _key_values(run_id: str, items: Sequence[Param | RunTag]) -> list[dict[str, str]]:
    """Params or tags as rows of their table."""
    return [{"run_uuid": run_id, "key": item.key, "value": item.value} for item in items]


def _rows_by_key(session: Session, model: Any, run_id: str, keys: list[str]) -> dict[str, Any]:
    """The rows of ``model``'s table for ``run_id`` and ``keys``, by key, to update in the session."""
    query = select(model).where(model.run_uuid == run_id, model.key.in_(keys))
    return {str(row.key): row for row in session.scalars(query)}


def _recency(point: tuple[str, int, int, float, bool]) -> tuple[int, int, float]:
    """MLflow's order of a key's points for its latest value: step, then time, then value."""
    _, timestamp, step, value, _ = point
    return step, timestamp, value


@functools.lru_cache(maxsize=16)
def _experiment_artifact_location(client: MlflowClient, experiment_id: str) -> str:
    return str(client.get_experiment(experiment_id).artifact_location)


def _chunks(items: Sequence[_Item], size: int) -> list[list[_Item]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
