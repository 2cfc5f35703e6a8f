"""Daily scoring (deployment ``daily-scoring``, flow ``score-customers``).

A run as of date T (default: today in ``PAYER_SCORING_TIMEZONE``) produces:

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

A critical expectation failure, a missing champion or an unreachable database
fail the run before anything is written.  Tasks that touch the database are
retried with backoff on transient errors only (``tasks/retries.py``); the flow
itself has no retries.
"""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow
from prefect.runtime import flow_run

from payer_scoring import reports
from payer_scoring.rules import load_rules
from payer_scoring.settings import Settings
from tasks.retries import db_retry_options
from tasks.scoring import (
    StepClock,
    extract_features,
    load_champion,
    predict_categories,
    publish_category_distribution,
    stabilise_categories,
    publish_run_summary,
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
    """Validate -> features as of ``as_of`` -> validate -> champion -> predict -> hysteresis -> validate -> write.

    Returns the run summary (customers scored, quarantined bills, model
    version, step durations).  Raises ``ValidationFailed``, ``NoChampionError``,
    ``WriteLockBusy`` or the database error after its retries.
    """
    settings = Settings()
    as_of = as_of or settings.today()
    run_id = str(flow_run.id)
    rules = load_rules(settings.rules_file)
    db = db_retry_options(settings)
    clock = StepClock()

    with validation_summary() as checks:
        tomorrow = settings.today() + timedelta(days=1)
        checks.add(clock.run(validate_payments.with_options(**db), settings, as_of, run_id, tomorrow))
        features = clock.run(extract_features.with_options(**db), settings, as_of, rules, exclude_run_id=run_id)
        checks.add(clock.run(validate_features, features))
        champion = clock.run(load_champion.with_options(**db), settings)
        scores = clock.run(predict_categories, settings, champion, features, rules)
        scores = clock.run(stabilise_categories.with_options(**db), settings, scores, as_of, rules, champion)
        checks.add(clock.run(validate_scores, scores, len(features)))

    written = clock.run(write_results.with_options(**db), settings, scores, as_of, champion.version, run_id)
    publish_category_distribution(scores, as_of)
    summary = reports.run_summary(as_of, champion.version, checks.quarantined_bills, checks.warnings, written, clock.seconds)
    return publish_run_summary(summary)
