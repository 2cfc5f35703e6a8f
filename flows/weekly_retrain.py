"""Weekly retrain on drift (deployment ``weekly-retrain``, flow ``retrain-on-drift``).

A run produces:

* one ``drift_reports`` row: per-feature PSI and KS of the current population
  against the champion's reference sample, the predicted-category shift, the
  realized-vs-holdout macro-F1 of matured predictions, the triggers that
  fired, the decision (``no_retrain`` / ``promoted`` / ``rejected`` /
  ``failed``) with its reason, and both models' holdout metrics;
* three Prefect artifacts: ``drift-table``, ``retrain-decision`` (markdown)
  and ``champion-vs-challenger`` (when a challenger was trained);
* when a trigger fired: a challenger trained on the latest window and judged
  against the champion on the same latest matured holdout; it becomes the
  champion (the old one archived, one transaction) only when it is not worse
  by more than the configured margins, otherwise it is archived.

Triggers, thresholds and the promotion rule: ``tasks/drift.py``; settings:
README "Weekly retrain on drift".
"""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from models.training import TrainingError
from payer_scoring.rules import load_rules
from payer_scoring.settings import get_settings
from tasks.drift import promotion_decision
from tasks.retrain import (
    apply_promotion_task,
    decide_retrain_task,
    drift_table_rows,
    evaluate_models_task,
    failed_report,
    judged_report,
    load_current_champion,
    measure_drift_task,
    measure_performance_decay_task,
    new_report,
    promotion_rule,
    publish_artifacts,
    resolve_as_of_task,
    retrain_policy,
    train_challenger,
    write_drift_report_task,
)


def _run_name() -> str:
    # as_of None: today's date (the flow may still cap it at the data's last date)
    as_of = flow_run.parameters.get("as_of") or f"today-{get_settings().today()}"
    return f"retrain-{as_of}{'-forced' if flow_run.parameters.get('force') else ''}"


@flow(name="retrain-on-drift", flow_run_name=_run_name)
def retrain_on_drift(force: bool = False, as_of: date | None = None) -> dict:
    """Drift report -> retrain decision -> (if triggered) challenger vs champion -> promote or archive.

    ``as_of`` defaults to today in the configured timezone, capped at the
    data's last date.  Returns the drift report (with its ``id``).
    """
    logger = get_run_logger()
    settings = get_settings()
    rules = load_rules(settings.rules_file)
    as_of = resolve_as_of_task(as_of, settings)

    champion = load_current_champion()
    measured = measure_drift_task(as_of, champion, settings, rules)
    decay = measure_performance_decay_task(as_of, settings, rules)
    decision = decide_retrain_task(champion, force, measured, decay, as_of, retrain_policy(settings))
    report = new_report(as_of, champion, measured, decay, decision, settings, flow_run_id=flow_run.id)

    if decision.retrain:
        try:
            trained = train_challenger(as_of, settings, rules)
            evaluation = evaluate_models_task(as_of, champion, trained, settings, rules)
        except TrainingError as exc:
            report = failed_report(report, exc)
            write_drift_report_task(report)
            publish_artifacts(report, [] if measured is None else drift_table_rows(measured.table))
            raise
        promote, reason = promotion_decision(evaluation.get("champion"), evaluation["challenger"], promotion_rule(settings))
        if trained.entry.status == "challenger":  # the first model is registered as champion already
            apply_promotion_task(trained.entry.version, promote)
        report = judged_report(report, trained.entry.version, evaluation, promote, reason, decision.reason)

    report["id"] = write_drift_report_task(report)
    publish_artifacts(report, [] if measured is None else drift_table_rows(measured.table))
    logger.info("retrain as of %s: %s (%s)", as_of, report["decision"], report["reason"])
    return report
