"""``python -m hpo.reports``: rebuild a sweep's reports, publish them to its MLflow parent run, print the
best.

The target is a sweep directory (its ``optimization_results.yaml`` names the MLflow parent run and, when the
study was stored, the Optuna storage) or an Optuna storage (a database URL or a journal file) with
``--study``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpo.core.errors import HPOError
from hpo.core.failures import report_failure
from hpo.core.names import DEBUG_ENV
from hpo.core.optuna_storage import open_storage
from hpo.reports.results import RESULTS_FILE
from hpo.reports.sweep_report import REPORTS_DIR, ReportError, SweepReport

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

# Study user attributes that let a storage URL alone lead to the sweep's MLflow parent run.
STUDY_ATTRS = ("hpo.tracking_uri", "hpo.parent_run_id", "hpo.objective")


@dataclass
class Source:
    """Where a sweep's trials are recorded, and where its reports go."""

    label: str
    out_dir: Path | None
    storage: str | None = None
    study_name: str | None = None
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    objective: str | None = None
    direction: str | None = None


def main(argv: list[str] | None = None) -> int:
    """Run the report command; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m hpo.reports",
        description="Rebuild a sweep's reports, log them to its MLflow parent run, print the best trials.",
    )
    parser.add_argument(
        "target", help=f"a sweep directory (holding {RESULTS_FILE}), an Optuna storage URL or journal file"
    )
    parser.add_argument("--study", help="study name in the storage (default: the storage's only study)")
    parser.add_argument("--tracking-uri", help="MLflow store of the sweep (default: from the sweep's record)")
    parser.add_argument("--parent-run-id", help="the sweep's MLflow parent run (default: from its record)")
    parser.add_argument(
        "--out", type=Path, help=f"where to write the reports (default: <sweep dir>/{REPORTS_DIR})"
    )
    parser.add_argument("--top", type=int, default=5, help="how many of the best trials to list (default: 5)")
    parser.add_argument("--no-publish", action="store_true", help="write the reports, log nothing to MLflow")
    parser.add_argument("--no-plots", action="store_true", help="only trials.csv and the tables (faster)")
    args = parser.parse_args(argv)
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "15"),
        ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    ):
        os.environ.setdefault(key, value)
    try:
        source = _from_target(args)
        report, published = _build(source, publish=not args.no_publish, plots=not args.no_plots)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        return report_failure(exc, isinstance(exc, HPOError))
    print_summary(report, source, published, args.top)
    return 0


def _client(tracking_uri: str) -> MlflowClient:
    """The MLflow client of the sweep's store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _from_target(args: argparse.Namespace) -> Source:
    target = Path(args.target)
    if "://" in args.target or (target.is_file() and target.name != RESULTS_FILE):
        source = Source(args.target, args.out, args.target, args.study)
    else:
        path = Path(args.target)
        sweep_dir = path.parent if path.name == RESULTS_FILE else path
        if not sweep_dir.is_dir():
            raise ReportError(f"no sweep directory at {sweep_dir}")
        results_path = sweep_dir / RESULTS_FILE
        if not results_path.is_file():
            raise ReportError(
                f"{sweep_dir} holds no {RESULTS_FILE}: pass the directory of a finished sweep "
                "(multirun/<date>/<time>) or an Optuna storage URL with --study"
            )
        try:
            results = yaml.safe_load(results_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ReportError(f"{results_path} is not valid YAML: {exc}") from None
        mlflow_info, study = results.get("mlflow") or {}, results.get("study") or {}
        source = Source(
            str(sweep_dir),
            args.out or sweep_dir / REPORTS_DIR,
            study.get("storage"),
            args.study or study.get("study_name"),
            mlflow_info.get("tracking_uri"),
            mlflow_info.get("parent_run_id"),
            results.get("objective"),
            results.get("direction"),
        )
    source.tracking_uri = args.tracking_uri or source.tracking_uri
    source.parent_run_id = args.parent_run_id or source.parent_run_id
    return source


def _build(source: Source, *, publish: bool, plots: bool) -> tuple[SweepReport, bool]:
    """Read the study and runs, write the reports and publish them; returns whether they were published."""
    from mlflow.exceptions import MlflowException

    study = _load_study(source) if source.storage else None
    if source.tracking_uri is None or source.parent_run_id is None:
        if study is None:
            raise ReportError(f"{source.label} records no MLflow parent run and no Optuna study to report on")
        client = None
    else:
        _require_store(source.tracking_uri, "MLflow store")
        client = _client(source.tracking_uri)
    try:
        report = SweepReport.collect(
            study, client, source.parent_run_id, objective=source.objective, direction=source.direction
        )
        if not report.trials:
            raise ReportError(f"{source.label} has no trials yet")
        assert source.out_dir is not None
        report.write(source.out_dir, plots=plots)
        final = not any(t.state in ("RUNNING", "WAITING") for t in report.trials)
        if client is not None and source.parent_run_id is not None and publish:
            report.publish(client, source.parent_run_id, final=final)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ReportError(f"no parent run {source.parent_run_id} in {source.tracking_uri}") from None
        if any(s in exc.message for s in ("Failed to establish", "Max retries exceeded", "timed out")):
            raise ReportError(
                f"cannot reach the MLflow store at {source.tracking_uri}: is it running?"
            ) from None
        raise ReportError(f"cannot use the MLflow store at {source.tracking_uri}: {exc.message}") from None
    return report, client is not None and publish


def _load_study(source: Source) -> optuna.Study:
    import optuna

    assert source.storage is not None
    _require_store(source.storage, "Optuna storage")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = open_storage(source.storage)
        names = optuna.get_all_study_names(storage)
    except Exception as exc:
        hint = (
            " (its password is masked in the record: pass the storage URL itself)"
            if "***" in source.storage
            else ""
        )
        raise ReportError(f"cannot read the Optuna storage {source.storage}{hint}: {exc}") from None
    name = source.study_name or (names[0] if len(names) == 1 else None)
    if name not in names:
        wanted = f"no study '{name}'" if name else "several studies; pick one with --study"
        wanted = wanted if names else "no study"
        raise ReportError(f"{source.storage} has {wanted} (studies: {', '.join(names) or 'none'})")
    study = optuna.load_study(study_name=name, storage=storage)
    attrs: dict[str, Any] = study.user_attrs
    source.tracking_uri = source.tracking_uri or attrs.get(STUDY_ATTRS[0])
    source.parent_run_id = source.parent_run_id or attrs.get(STUDY_ATTRS[1])
    source.objective = source.objective or attrs.get(STUDY_ATTRS[2])
    source.out_dir = source.out_dir or Path(f"{name}-{REPORTS_DIR}")
    return study


def _require_store(uri: str, what: str) -> None:
    """A missing SQLite or journal file is an error here, not a new empty store."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None if "://" in uri else uri
    if path is not None and not Path(path).is_file():
        raise ReportError(f"no {what} at {uri}: the file does not exist")


def print_summary(report: SweepReport, source: Source, published: bool, top: int) -> None:
    """The sweep's counts, its best trials and the parameter importances: rich tables on a terminal, plain
    aligned text otherwise."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    tty = sys.stdout.isatty()
    plain = io.StringIO()
    console = Console(markup=False) if tty else Console(file=plain, markup=False, no_color=True, width=400)
    style = box.SIMPLE_HEAD if tty else None
    cost = report.cost_usd_total
    pruned = f"{len(report.pruned)} pruned, " if report.pruned else ""
    console.print(
        f"{source.label}: {len(report.trials)} trials, {len(report.completed)} completed, {pruned}"
        f"{len(report.failed)} failed" + (f", ${cost:.4f}" if cost is not None else "")
    )
    names = report.varying_params()
    best = Table(
        title=f"best trials by {report.objective} ({report.direction})", box=style, title_justify="left"
    )
    for column in ("rank", "trial", report.objective, "duration_s", "cost_usd"):
        best.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    best.add_column("params", overflow="fold")
    for rank, t in enumerate(report.best(top), 1):
        params = " ".join(f"{n}={_cell(t.params.get(n))}" for n in names)
        duration = "-" if t.duration_s is None else f"{t.duration_s:.1f}"
        spent = "-" if t.cost_usd is None else f"{t.cost_usd:.4f}"
        best.add_row(str(rank), str(t.number), _cell(t.objective), duration, spent, params)
    console.print(best)
    if report.importances:
        table = Table(title="parameter importances (fANOVA)", box=style, title_justify="left")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for name, value in report.importances.items():
            table.add_row(name, f"{value:.3f}")
        console.print(table)
    for name, reason in report.skipped.items():
        console.print(f"skipped {name}: {reason}")
    where = f"; logged to run {source.parent_run_id} under {REPORTS_DIR}/" if published else ""
    console.print(f"reports: {source.out_dir}{where}")
    sys.stdout.write("".join(f"{line.rstrip()}\n" for line in plain.getvalue().splitlines()))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
