"""Daily scoring (deployment ``daily-scoring``, flow ``score-customers``).

A run as of date T (default: today in ``PAYER_SCORING_TIMEZONE``, capped at the
data's last date: :mod:`payer_scoring.asof`) produces:

* ``customer_categories``: the current category, class probabilities, risk
  score and reason codes of every customer with a bill issued by T (even one
  whose every bill was cancelled: category ``new``), unless a newer as-of
  already wrote that customer; the category is held at the previous run's
  unless a bill event or the hysteresis margin says otherwise; and
  ``customer_category_history`` rows for T - both written in one transaction;
* ``quarantined_payments`` rows (this run's id) for bills failing row-level
  expectations; they are left out of the features;
* three Prefect artifacts: ``validation-summary`` (markdown), ``category-
  distribution`` (table) and ``run-summary`` (markdown).

Before anything is read: every expectation suite is loaded strictly, the as-of
is checked (:mod:`payer_scoring.asof`: no date after tomorrow or far beyond the
data; default today capped at the data's last date), and the champion is
loaded and must share the settings' horizon and rules version.  A critical
expectation failure, a missing champion or an unreachable database fail the
run before anything is written.  Tasks that touch the database are
retried with backoff on transient errors only (``tasks/retries.py``); the flow
itself has no retries.
"""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from payer_scoring import reports
from payer_scoring.rules import load_rules
from payer_scoring.settings import Settings
from tasks.retries import db_retry_options
from tasks.run_logs import project_loggers_at_info
from tasks.scoring import (
    StepClock,
    check_suites,
    extract_features,
    load_champion,
    predict_categories,
    publish_category_distribution,
    stabilise_categories,
    publish_run_summary,
    resolve_as_of,
    validate_features,
    validate_payments,
    validate_scores,
    validation_summary,
    write_results,
)


def _run_name() -> str:
    return f"score-customers-{flow_run.parameters.get('as_of') or Settings().today()}"


@flow(name="score-customers", flow_run_name=_run_name)
def score_customers(as_of: date | None = None) -> dict:
    """Suites, as-of, champion -> validate -> features as of ``as_of`` -> validate -> predict -> hysteresis -> validate -> write.

    Returns the run summary (customers scored, quarantined bills, model
    version, step durations).  Raises ``SuiteError``, ``AsOfError``,
    ``ValidationFailed``, ``NoChampionError``, ``IncompatibleChampionError``,
    ``WriteLockBusy``, ``DatabaseError`` (no payments) or the database error after its retries.
    """
    project_loggers_at_info()
    logger = get_run_logger()
    settings = Settings()
    run_id = str(flow_run.id)
    rules = load_rules(settings.rules_file)
    db = db_retry_options(settings)
    clock = StepClock()

    clock.run(check_suites)
    as_of = clock.run(resolve_as_of.with_options(**db), settings, as_of)
    champion = clock.run(load_champion.with_options(**db), settings, rules)
    with validation_summary() as checks:
        tomorrow = settings.today() + timedelta(days=1)
        checks.add(clock.run(validate_payments.with_options(**db), settings, as_of, run_id, tomorrow))
        logger.info("validated payments as of %s: %d bills quarantined, %d warnings", as_of, checks.quarantined_bills, checks.warnings)
        features = clock.run(extract_features.with_options(**db), settings, as_of, rules, exclude_run_id=run_id)
        logger.info("read features of %d customers as of %s", len(features), as_of)
        checks.add(clock.run(validate_features, features))
        scores = clock.run(predict_categories, settings, champion, features, rules)
        scores = clock.run(stabilise_categories.with_options(**db), settings, scores, as_of, rules, champion)
        checks.add(clock.run(validate_scores, scores, len(features)))
        logger.info("validated features and scores: %d warnings in total", checks.warnings)

    written = clock.run(write_results.with_options(**db), settings, scores, as_of, champion.version, run_id)
    shares = publish_category_distribution(scores, as_of)
    logger.info(
        "wrote as of %s with model %s: %d customers scored, %d current rows written, %d kept (newer as-of), %d history rows",
        as_of, champion.version, written.rows_staged, written.current_written, written.current_kept_newer, written.history_written,
    )
    logger.info("decided categories: %s", ", ".join(f"{r['category']} {r['customers']}" for r in shares))
    summary = reports.run_summary(as_of, champion.version, checks.quarantined_bills, checks.warnings, written, clock.seconds)
    return publish_run_summary(summary)
