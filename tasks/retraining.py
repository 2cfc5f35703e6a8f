"""Tasks of the weekly retrain (``flows/weekly_retrain.py``): thin wrappers, named as the functions they wrap.

Each task takes the settings (read once by the flow), opens the engine and
calls the plain function of the same name in ``models/`` (training,
registry, monitoring).  Retries are given by the flow (``tasks.retries``).
"""

from __future__ import annotations

import logging
from datetime import date

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from models import monitoring, registry, training
from payer_scoring import charts, drift, reports
from payer_scoring.db import get_engine, prepare_database
from payer_scoring.rules import Rules
from payer_scoring.settings import Settings

log = logging.getLogger(__name__)


@task(name="resolve_as_of", cache_policy=NO_CACHE)
def resolve_as_of(settings: Settings, as_of: date | None) -> date:
    """:func:`models.training.resolve_as_of`: ``as_of``, or today capped at the data's last date.

    The run's first database step, so it also applies pending migrations
    (:func:`payer_scoring.db.prepare_database`: once per flow run, retried with it).
    """
    return training.resolve_as_of(prepare_database(settings), as_of, settings)


@task(name="find_champion", cache_policy=NO_CACHE)
def find_champion(settings: Settings) -> registry.Champion | None:
    """:func:`models.registry.find_champion`: the champion (sha256-checked), or None when there is none."""
    return registry.find_champion(get_engine(settings), store=settings.model_store)


@task(name="measure_drift", cache_policy=NO_CACHE)
def measure_drift(settings: Settings, as_of: date, champion, rules: Rules) -> monitoring.DriftMeasurement | None:
    """:func:`models.monitoring.measure_drift` (None without a champion)."""
    return None if champion is None else monitoring.measure_drift(get_engine(settings), as_of, champion, settings, rules)


@task(name="measure_performance_decay", cache_policy=NO_CACHE)
def measure_performance_decay(settings: Settings, as_of: date, rules: Rules) -> drift.PerformanceDecay:
    """:func:`models.monitoring.measure_performance_decay`."""
    return monitoring.measure_performance_decay(get_engine(settings), as_of, settings, rules)


@task(name="decide_retrain", cache_policy=NO_CACHE)
def decide_retrain(champion, force: bool, measured, decay, as_of: date, policy: drift.RetrainPolicy) -> drift.RetrainDecision:
    """:func:`models.monitoring.decide_retrain` on this run's measurements."""
    return monitoring.decide_retrain(champion, force, measured, decay, as_of, policy)


@task(name="train", cache_policy=NO_CACHE)
def train(settings: Settings, as_of: date, rules: Rules) -> training.TrainResult:
    """:func:`models.training.train` on the latest window; registered as challenger (champion when there is none)."""
    return training.train(get_engine(settings), as_of, rules, settings=settings)


@task(name="evaluate_on_latest_holdout", cache_policy=NO_CACHE)
def evaluate_on_latest_holdout(settings: Settings, as_of: date, champion, trained: training.TrainResult, rules: Rules) -> dict:
    """:func:`models.monitoring.evaluate_on_latest_holdout` of the challenger (sha256-checked load) and the champion."""
    engine = get_engine(settings)
    models = {"challenger": registry.load_model(engine, trained.entry.version, store=settings.model_store)}
    if champion is not None:
        models = {"champion": champion, **models}
    return monitoring.evaluate_on_latest_holdout(
        engine, as_of, models, settings, rules, holdout=trained.holdout, holdout_dates=trained.holdout_dates
    )


@task(name="apply_promotion", cache_policy=NO_CACHE)
def apply_promotion(settings: Settings, version: str, promote: bool) -> None:
    """:func:`models.monitoring.apply_promotion`: promote the challenger or archive it."""
    monitoring.apply_promotion(get_engine(settings), version, promote)


@task(name="backtest_scoring_runs", cache_policy=NO_CACHE)
def backtest_scoring_runs(settings: Settings, as_of: date, rules: Rules, flow_run_id: str | None = None) -> list[dict]:
    """:func:`models.monitoring.backtest_scoring_runs` over the past ``3 x horizon`` days (rows upserted in backtest_reports)."""
    from datetime import timedelta

    first = as_of - timedelta(days=3 * settings.horizon_days)
    return monitoring.backtest_scoring_runs(
        get_engine(settings), as_of, settings, rules, first=first, flow_run_id=flow_run_id
    )


