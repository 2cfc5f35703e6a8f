"""Training set, fit, holdout evaluation and registration (``payer-scoring train`` / ``evaluate``).

Snapshots and the time split (H = ``settings.horizon_days``, S =
``settings.snapshot_every_days``, A = the as-of date):

* a snapshot at T gets a label only when its performance window has fully
  matured, T + H <= A;
* the HOLDOUT is the latest matured snapshot(s): T_h = A - H (and
  ``settings.holdout_snapshots`` - 1 more, S apart, going back);
* TRAINING snapshots end H before the earliest holdout snapshot (T <= T_h - H),
  so every training label was known at T_h: nothing of the holdout's outcome
  window leaks into training (an "embargo" of H days).  They go back S days
  at a time over ``settings.training_window_days``, but never earlier than
  ``settings.min_history_days`` after the first bill in the data.

Population: customers that are not ``new`` at T (at least
``rules.min_matured_bills`` matured bills) and that have at least one bill
maturing in (T, T + H].  ``new`` customers are excluded from training and
evaluation because the category billing reads is ``new`` for them whatever
the model says.  The generator's hidden behaviour (``synthetic_truth``) is
never read here.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.evaluation import baseline_statistics, compare_on_holdout
from models.pipeline import predict_proba_frame
from models.risk_backtest import backtest as risk_backtest
from models.risk_backtest import json_safe
from models.risk_scorer import fit_risk_scorer
from models.registry import RegistryEntry, check_compatible, load_champion, register_model
from payer_scoring import asof
from payer_scoring.db import require_payments
from payer_scoring.rules import CLASSES, Rules, load_rules
from payer_scoring.drift import drift_population
from payer_scoring.features import FEATURE_COLUMNS, extract_features
from payer_scoring.labels import compute_labels
from payer_scoring.settings import Settings

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Not enough data to train or evaluate (one line saying what is missing)."""


@dataclass(frozen=True)
class SnapshotPlan:
    """As-of dates of the training and holdout snapshots (oldest first)."""

    as_of: date
    train: list[date]
    holdout: list[date]


