"""Model monitoring: the steps of the weekly retrain (``flows/weekly_retrain.py``) around the models.

Plain functions take an engine (and the settings or rules they need) and
return data: drift of the champion's population, realized performance
decay, champion vs challenger on the latest matured holdout, promotion, the
``drift_reports`` row and the artifacts' content.  The Prefect tasks that wrap
them are in ``tasks/retraining.py`` (same names).

Populations compared by the drift check
    Both sides are the same population taken at two dates: customers not
    ``new`` (at least ``rules.min_matured_bills`` matured bills) with a bill
    issued in the last ``settings.drift_active_days`` days or an unpaid/prepaid
    bill falling due within the horizon (:func:`payer_scoring.drift.drift_population`).
    The reference is that population at the as-of date the champion was
    trained at (stored with the model as its reference sample); the current one
    is the population at the run's as-of.  Comparing with every non-new
    customer would flag "days since the last bill" and the open-bill counts on
    every run, because dormant customers never enter the training set; comparing
    with the pooled training snapshots (which span two years) flagged 16 of 37
    features on a same-day rerun of generated data, because a growing book has
    fewer bills per customer in its older snapshots.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.evaluation import classification_metrics
from models.pipeline import predict_proba_frame
from models.risk_backtest import outcome_rate_by_observed, score_metrics, scored_backtest
from models.risk_model import LINKS, link_targets
from models import registry
from models.registry import load_reference_sample, to_json
from models.training import TrainingError, build_training_set, data_bounds, plan_snapshots
from payer_scoring import drift
from payer_scoring.features import extract_features
from payer_scoring.labels import compute_labels
from payer_scoring import results

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- drift
@dataclass
class DriftMeasurement:
    """Per-feature drift table, predicted-category shift and the sizes of the two samples."""

    table: pd.DataFrame
    category_shift: dict | None
    n_reference: int
    n_current: int

    def feature_json(self) -> dict:
        """``{feature: {psi, ks_statistic, ks_pvalue, level, reference_mean, current_mean}}`` (NaN -> null)."""
        out = {}
        for row in self.table.to_dict("records"):
            name = row.pop("feature")
            out[name] = {k: _finite(v) for k, v in row.items()}
        return out


def _finite(value):
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    return value


def measure_drift(engine: Engine, as_of: date, champion, settings, rules) -> DriftMeasurement:
    """Champion's reference sample vs the current population at ``as_of`` (PSI, KS, category shares).

    ``champion`` is a loaded :class:`models.registry.Champion`.  Raises
    ``RuntimeError`` when the champion has no reference sample.
    """
    reference = load_reference_sample(engine, champion.version)
    if reference.empty:
        raise RuntimeError(f"model {champion.version} has no reference sample in model_reference_sample")
    current = drift.drift_population(
        extract_features(engine, as_of, rules, horizon_days=settings.horizon_days),
        rules.min_matured_bills,
        settings.drift_active_days,
    )
    features = list(champion.feature_columns)
    table = drift.feature_drift(reference, current, features, bins=settings.drift_bins, ks_alpha=settings.drift_ks_alpha)
    shift = None
    if len(current):
        ref_pred = predict_proba_frame(champion.model, reference[features], threads=settings.model_threads).idxmax(axis=1)
        cur_pred = predict_proba_frame(champion.model, current[features], threads=settings.model_threads).idxmax(axis=1)
        shift = drift.category_share_shift(drift.category_shares(ref_pred), drift.category_shares(cur_pred))
    log.info("drift as of %s: %d reference rows, %d current rows", as_of, len(reference), len(current))
    return DriftMeasurement(table=table, category_shift=shift, n_reference=len(reference), n_current=len(current))


# ---------------------------------------------------------------- performance decay
def measure_performance_decay(engine: Engine, as_of: date, settings, rules) -> drift.PerformanceDecay:
    """Realized macro-F1 of the latest scoring run whose performance window has matured by ``as_of``.

    Takes the latest ``as_of_date`` in ``customer_category_history`` on or
    before ``as_of - H``; compares the predicted ``category`` of its customers
    that were not ``new`` with their performance-window labels (the rules on
    the bills maturing in (T, T+H], ``sql/performance_labels.sql``), and sets
    ``expected_macro_f1`` to the holdout macro-F1 recorded in the registry for
    the model version that made most of those predictions.  Returns a
    :class:`payer_scoring.drift.PerformanceDecay` whose ``note`` says why nothing was
    measured (no such run, too few matured predictions).
    """
    horizon = settings.horizon_days
    cutoff = as_of - timedelta(days=horizon)
    with engine.connect() as conn:
        scored_on = conn.execute(
            sa.text("SELECT max(as_of_date) FROM customer_category_history WHERE as_of_date <= :cutoff"),
            {"cutoff": cutoff},
        ).scalar()
        if scored_on is None:
            return drift.PerformanceDecay(note=f"no scoring run on or before {cutoff} (as-of minus {horizon} days)")
        predictions = pd.read_sql(
            sa.text(
                "SELECT company_id, customer_id, category, risk_score, model_version FROM customer_category_history"
                " WHERE as_of_date = :d AND category <> 'new'"
            ),
            conn,
            params={"d": scored_on},
        )
    labels = compute_labels(engine, scored_on, horizon, rules)
    joined = predictions.merge(labels[["company_id", "customer_id", "label"]], on=["company_id", "customer_id"])
    decay = drift.PerformanceDecay(predictions_as_of=scored_on.isoformat(), n=len(joined))
    if len(joined) < settings.decay_min_predictions:
        decay.note = (
            f"{len(joined)} matured predictions from {scored_on}, fewer than {settings.decay_min_predictions} "
            "(PAYER_SCORING_DECAY_MIN_PREDICTIONS)"
        )
        return decay
    version = joined["model_version"].value_counts().idxmax()
    joined = joined[joined["model_version"] == version]
    with engine.connect() as conn:
        metrics = conn.execute(sa.text("SELECT metrics FROM model_registry WHERE version = :v"), {"v": version}).scalar()
    decay.model_version = version
    decay.n = len(joined)
    decay.realized_macro_f1 = drift.macro_f1(joined["label"], joined["category"])
    if metrics and "model" in metrics:
        decay.expected_macro_f1 = float(metrics["model"]["macro_f1"])
    else:
        decay.note = f"model {version} has no holdout macro-F1 in model_registry"
    # the risk score (issue 11): realized AUC and Brier of the published risk score
    # against the model's holdout figures
    risky = joined[joined["risk_score"].notna()]
    expected_risk = ((metrics or {}).get("risk") or {}).get("risk") or {}
    if len(risky) and expected_risk:
        y = link_targets(risky["label"])[:, LINKS.index(rules.risk_outcome)]
        realized = score_metrics(y, risky["risk_score"].to_numpy(dtype=float))
        decay.realized_risk_auc = _finite(realized["auc"])
        decay.realized_risk_brier = _finite(realized["brier"])
        decay.expected_risk_auc = _finite(expected_risk.get("auc"))
        decay.expected_risk_brier = _finite(expected_risk.get("brier"))
    return decay


def champion_age_days(champion, as_of: date) -> int | None:
    """Days from the as-of date the champion was trained at to ``as_of`` (None when unknown)."""
    trained = champion.metadata.get("as_of") or champion.metadata.get("training_end")
    if not trained:
        return None
    return (as_of - date.fromisoformat(str(trained)[:10])).days


# ---------------------------------------------------------------- champion vs challenger
def evaluate_on_latest_holdout(
    engine: Engine, as_of: date, models: dict, settings, rules, holdout=None, holdout_dates: tuple = ()
) -> dict:
    """Metrics of each loaded model in ``models`` ({role: Champion}) on the same latest matured holdout.

    The holdout is the one ``payer-scoring train`` uses for ``as_of``
    (``models.training``: the snapshot(s) at as_of - H); pass the frame and its
    dates as ``holdout``/``holdout_dates`` when training just built them, so
    they are not queried twice.  Returns
    ``{"holdout_as_of": [...], "n": rows, role: {macro_f1, log_loss, balanced_accuracy, ...}}``.
    Raises ``models.training.TrainingError`` when the holdout has no labelled row.
    """
    if holdout is None:
        bounds = data_bounds(engine)
        if bounds is None:
            raise TrainingError("payments is empty: load or generate data first")
        plan = plan_snapshots(
            as_of, bounds[0], settings.horizon_days, settings.snapshot_every_days,
            settings.training_window_days, settings.min_history_days, settings.holdout_snapshots,
        )
        holdout_dates = tuple(plan.holdout)
        holdout = build_training_set(engine, list(holdout_dates), rules, settings.horizon_days)
    if holdout.empty:
        raise TrainingError(f"as of {as_of}: no labelled customers in the holdout snapshot(s) {list(holdout_dates)}")
    out: dict = {"holdout_as_of": [d.isoformat() for d in holdout_dates], "n": int(len(holdout))}
    k = LINKS.index(rules.risk_outcome)
    y = link_targets(holdout["label"])[:, k]
    for role, model in models.items():
        proba = predict_proba_frame(model.model, holdout[model.feature_columns], threads=settings.model_threads).to_numpy()
        categories = None
        if hasattr(model.model, "score"):
            scored = model.model.score(holdout, reasons=False, threads=settings.model_threads)
            categories = scored["category"].to_numpy()
            risk = scored["risk_score"].to_numpy(dtype=float)
        else:  # a multiclass model: P(class above the outcome's threshold)
            risk = proba[:, k + 1:].sum(axis=1)
        metrics = classification_metrics(holdout["label"], proba, categories)
        risk_metrics = score_metrics(y, risk)
        metrics |= {"risk_auc": risk_metrics["auc"], "risk_brier": risk_metrics["brier"], "risk_ece": risk_metrics["ece"]}
        out[role] = {"version": model.version, **metrics}
    return out


# ---------------------------------------------------------------- backtest of past scoring runs
def backtest_scoring_runs(
    engine: Engine,
    as_of: date,
    settings,
    rules,
    *,
    first: date | None = None,
    last: date | None = None,
    flow_run_id: str | None = None,
) -> list[dict]:
    """Backtest every past scoring run in [first, last] whose window has matured by ``as_of``; write ``backtest_reports``.

    A run of date T is backtested when T + H <= ``as_of`` (H =
    ``settings.horizon_days``): what was published at T
    (``customer_category_history``) against the labels of (T, T + H]
    (:func:`models.risk_backtest.scored_backtest`).  The observed category is
    turned into a probability by the publishing model's training transition
    table (its ``baseline_statistics``), so it gets a Brier score and an ECE
    too.  One row per date is upserted into ``backtest_reports``.  Returns the
    reports, oldest first (each with ``as_of_date``).
    """
    matured = as_of - timedelta(days=settings.horizon_days)
    last = min(last, matured) if last else matured
    reports = []
    stats_of: dict[str, dict | None] = {}
    for day in results.scoring_dates(engine, first, last):
        scored = results.read_scored_history(engine, day)
        labels = compute_labels(engine, day, settings.horizon_days, rules)
        version = scored["model_version"].value_counts().index[0] if len(scored) else None
        if version not in stats_of:
            with engine.connect() as conn:
                meta = conn.execute(sa.text("SELECT metadata FROM model_registry WHERE version = :v"), {"v": version}).scalar()
            stats_of[version] = (meta or {}).get("baseline_statistics")
        stats = stats_of[version]
        rate = outcome_rate_by_observed(stats, rules.risk_outcome) if stats else None
        report = scored_backtest(scored, labels, rules, rules.risk_outcome, observed_rate=rate)
        report["as_of_date"] = day
        results.write_backtest_report(engine, report, horizon_days=settings.horizon_days, flow_run_id=flow_run_id)
        reports.append(report)
        log.info("backtest of the run of %s: %s", day, {k: report[k] for k in ("n_with_outcome", "observed_auc", "category_auc")})
    return reports


def backtest_table_rows(reports: list[dict]) -> list[dict]:
    """One row per backtested date for the ``backtest`` table artifact (figures rounded to 3 decimals)."""
    def r(value):
        return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else round(float(value), 3)

    rows = []
    for rep in reports:
        risk = rep.get("risk") or {}
        observed = rep.get("observed") or {}
        rows.append({
            "as_of": str(rep["as_of_date"]),
            "model": rep.get("model_version"),
            "with outcome": rep["n_with_outcome"],
            "risk AUC": r(risk.get("auc")),
            "observed AUC": r(rep.get("observed_auc")),
            "category AUC": r(rep.get("category_auc")),
            "risk Brier": r(risk.get("brier")),
            "observed Brier": r(observed.get("brier")),
            "risk ECE": r(risk.get("ece")),
            "macro-F1 category": r((rep.get("macro_f1") or {}).get("category")),
            "macro-F1 observed": r((rep.get("macro_f1") or {}).get("observed")),
        })
    return rows


def apply_promotion(engine: Engine, version: str, promote: bool) -> None:
    """Promote the challenger (old champion archived, one transaction) or archive it."""
    if promote:
        registry.promote(engine, version)
    else:
        registry.archive(engine, version)


# ---------------------------------------------------------------- policy from settings
def retrain_policy(settings) -> drift.RetrainPolicy:
    """Trigger thresholds from the settings (``PAYER_SCORING_DRIFT_*`` / ``RETRAIN_*``)."""
    return drift.RetrainPolicy(
        drifted_share_max=settings.drift_drifted_share_max,
        key_features=settings.key_features(),
        key_feature_psi=settings.drift_key_feature_psi,
        f1_drop=settings.retrain_f1_drop,
        auc_drop=settings.retrain_auc_drop,
        brier_increase=settings.retrain_brier_increase,
        max_champion_age_days=settings.retrain_max_champion_age_days,
        exempt_features=settings.exempt_features(),
    )


def promotion_rule(settings) -> drift.PromotionRule:
    """Promotion margins from the settings (``PAYER_SCORING_PROMOTE_*``)."""
    return drift.PromotionRule(
        max_f1_drop=settings.promote_max_f1_drop,
        max_log_loss_increase=settings.promote_max_log_loss_increase,
        max_auc_drop=settings.promote_max_auc_drop,
        max_brier_increase=settings.promote_max_brier_increase,
    )


# ---------------------------------------------------------------- report
REPORT_COLUMNS = (
    "flow_run_id", "as_of_date", "champion_version", "challenger_version", "n_reference", "n_current",
    "feature_drift", "category_shift", "performance", "triggers", "decision", "reason",
    "champion_metrics", "challenger_metrics", "policy",
)  # fmt: skip
_JSON_COLUMNS = {"feature_drift", "category_shift", "performance", "champion_metrics", "challenger_metrics", "policy"}


def new_report(
    as_of: date, champion, measured: DriftMeasurement | None, decay: drift.PerformanceDecay,
    decision: drift.RetrainDecision, settings, flow_run_id: str | None = None,
) -> dict:
    """The ``drift_reports`` row of a run as a dict (decision ``no_retrain`` until a challenger is judged)."""
    from dataclasses import asdict

    return {
        "flow_run_id": flow_run_id,
        "as_of_date": as_of,
        "champion_version": None if champion is None else champion.version,
        "challenger_version": None,
        "n_reference": None if measured is None else measured.n_reference,
        "n_current": None if measured is None else measured.n_current,
        "feature_drift": {} if measured is None else measured.feature_json(),
        "category_shift": None if measured is None else measured.category_shift,
        "performance": decay.to_dict(),
        "triggers": list(decision.triggers),
        "decision": "no_retrain",
        "reason": decision.reason,
        "champion_metrics": None,
        "challenger_metrics": None,
        "policy": {
            **asdict(retrain_policy(settings)),
            **{f"promote_{k}": v for k, v in asdict(promotion_rule(settings)).items()},
            "drift_bins": settings.drift_bins,
            "drift_active_days": settings.drift_active_days,
            "drift_ks_alpha": settings.drift_ks_alpha,
        },
    }


def judged_report(report: dict, challenger_version: str, evaluation: dict, promote: bool, reason: str, trigger_reason: str) -> dict:
    """``report`` with the challenger's verdict: decision promoted/rejected, both models' holdout metrics."""
    extra = {"holdout_as_of": evaluation["holdout_as_of"]}
    return {
        **report,
        "challenger_version": challenger_version,
        "decision": "promoted" if promote else "rejected",
        "reason": f"{reason} (retrained because: {trigger_reason})",
        "champion_metrics": None if "champion" not in evaluation else {**evaluation["champion"], **extra},
        "challenger_metrics": {**evaluation["challenger"], **extra},
    }


def failed_report(report: dict, exc: BaseException) -> dict:
    """``report`` of a run whose retraining failed (decision ``failed``, the error as the reason)."""
    return {**report, "challenger_version": None, "decision": "failed", "reason": f"retrain triggered ({report['reason']}) but failed: {exc}"}


def write_drift_report(engine: Engine, report: dict) -> int:
    """Insert one ``drift_reports`` row (keys: ``REPORT_COLUMNS``); return its id."""
    missing = [c for c in ("as_of_date", "decision", "reason") if report.get(c) is None]
    if missing:
        raise ValueError(f"drift report lacks {', '.join(missing)}")
    params = {c: report.get(c) for c in REPORT_COLUMNS}
    for column in _JSON_COLUMNS:
        if params[column] is not None:
            params[column] = to_json(_clean_json(params[column]))
    params["feature_drift"] = params["feature_drift"] or "{}"
    params["policy"] = params["policy"] or "{}"
    params["triggers"] = list(params["triggers"] or [])
    values = ", ".join(f"CAST(:{c} AS jsonb)" if c in _JSON_COLUMNS else f":{c}" for c in REPORT_COLUMNS)
    with engine.begin() as conn:
        return conn.execute(
            sa.text(f"INSERT INTO drift_reports ({', '.join(REPORT_COLUMNS)}) VALUES ({values}) RETURNING id"),  # fixed column list
            params,
        ).scalar_one()


def _clean_json(value):
    """``value`` with NaN/inf floats as None (JSON has no NaN) and tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return _finite(value)


