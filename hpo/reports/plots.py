"""A sweep's plots: Optuna's history, importances, parallel coordinates and slices as HTML, the first two
as PNG too."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from hpo.reports.sweep_report import SweepReport

log = logging.getLogger(__name__)

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")
# the plots that also get a PNG (matplotlib's): the parallel-coordinate and slice plots' PNGs took most of a
# final report's time and read poorly at a fixed size (a panel or an axis per parameter): HTML only
PNG_PLOTS = ("optimization_history", "param_importances")
PAGE_FILE = "report.html"
# the trial states a study rebuilt from the runs holds (a running trial has nothing to show yet)
STATES = ("COMPLETE", "PRUNED", "FAIL")
_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><script>{plotlyjs}</script></head>
<body style="font-family: sans-serif"><h2>{title}</h2><p>{summary}</p>
{figures}
</body></html>
"""


def load_libraries() -> None:
    """Import the plotting libraries, matplotlib drawing off-screen (its Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import optuna.importance  # noqa: F401
    import optuna.visualization  # noqa: F401
    import optuna.visualization.matplotlib  # noqa: F401
    import plotly.offline  # noqa: F401


def warm_up() -> None:
    """Draw a small plot of each kind once, off the record: a first figure costs a fresh process its fonts,
    text engine and templates, which a reporter waiting for the end of a sweep pays in advance."""
    import io

    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for x in (0.5, 1.0):
        study.enqueue_trial({"x": x})
        study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0) ** 2, n_trials=1)
    vis.plot_optimization_history(study).to_html(full_html=False, include_plotlyjs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vis_mpl.plot_optimization_history(study)
    figure = plt.gcf()
    try:
        figure.savefig(io.BytesIO(), format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close("all")


def importances(report: SweepReport) -> dict[str, float]:
    """Seeded fANOVA importances of the searched parameters (reruns agree), or {} with the reason noted.

    fANOVA's forest cannot tell the effects of more parameters apart than it has completed trials to learn
    from: a sweep with no more completed trials than varying parameters gets no importances.
    """
    import optuna

    names = _plot_params(report)
    if len(report.completed) < 2 or not names:
        report.skipped["param_importances"] = "needs 2 completed trials and a parameter that varies"
        return {}
    if len(report.completed) <= len(names):
        report.skipped["param_importances"] = (
            f"needs more completed trials ({len(report.completed)}) than varying parameters ({len(names)})"
        )
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        found = optuna.importance.get_param_importances(report.plot_study, evaluator=evaluator, params=names)
    except (ValueError, RuntimeError) as exc:
        report.skipped["param_importances"] = str(exc)
        return {}
    return {k: float(v) for k, v in found.items()}


def draw(report: SweepReport, out_dir: Path) -> list[Path]:
    """Draw every plot that the trials allow into ``out_dir``: ``<plot>.html`` (plotly.js from its CDN),
    ``<plot>.png`` for those in PNG_PLOTS, and ``report.html`` with all of them and plotly.js inline, to view
    offline."""
    from plotly.offline import get_plotlyjs

    if not report.completed:
        report.skipped.update(dict.fromkeys(PLOTS, "no completed trial yet"))
        return []
    study, names, target = report.plot_study, _plot_params(report), report.objective
    evaluator = _cached(report.importances)
    kwargs: dict[str, dict[str, Any]] = {
        "optimization_history": {"target_name": target},
        "param_importances": {
            "evaluator": evaluator,
            "params": list(report.importances),
            "target_name": target,
        },
        "parallel_coordinate": {"params": names, "target_name": target},
        "slice": {"params": names, "target_name": target},
    }
    written: list[Path] = []
    figures: list[str] = []
    for name in PLOTS:
        if name == "param_importances" and not report.importances:
            continue
        if name != "optimization_history" and not names:
            report.skipped[name] = "no parameter varies"
            continue
        try:
            figure, png = _plot(name, study, kwargs[name], out_dir)
        except Exception as exc:
            report.skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning(f"sweep report: {name} plot skipped: {exc}")
            continue
        html = out_dir / f"{name}.html"
        figure.write_html(html, include_plotlyjs="cdn")
        figures.append(figure.to_html(full_html=False, include_plotlyjs=False))
        written += [html] if png is None else [html, png]
    best = report.best()
    summary = (
        f"{len(report.trials)} trials, {len(report.completed)} completed, {len(report.failed)} failed"
        + (f"; best #{best[0].number}: {target}={best[0].objective:.6g}" if best else "")
    )
    page = out_dir / PAGE_FILE
    title = escape(f"Sweep report: {target} ({report.direction})")
    page.write_text(
        _PAGE.format(
            title=title, plotlyjs=get_plotlyjs(), summary=escape(summary), figures="\n".join(figures)
        )
    )
    return [*written, page]


def _plot_params(report: SweepReport) -> list[str]:
    """The varying parameters that the plotted study knows (a resumed study may have changed fixed ones)."""
    known = {k for t in report.plot_study.get_trials(deepcopy=False) for k in t.params}
    return [n for n in report.varying_params() if n in known]


def _plot(name: str, study: optuna.Study, kwargs: dict[str, Any], out_dir: Path) -> tuple[Any, Path | None]:
    """One plot as a plotly figure, and (in PNG_PLOTS) as a PNG drawn with matplotlib's Agg backend."""
    load_libraries()
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    plotly_fn: Callable[..., Any] = getattr(vis, f"plot_{name}")
    figure = plotly_fn(study, **kwargs)
    if name not in PNG_PLOTS:
        return figure, None
    mpl_fn: Callable[..., Any] = getattr(vis_mpl, f"plot_{name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = mpl_fn(study, **kwargs)
    canvas = np.atleast_1d(axes).flat[0].figure
    png = out_dir / f"{name}.png"
    try:
        canvas.savefig(png, dpi=100, bbox_inches="tight")
    finally:
        plt.close(canvas)
    return figure, png


def _cached(found: dict[str, float]) -> optuna.importance.BaseImportanceEvaluator:
    """An evaluator that returns importances computed once, so the plots agree with the table."""
    from optuna.importance import BaseImportanceEvaluator

    class Cached(BaseImportanceEvaluator):
        def evaluate(
            self, study: optuna.Study, params: list[str] | None = None, **kwargs: Any
        ) -> dict[str, float]:
            return {k: v for k, v in found.items() if params is None or k in params}

    return Cached()


def rebuild_study(report: SweepReport) -> optuna.Study:
    """An in-memory study holding the settled trials, with distributions inferred from the values seen."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = report.varying_params()
    settled = [t for t in report.trials if t.state in STATES]
    values = {n: [t.params[n] for t in settled if n in t.params] for n in names}
    dists: dict[str, Any] = {}
    for name, seen in values.items():
        numbers = [v for v in seen if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) < len(seen):
            dists[name] = CategoricalDistribution(sorted({_choice(v) for v in seen}, key=str))
        elif all(isinstance(v, int) for v in numbers):
            dists[name] = IntDistribution(int(min(numbers)), int(max(numbers)))
        else:
            low, high = float(min(numbers)), float(max(numbers))
            dists[name] = FloatDistribution(low, high, log=low > 0 and high / low >= 100)
    study = optuna.create_study(direction="minimize" if report.direction == "minimize" else "maximize")
    for t in settled:
        params = {n: t.params[n] for n in names if n in t.params}
        params = {
            n: _choice(v) if isinstance(dists[n], CategoricalDistribution) else v for n, v in params.items()
        }
        state = optuna.trial.TrialState[t.state]
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=t.objective if state == optuna.trial.TrialState.COMPLETE else None,
                params=params,
                distributions={n: dists[n] for n in params},
            )
        )
    return study


def _choice(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