def data_bounds(engine: Engine) -> tuple[date, date] | None:
    """(first issue date, last issue-or-payment date) in ``payments``; None when empty."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT min(issue_date_dte), GREATEST(max(issue_date_dte), max(paid_at_dte)) FROM payments")
        ).first()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def resolve_as_of(engine: Engine, as_of: date | None, settings: Settings) -> date:
    """The run's as-of date by the one rule of :func:`payer_scoring.asof.resolve_as_of`.

    ``as_of`` None -> today (``settings.timezone``) capped at the data's last
    date; an explicit date after tomorrow or more than
    ``settings.as_of_max_days_after_data`` days after the data's last date
    raises :class:`payer_scoring.asof.AsOfError` (unless
    ``settings.allow_future_as_of``).  Raises :class:`payer_scoring.db.DatabaseError`
    naming the database when ``payments`` is empty.
    """
    bounds = data_bounds(engine)
    if bounds is None:
        require_payments(engine)  # raises, naming the database
    return asof.resolve_as_of(
        as_of,
        today=settings.today(),
        last_data_date=bounds[1],
        max_days_after_data=settings.as_of_max_days_after_data,
        allow_future=settings.allow_future_as_of,
    )


def plan_snapshots(
    as_of: date,
    first_bill: date,
    horizon_days: int,
    every_days: int,
    window_days: int,
    min_history_days: int,
    holdout_snapshots: int = 1,
) -> SnapshotPlan:
    """Snapshot dates for the time split described in the module docstring."""
    step = timedelta(days=every_days)
    horizon = timedelta(days=horizon_days)
    latest = as_of - horizon
    holdout = [latest - k * step for k in range(holdout_snapshots)]
    earliest = max(first_bill + timedelta(days=min_history_days), min(holdout) - horizon - timedelta(days=window_days))
    train: list[date] = []
    t = min(holdout) - horizon
    while t >= earliest:
        train.append(t)
        t -= step
    return SnapshotPlan(as_of=as_of, train=sorted(train), holdout=sorted(holdout))


def labelled_snapshot(
    engine: Engine, as_of: date, rules: Rules, horizon_days: int, *, include_new: bool = False
) -> pd.DataFrame:
    """Features at ``as_of`` joined with the window label, for customers not ``new`` at ``as_of``.

    ``include_new``: keep the ``new`` customers too (the risk model is trained
    on them so they get a risk score).  Columns: snapshot, company_id,
    customer_id, n_matured, observed_category, FEATURE_COLUMNS, n_window,
    n_window_late, label.  Only rows with a label.
    """
    features = extract_features(engine, as_of, rules, horizon_days=horizon_days)
    if not include_new:
        features = features[features["n_matured"] >= rules.min_matured_bills]
    labels = compute_labels(engine, as_of, horizon_days, rules)
    frame = features.merge(
        labels[["company_id", "customer_id", "n_window", "n_window_late", "label"]], on=["company_id", "customer_id"], how="inner"
    )
    frame.insert(0, "snapshot", as_of)
    return frame


def build_training_set(
    engine: Engine, dates: list[date], rules: Rules, horizon_days: int, *, include_new: bool = False
) -> pd.DataFrame:
    """Labelled snapshots at ``dates`` stacked (see :func:`labelled_snapshot`)."""
    parts = []
    for t in dates:
        started = time.perf_counter()
        part = labelled_snapshot(engine, t, rules, horizon_days, include_new=include_new)
        log.info("snapshot %s: %d labelled customers (%.1fs)", t, len(part), time.perf_counter() - started)
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def _library_versions() -> dict:
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def _plan(engine: Engine, as_of: date | None, settings: Settings) -> SnapshotPlan:
    bounds = data_bounds(engine)
    if bounds is None:
        raise TrainingError("payments is empty: load or generate data first")
    as_of = resolve_as_of(engine, as_of, settings)
    return plan_snapshots(
        as_of,
        bounds[0],
        settings.horizon_days,
        settings.snapshot_every_days,
        settings.training_window_days,
        settings.min_history_days,
        settings.holdout_snapshots,
    )


@dataclass(frozen=True)
class TrainResult:
    """What ``payer-scoring train`` did: the registry entry, the holdout report and sizes/timings."""

    entry: RegistryEntry
    report: dict
    n_train: int
    n_holdout: int
    seconds: dict
    # The labelled holdout rows and their snapshot dates, so a caller comparing
    # models on the same holdout (the weekly retrain) need not query them again.
    holdout: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    holdout_dates: tuple[date, ...] = ()

    def summary(self) -> dict:
        """JSON-ready summary (version, status, figures)."""
        return {
            "version": self.entry.version,
            "status": self.entry.status,
            "artifact": str(self.entry.artifact_path),
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
            "holdout_as_of": self.report.get("holdout_as_of"),
            "model": _headline(self.report["model"]),
            "persistence": _headline(self.report["persistence"]),
            "majority": _headline(self.report["majority"]),
            "beats_persistence": self.report["beats_persistence"],
            "risk": risk_headline(self.report.get("risk")),
            "seconds": self.seconds,
        }


def risk_headline(risk: dict | None) -> dict | None:
    """The risk backtest's figures that matter to billing (rounded), or None."""
    if not risk:
        return None
    out = {f"risk_{k}": risk["risk"][k] for k in ("auc", "brier", "ece")}
    out |= {k: risk[k] for k in ("observed_auc", "category_auc")}
    out |= {f"log_loss_{k}": v for k, v in risk["log_loss"].items()}
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _headline(metrics: dict) -> dict:
    return {k: round(metrics[k], 4) for k in ("macro_f1", "balanced_accuracy", "log_loss")}


