"""Weekly retrain on drift (deployment ``weekly-retrain``, flow ``retrain-on-drift``).

A run produces:

* one ``drift_reports`` row: per-feature PSI and KS of the current population
  against the champion's reference sample, the predicted-category shift, the
  realized-vs-holdout macro-F1 and risk-score AUC / Brier of matured
  predictions, the triggers that
  fired, the decision (``no_retrain`` / ``promoted`` / ``rejected`` /
  ``failed``) with its reason, and both models' holdout metrics;
* ``backtest_reports`` rows: every scoring run of the last 3 horizons whose
  window has matured, against what its customers did (risk-score and
  observed-category AUC, Brier, ECE, bad rate per category, macro-F1);
* Prefect artifacts: ``backtest`` (table), ``risk-pictures`` (the risk
  score's calibration curve on the newest matured run and the category
  shares of the last 8 weeks, as pictures), ``drift-table``, ``drift-chart``,
  ``retrain-decision`` (markdown) and ``champion-vs-challenger`` (when a
  challenger was trained);
* when a trigger fired: a challenger trained on the latest window and judged
  against the champion on the same latest matured holdout; it becomes the
  champion (the old one archived, one transaction) only when it is not worse
  by more than the configured margins, otherwise it is archived.

Triggers, thresholds and the promotion rule: ``payer_scoring/drift.py``;
settings: README "Weekly retrain on drift".  Tasks that touch the database
are retried on transient errors only (``tasks/retries.py``).
"""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from models import monitoring
from models.training import TrainingError
from payer_scoring.drift import promotion_decision
from payer_scoring.rules import load_rules
from payer_scoring.settings import Settings
from tasks.retraining import (
    apply_promotion,
    backtest_scoring_runs,
    decide_retrain,
    evaluate_on_latest_holdout,
    find_champion,
    measure_drift,
    measure_performance_decay,
    publish_backtest,
    publish_risk_pictures,
    publish_retrain_artifacts,
    resolve_as_of,
    train,
    write_drift_report,
)
from tasks.retries import db_retry_options
from tasks.run_logs import project_loggers_at_info, rename_flow_run


def _run_name(as_of: date | str | None = None) -> str:
    # as_of None: today's date; the flow renames the run once the as-of is
    # resolved (capped at the data's last date), so name and artifacts agree.
    as_of = as_of or flow_run.parameters.get("as_of") or f"today-{Settings().today()}"
    return f"retrain-{as_of}{'-forced' if flow_run.parameters.get('force') else ''}"


@flow(name="retrain-on-drift", flow_run_name=_run_name)
def retrain_on_drift(force: bool = False, as_of: date | None = None) -> dict:
    """Drift report -> retrain decision -> (if triggered) challenger vs champion -> promote or archive.

    ``as_of`` defaults to today in the configured timezone, capped at the
    data's last date.  Returns the drift report (with its ``id``).
    """
    project_loggers_at_info()
    logger = get_run_logger()
    settings = Settings()
    rules = load_rules(settings.rules_file)
    db = db_retry_options(settings)
    requested = as_of
    as_of = resolve_as_of.with_options(**db)(settings, as_of)
    rename_flow_run(_run_name(as_of))
    if requested is None:
        logger.info("as-of %s (today %s, capped at the data's last date)", as_of, settings.today())

    champion = find_champion.with_options(**db)(settings)
    measured = measure_drift.with_options(**db)(settings, as_of, champion, rules)
    backtests = backtest_scoring_runs.with_options(**db)(settings, as_of, rules, str(flow_run.id))
    publish_backtest(backtests, as_of)
    publish_risk_pictures.with_options(**db)(settings, as_of, backtests)
    decay = measure_performance_decay.with_options(**db)(settings, as_of, rules)
    logger.info(
        "read: champion %s, %s reference / %s current customers, %s matured predictions",
        None if champion is None else champion.version,
        None if measured is None else measured.n_reference, None if measured is None else measured.n_current,
        decay.n,
    )
    decision = decide_retrain(champion, force, measured, decay, as_of, monitoring.retrain_policy(settings))
    logger.info("decided: %s (%s)", "retrain" if decision.retrain else "no retrain", decision.reason)
    report = monitoring.new_report(as_of, champion, measured, decay, decision, settings, flow_run_id=flow_run.id)
    drift_rows = [] if measured is None else monitoring.drift_table_rows(measured.table)

    if decision.retrain:
        try:
            trained = train.with_options(**db)(settings, as_of, rules)
            evaluation = evaluate_on_latest_holdout.with_options(**db)(settings, as_of, champion, trained, rules)
        except TrainingError as exc:
            report = monitoring.failed_report(report, exc)
            write_drift_report.with_options(**db)(settings, report)
            publish_retrain_artifacts(report, drift_rows)
            raise
        promote, reason = promotion_decision(evaluation.get("champion"), evaluation["challenger"], monitoring.promotion_rule(settings))
        if trained.entry.status == "challenger":  # the first model is registered as champion already
            apply_promotion.with_options(**db)(settings, trained.entry.version, promote)
        report = monitoring.judged_report(report, trained.entry.version, evaluation, promote, reason, decision.reason)

    report["id"] = write_drift_report.with_options(**db)(settings, report)
    publish_retrain_artifacts(report, drift_rows)
    logger.info("wrote drift report %s as of %s: %s (%s)", report["id"], as_of, report["decision"], report["reason"])
    return report
