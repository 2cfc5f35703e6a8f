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

import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pandas as pd
from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.runtime import flow_run

from payer_scoring import reports
from payer_scoring.rules import load_rules
from payer_scoring.settings import Settings
from tasks.retries import db_retry_options
from tasks.run_logs import project_loggers_at_info
from tasks.scoring import (
    StepClock,
    check_suites,
    create_staging,
    dask_task_runner,
    drop_staging,
    extract_features,
    load_champion,
    predict_categories,
    publish_category_distribution,
    stabilise_categories,
    publish_run_summary,
    publish_staging,
    resolve_as_of,
    score_partition,
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
        if settings.task_runner == "dask":
            written, categories = _score_partitioned(settings, as_of, rules, champion, run_id, checks, clock)
        else:
            features = clock.run(extract_features.with_options(**db), settings, as_of, rules, exclude_run_id=run_id)
            logger.info("read features of %d customers as of %s", len(features), as_of)
            checks.add(clock.run(validate_features, features))
            scores = clock.run(predict_categories, settings, champion, features, rules)
            scores = clock.run(stabilise_categories.with_options(**db), settings, scores, as_of, rules, champion)
            checks.add(clock.run(validate_scores, scores, len(features)))
            categories = scores[["category"]]
        logger.info("validated features and scores: %d warnings in total", checks.warnings)

    if settings.task_runner != "dask":
        written = clock.run(write_results.with_options(**db), settings, scores, as_of, champion.version, run_id)
    shares = publish_category_distribution(categories, as_of)
    logger.info(
        "wrote as of %s with model %s: %d customers scored, %d current rows written, %d kept (newer as-of), %d history rows",
        as_of, champion.version, written.rows_staged, written.current_written, written.current_kept_newer, written.history_written,
    )
    logger.info("decided categories: %s", ", ".join(f"{r['category']} {r['customers']}" for r in shares))
    summary = reports.run_summary(as_of, champion.version, checks.quarantined_bills, checks.warnings, written, clock.seconds)
    return publish_run_summary(summary)


def _score_partitioned(settings: Settings, as_of: date, rules, champion, run_id: str, checks, clock: StepClock):
    """``settings.task_runner == "dask"``: the customers in ``settings.dask_partitions`` partitions on Dask.

    Each partition (task ``score_partition`` on the cluster of
    :func:`tasks.scoring.dask_task_runner`) computes its features, predicts,
    applies the hysteresis and COPYs into one per-run staging table; when every
    partition has succeeded, one transaction swaps the staged rows into place
    (``publish_staging``).  A failed partition fails the run and nothing is
    published; the staging table is dropped either way.  Returns the write
    summary and a frame of the decided categories (for the distribution artifact).
    """
    logger = get_run_logger()
    db = db_retry_options(settings)
    count = settings.dask_partitions
    scored_at = datetime.now(timezone.utc)
    staging = clock.run(create_staging.with_options(**db), settings, as_of)
    try:
        started = time.perf_counter()
        with dask_task_runner(settings) as runner:
            futures = [
                runner.submit(
                    score_partition.with_options(**db),
                    parameters={
                        "settings": settings, "as_of": as_of, "rules": rules, "champion": champion,
                        "partition": (index, count), "staging": staging, "flow_run_id": run_id, "scored_at": scored_at,
                    },
                )
                for index in range(count)
            ]
            wait(futures)  # every partition finishes (or fails) before anything is decided
            parts = [future.result() for future in futures]  # raises the first failed partition's error
        clock.seconds["score_partitions"] = round(time.perf_counter() - started, 3)
        if not any(part.customers for part in parts):
            raise ValueError(f"as of {as_of}: no customer to score in any of the {count} partitions")
        for part in parts:
            if part.customers:
                checks.add(part.features_report)
                checks.add(part.scores_report)
        logger.info(
            "scored %d customers in %d partitions (%s); %d categories held",
            sum(p.customers for p in parts), count, ", ".join(str(p.customers) for p in parts), sum(p.categories_held for p in parts),
        )
        written = clock.run(publish_staging.with_options(**db), settings, staging, as_of)
    finally:
        drop_staging(settings, staging)
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part.category_counts)
    return written, pd.DataFrame({"category": [code for code, n in total.items() for _ in range(n)]})