def train(
    engine: Engine,
    as_of: date | None = None,
    rules: Rules | None = None,
    *,
    settings: Settings,
    random_state: int = 0,
) -> TrainResult:
    """Build the training set, fit, evaluate on the time holdout, save and register the model.

    ``settings`` gives the horizon, the snapshot plan, the row cap, the
    threads and the model store; ``rules`` default: ``settings.rules_file``.
    Registered as champion when there is none, otherwise as challenger.
    Raises :class:`TrainingError` when the data has no matured snapshot or a
    split has no labelled row.
    """
    rules = rules or load_rules(settings.rules_file)
    plan = _plan(engine, as_of, settings)
    if not plan.train:
        raise TrainingError(
            f"as of {plan.as_of}: no training snapshot fits (needs {settings.min_history_days} days of history "
            f"plus 2 x {settings.horizon_days} days of matured performance windows)"
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    train_set = build_training_set(engine, plan.train, rules, settings.horizon_days, include_new=True)
    holdout = build_training_set(engine, plan.holdout, rules, settings.horizon_days, include_new=True)
    timings["training_set"] = round(time.perf_counter() - started, 1)
    judged_train = _judged(train_set, rules)
    judged_holdout = _judged(holdout, rules)
    if judged_train.empty or judged_holdout.empty:
        raise TrainingError(
            f"as of {plan.as_of}: no labelled customers in the {'training' if judged_train.empty else 'holdout'} "
            f"snapshots ({len(plan.train)} training, {len(plan.holdout)} holdout): too little history"
        )
    if len(train_set) > settings.training_max_rows:
        log.info("sampling %d of %d training rows", settings.training_max_rows, len(train_set))
        train_set = train_set.sample(n=settings.training_max_rows, random_state=random_state).sort_index()
        judged_train = _judged(train_set, rules)
    started = time.perf_counter()
    try:
        model = fit_risk_scorer(train_set, rules, random_state=random_state, threads=settings.model_threads)
    except ValueError as exc:
        raise TrainingError(f"as of {plan.as_of}: cannot fit the risk model ({exc})") from None
    timings["fit"] = round(time.perf_counter() - started, 1)
    stats = baseline_statistics(judged_train["observed_category"], judged_train["label"])
    report = holdout_report(model, judged_holdout, stats, settings)
    started = time.perf_counter()
    report["risk"] = json_safe(risk_backtest(model.model, model.rule, holdout, train_set, rules, model.outcome))
    timings["backtest"] = round(time.perf_counter() - started, 1)
    report["holdout_as_of"] = plan.holdout[-1].isoformat()
    metadata = {
        "model_type": f"RiskScorer (ordinal chain: {model.kind})",
        "risk_kind": model.kind,
        "risk_selection": json_safe(model.selection),
        "risk_outcome": model.outcome,
        "decision_cutoffs": list(model.rule.cutoffs),
        "classes": list(CLASSES),
        "feature_columns": list(model.feature_columns),
        "rules_version": rules.version,
        "horizon_days": settings.horizon_days,
        "snapshot_every_days": settings.snapshot_every_days,
        "as_of": plan.as_of,
        "training_start": plan.train[0],
        "training_end": plan.train[-1],
        "training_snapshots": plan.train,
        "holdout_snapshots": plan.holdout,
        "holdout_as_of": plan.holdout[-1],
        "n_train": int(len(train_set)),
        "n_train_judged": int(len(judged_train)),
        "n_holdout": int(len(judged_holdout)),
        "train_label_counts": train_set["label"].value_counts().to_dict(),
        "baseline_statistics": stats,
        "metrics": {k: report[k] for k in ("model", "persistence", "persistence_transition", "majority", "margin_vs_persistence", "risk")},
        "library_versions": _library_versions(),
        "random_state": random_state,
    }
    entry = register_model(
        engine, model, metadata, reference_population(engine, plan.as_of, rules, settings), store=settings.model_store
    )
    log.info("model %s (%s): %s", entry.version, entry.status, _headline(report["model"]))
    return TrainResult(
        entry=entry, report=report, n_train=len(train_set), n_holdout=len(judged_holdout), seconds=timings,
        holdout=judged_holdout, holdout_dates=tuple(plan.holdout),
    )


def _judged(frame: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """Rows of customers that are not ``new`` (the population of the category and its baselines)."""
    if frame.empty:
        return frame
    return frame[frame["n_matured"] >= rules.min_matured_bills]


def holdout_report(model, judged_holdout: pd.DataFrame, stats: dict, settings: Settings) -> dict:
    """:func:`models.evaluation.compare_on_holdout` of ``model`` (a RiskScorer or a multiclass pipeline) on judged rows.

    The model's class is its published category (a RiskScorer's decision
    rule; a pipeline's argmax).
    """
    columns = list(getattr(model, "feature_columns", FEATURE_COLUMNS))
    proba = predict_proba_frame(model, judged_holdout[columns], threads=settings.model_threads).to_numpy()
    categories = None
    if hasattr(model, "score"):
        categories = model.score(judged_holdout, reasons=False, threads=settings.model_threads)["category"].to_numpy()
    return compare_on_holdout(judged_holdout["label"], proba, judged_holdout["observed_category"], stats, categories)


def reference_population(engine: Engine, as_of: date, rules: Rules, settings: Settings) -> pd.DataFrame:
    """Features of the drift population at ``as_of`` (the model's training date): its reference sample.

    The weekly retrain compares the same population at a later as-of with
    this one (PSI, KS); see :mod:`models.monitoring` for why the pooled training
    snapshots are not used.  One row per customer, ``FEATURE_COLUMNS`` among the columns.
    """
    features = extract_features(engine, as_of, rules, horizon_days=settings.horizon_days)
    active = drift_population(features, rules.min_matured_bills, settings.drift_active_days)
    # A book with no recent activity at the training date (a closed historical
    # file): fall back to every customer that is not new, so drift can be measured.
    return active if len(active) else features[features["n_matured"] >= rules.min_matured_bills]


def evaluate(
    engine: Engine,
    as_of: date | None = None,
    rules: Rules | None = None,
    *,
    settings: Settings,
) -> dict:
    """Compare the champion with the persistence and majority baselines on the latest matured snapshot(s).

    The baselines use the training statistics stored with the champion.
    Returns a JSON-ready report: holdout dates, ``model`` / ``persistence`` /
    ``persistence_transition`` / ``majority`` metrics, margins, and
    ``holdout_after_training`` (False when the holdout's window overlaps the
    champion's training labels, i.e. the figures are optimistic).
    Raises NoChampionError / TrainingError, IncompatibleChampionError when the
    settings' horizon or rules version differs from the champion's.
    """
    rules = rules or load_rules(settings.rules_file)
    champion = load_champion(engine, store=settings.model_store)
    check_compatible(champion, horizon_days=settings.horizon_days, rules_version=rules.version)
    plan = _plan(engine, as_of, settings)
    holdout = build_training_set(engine, plan.holdout, rules, settings.horizon_days, include_new=True)
    judged = _judged(holdout, rules)
    if judged.empty:
        raise TrainingError(f"as of {plan.as_of}: no labelled customers in the holdout snapshot(s) {', '.join(d.isoformat() for d in plan.holdout)}")
    stats = champion.metadata["baseline_statistics"]
    report = holdout_report(champion.model, judged, stats, settings)
    if hasattr(champion.model, "score"):
        scorer = champion.model
        report["risk"] = json_safe(risk_backtest(scorer.model, scorer.rule, holdout, None, rules, scorer.outcome, stats=stats))
    training_end = date.fromisoformat(str(champion.metadata["training_end"]))
    return {
        "model_version": champion.version,
        "as_of": plan.as_of.isoformat(),
        "holdout_as_of": [d.isoformat() for d in plan.holdout],
        "horizon_days": settings.horizon_days,
        "rules_version": rules.version,
        "holdout_after_training": min(plan.holdout) >= training_end + timedelta(days=settings.horizon_days),
        "label_counts": judged["label"].value_counts().to_dict(),
        **report,
    }