@task(name="publish_backtest", cache_policy=NO_CACHE)
def publish_backtest(reports: list[dict], as_of: date) -> list[dict]:
    """The ``backtest`` table artifact (:func:`models.monitoring.backtest_table_rows`)."""
    rows = monitoring.backtest_table_rows(reports)
    if rows:
        create_table_artifact(
            key="backtest", table=rows,
            description=f"Past scoring runs whose window matured by {as_of}: risk score vs observed category on realized outcomes",
        )
    return rows


@task(name="publish_risk_pictures", cache_policy=NO_CACHE)
def publish_risk_pictures(settings: Settings, as_of: date, backtests: list[dict]) -> dict:
    """The ``risk-pictures`` markdown artifact: the analyst's view of the week, as two pictures.

    1. The risk score's calibration curve on the newest matured scoring run
       in ``backtests`` (:func:`models.risk_backtest.reliability`: published
       score vs realized outcome rate, customers not ``new``); a sentence
       instead when no run has matured yet (the first H days).
    2. The category shares of the last 8 weeks' runs
       (:func:`payer_scoring.reports.weekly_category_counts`).

    Returns {calibrated_run: as-of or None, weeks: number of bars}.
    """
    with_curve = [b for b in backtests if (b.get("risk") or {}).get("reliability")]
    weeks = reports.weekly_category_counts(get_engine(settings), as_of)
    parts = [f"## Risk score and categories as of {as_of}"]
    if with_curve:
        newest = with_curve[-1]
        risk = newest["risk"]
        svg = charts.calibration_chart_svg(
            risk["reliability"], f"Risk score calibration: run of {newest['as_of_date']} vs its {settings.horizon_days}-day outcomes"
        )
        parts += [charts.markdown_image(svg, f"calibration of the run of {newest['as_of_date']}"),
                  f"{risk['n']} judged customers; outcome: {newest['outcome']}; AUC {risk['auc']:.3f}, ECE {risk['ece']:.3f}. "
                  "A dot above the diagonal: more customers went bad than the score said."]
    else:
        parts.append(f"No scoring run has matured yet (a run of date T is judged at T + {settings.horizon_days} days): no calibration curve.")
    if weeks:
        svg = charts.category_shares_svg(weeks, f"Category shares, last 8 weeks ({len(weeks)} runs: each week's latest)")
        parts += [charts.markdown_image(svg, "category shares by week"),
                  "Each bar: the week's latest run as published (after hysteresis); in brackets its customers.",
                  reports.weekly_shares_markdown(weeks)]
    else:
        parts.append("No scoring run in the last 8 weeks: no category shares.")
    create_markdown_artifact(key="risk-pictures", markdown="\n\n".join(parts),
                             description=f"Risk score calibration and category shares by week, as of {as_of}")
    return {"calibrated_run": with_curve[-1]["as_of_date"] if with_curve else None, "weeks": len(weeks)}


@task(name="write_drift_report", cache_policy=NO_CACHE)
def write_drift_report(settings: Settings, report: dict) -> int:
    """:func:`models.monitoring.write_drift_report`; returns the row id."""
    return monitoring.write_drift_report(get_engine(settings), report)


@task(name="publish_retrain_artifacts", cache_policy=NO_CACHE)
def publish_retrain_artifacts(report: dict, drift_rows: list[dict]) -> None:
    """Prefect artifacts: drift table, decision (markdown), champion vs challenger metrics (table)."""
    as_of = report["as_of_date"]
    if drift_rows:
        create_table_artifact(
            key="drift-table", table=drift_rows,
            description=f"PSI (bins: reference deciles) and KS per feature as of {as_of}; flag: stable < 0.10 <= moderate < 0.25 <= major",
        )
        svg = charts.psi_chart_svg(drift_rows, f"Feature drift (PSI) as of {as_of}: current vs the champion's reference")
        create_markdown_artifact(
            key="drift-chart",
            markdown=f"## Feature drift as of {as_of}\n\n{charts.markdown_image(svg, f'PSI per feature as of {as_of}')}\n\n"
            "Red: drifted (PSI >= 0.10 and KS significant); amber: PSI >= 0.10 but KS not significant; grey: stable.",
            description=f"PSI per feature as of {as_of} (picture of drift-table)",
        )
    create_markdown_artifact(key="retrain-decision", markdown=monitoring.decision_markdown(report), description=f"Retrain decision as of {as_of}")
    if report.get("challenger_metrics"):
        create_table_artifact(
            key="champion-vs-challenger",
            table=monitoring.metrics_table_rows(report.get("champion_metrics"), report.get("challenger_metrics")),
            description=f"Both models on the same latest matured holdout (as of {as_of})",
        )