def drift_table_rows(table: pd.DataFrame) -> list[dict]:
    """Rows of the drift artifact: feature, PSI, KS statistic and p-value, flag (PSI level), drifted; worst PSI first."""
    rows = []
    for r in table.sort_values("psi", ascending=False, na_position="last").itertuples():
        rows.append(
            {
                "feature": r.feature,
                "psi": None if math.isnan(r.psi) else round(r.psi, 4),
                "ks_statistic": None if math.isnan(r.ks_statistic) else round(r.ks_statistic, 4),
                "ks_pvalue": None if math.isnan(r.ks_pvalue) else float(f"{r.ks_pvalue:.3g}"),
                "flag": r.level if r.drifted or r.level in ("stable", "unknown") else f"{r.level} (KS not significant: noise)",
                "drifted": bool(r.drifted),
            }
        )
    return rows


METRIC_ROWS = ("macro_f1", "log_loss", "balanced_accuracy", "accuracy", "risk_auc", "risk_brier", "risk_ece", "n")


def metrics_table_rows(champion: dict | None, challenger: dict | None) -> list[dict]:
    """Rows of the champion-vs-challenger artifact: one per metric, a column per model."""
    rows = []
    for metric in METRIC_ROWS:
        row = {"metric": metric}
        for role, metrics in (("champion", champion), ("challenger", challenger)):
            value = (metrics or {}).get(metric)
            row[role] = round(value, 4) if isinstance(value, float) else value
        rows.append(row)
    rows.insert(0, {"metric": "version", "champion": (champion or {}).get("version"), "challenger": (challenger or {}).get("version")})
    return rows


def decision_markdown(report: dict) -> str:
    """Markdown of the run's decision: what was compared, the triggers, the decision and why."""
    lines = [
        f"# Weekly retrain as of {report['as_of_date']}",
        "",
        f"**Decision: {report['decision']}** — {report['reason']}",
        "",
        f"* champion: `{report.get('champion_version') or 'none'}`; challenger: `{report.get('challenger_version') or 'none'}`",
        f"* triggers fired: {', '.join(report.get('triggers') or []) or 'none'}",
        f"* drift sample sizes: reference {report.get('n_reference')}, current {report.get('n_current')}",
    ]
    drifted = {k: v for k, v in (report.get("feature_drift") or {}).items() if v.get("drifted")}
    if drifted:
        lines.append(
            "* drifted features (PSI >= 0.10 and KS significant): "
            + ", ".join(f"{k} ({v['psi']:.3f}, {v['level']})" for k, v in sorted(drifted.items(), key=lambda kv: -kv[1]["psi"]))
        )
    shift = report.get("category_shift")
    if shift:
        lines.append(
            "* predicted-category shares (reference -> current): "
            + ", ".join(f"{c} {shift['reference'][c]:.1%} -> {shift['current'][c]:.1%}" for c in shift["reference"])
            + (f"; PSI {shift['psi']:.3f}" if shift.get("psi") is not None else "")
        )
    perf = report.get("performance") or {}
    if perf.get("realized_macro_f1") is not None:
        lines.append(
            f"* realized macro-F1 {perf['realized_macro_f1']:.3f} on {perf['n']} matured predictions of "
            f"{perf['predictions_as_of']} (model holdout {perf.get('expected_macro_f1')})"
        )
    elif perf.get("note"):
        lines.append(f"* performance decay not measured: {perf['note']}")
    return "\n".join(lines) + "\n"


def decide_retrain(champion, force: bool, measured: DriftMeasurement | None, decay: drift.PerformanceDecay,
                   as_of: date, policy: drift.RetrainPolicy) -> drift.RetrainDecision:
    """:func:`payer_scoring.drift.decide_retrain` on this run's measurements (``champion`` None: the first model)."""
    return drift.decide_retrain(
        has_champion=champion is not None,
        force=force,
        drift=None if measured is None else measured.table,
        decay=decay,
        champion_age_days=None if champion is None else champion_age_days(champion, as_of),
        policy=policy,
    )
