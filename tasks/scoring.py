"""Steps of the daily scoring run that are neither features, prediction, validation nor writing.

* :func:`db_retry_options` - the retry policy of the tasks that touch the
  database (extract, validate payments, write): retried with exponential
  backoff, and only on transient database errors (:func:`is_transient_db_error`);
* :func:`load_champion_model` - the champion, sha256-checked by the registry;
* the Prefect artifacts: :class:`validation_summary` (markdown of every
  suite), :func:`publish_category_distribution` (table) and
  :func:`publish_run_summary` (markdown); :class:`StepClock` times the steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from payer_scoring.rules import CATEGORIES
from payer_scoring.settings import Settings
from tasks.validate import ValidationFailed, ValidationReport
from tasks.write import WriteLockBusy, WriteSummary

log = logging.getLogger(__name__)

CATEGORY_LABELS: dict[str, str] = {
    "new": "Novos Pagadores",
    "good": "Bons Pagadores",
    "doubtful": "Pagadores Duvidosos",
    "forgetful": "Pagadores Esquecidos",
    "bad": "Maus Pagadores",
}


# --------------------------------------------------------------------------- retries
def is_transient_db_error(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a lost or refused connection.

    Connection failures surface as SQLAlchemy/psycopg ``OperationalError``
    (also wrapped in :class:`payer_scoring.db.DatabaseError` by ``get_engine``).
    A busy write lock, a failed expectation and every other error are not
    transient: retrying would not help.
    """
    import psycopg

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (WriteLockBusy, ValidationFailed)):
            return False
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return False
        if isinstance(exc, (sa.exc.OperationalError, psycopg.OperationalError)):
            orig = getattr(exc, "orig", None)
            return not isinstance(orig, psycopg.errors.LockNotAvailable)
        if isinstance(exc, sa.exc.DisconnectionError):
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return False


def _retry_on_transient_db_error(task, task_run, state) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable state is not worth a retry
            return False
    retry = is_transient_db_error(exc if isinstance(exc, BaseException) else None)
    if retry:
        log.warning("task %s: transient database error, retrying: %s", task.name, str(exc).splitlines()[0])
    return retry


def db_retry_options(settings: Settings) -> dict[str, Any]:
    """``Task.with_options`` arguments: ``settings.db_retries`` retries, delays doubling from ``db_retry_delay_seconds``."""
    return {
        "retries": settings.db_retries,
        "retry_delay_seconds": exponential_backoff(settings.db_retry_delay_seconds)(settings.db_retries)
        if settings.db_retries
        else 0,
        "retry_jitter_factor": 0.2 if settings.db_retry_delay_seconds else None,
        "retry_condition_fn": _retry_on_transient_db_error,
    }


# --------------------------------------------------------------------------- champion
@task(name="load_champion_model", cache_policy=NO_CACHE)
def load_champion_model():
    """Prefect task: the champion from the registry (artifact sha256 checked before unpickling).

    Raises ``models.registry.NoChampionError`` (message names the command that trains one).
    """
    from models.registry import load_champion
    from payer_scoring.db import get_engine

    champion = load_champion(get_engine())
    log.info("champion model %s", champion.version)
    return champion


# --------------------------------------------------------------------------- timing
class StepClock:
    """Runs steps and records their wall-clock seconds by name (for the run summary)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, step: Callable, *args, **kwargs):
        """Call ``step(*args, **kwargs)``, record its duration under its (task) name, return its result."""
        name = getattr(step, "name", None) or getattr(step, "__name__", "step")
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)


# --------------------------------------------------------------------------- artifacts
class validation_summary:  # noqa: N801 - used as a context manager, reads like a step
    """Collects the suites' reports; on exit publishes the ``validation-summary`` markdown artifact.

    A :class:`ValidationFailed` raised inside the block adds its report (so the
    artifact names the failed expectation) and is re-raised unchanged.
    """

    def __init__(self) -> None:
        self.reports: list[ValidationReport] = []

    def add(self, report: ValidationReport) -> ValidationReport:
        self.reports.append(report)
        return report

    @property
    def quarantined_bills(self) -> int:
        return sum(r.quarantined_bills for r in self.reports)

    @property
    def warnings(self) -> int:
        return sum(len(r.warnings) for r in self.reports)

    def __enter__(self) -> "validation_summary":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, ValidationFailed):
            self.reports.append(exc.report)
        try:
            publish_validation_summary(self.reports, failed=exc is not None)
        except Exception:  # noqa: BLE001 - never hide the run's own error behind an artifact error
            log.exception("could not publish the validation summary artifact")
            if exc is None:
                raise
        return False


def validation_markdown(reports: list[ValidationReport], failed: bool = False) -> str:
    """Markdown of every suite: failed expectations and warnings with observed values and samples."""
    critical = [o for r in reports for o in r.critical_failures]
    if critical:
        head = "## Validation FAILED - nothing was written\n\nCritical: " + "; ".join(f"`{o.name}`" for o in critical)
    elif failed:
        head = "## Validation passed, but the run failed at a later step"
    else:
        head = "## Validation passed"
    return "\n\n".join([head, *(r.markdown() for r in reports)])


def publish_validation_summary(reports: list[ValidationReport], failed: bool = False) -> None:
    """Create the ``validation-summary`` markdown artifact."""
    create_markdown_artifact(
        key="validation-summary",
        markdown=validation_markdown(reports, failed),
        description="Great Expectations results of the scoring run",
    )


def category_distribution(scores: pd.DataFrame) -> list[dict]:
    """Rows {category, label, customers, share} for the five codes, in the fixed code order."""
    counts = scores["category"].value_counts()
    total = int(counts.sum()) or 1
    return [
        {
            "category": code,
            "label": CATEGORY_LABELS[code],
            "customers": int(counts.get(code, 0)),
            "share": round(float(counts.get(code, 0)) / total, 4),
        }
        for code in CATEGORIES
    ]


@task(name="publish_category_distribution", cache_policy=NO_CACHE)
def publish_category_distribution(scores: pd.DataFrame, as_of: date) -> list[dict]:
    """Create the ``category-distribution`` table artifact; return its rows."""
    rows = category_distribution(scores)
    create_table_artifact(key="category-distribution", table=rows, description=f"Customers per category as of {as_of}")
    return rows


@task(name="publish_run_summary", cache_policy=NO_CACHE)
def publish_run_summary(
    as_of: date,
    model_version: str,
    checks: validation_summary,
    written: WriteSummary,
    seconds: dict[str, float],
) -> dict:
    """Create the ``run-summary`` markdown artifact; return the summary as a dict."""
    summary = {
        "as_of": as_of.isoformat(),
        "customers_scored": written.rows_staged,
        "quarantined_bills": checks.quarantined_bills,
        "validation_warnings": checks.warnings,
        "model_version": model_version,
        "current_rows_written": written.current_written,
        "current_rows_kept_newer": written.current_kept_newer,
        "history_rows_written": written.history_written,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 3)},
    }
    lines = [
        f"## Scoring as of {as_of}",
        "",
        f"* customers scored: **{summary['customers_scored']:,}**",
        f"* quarantined bills: {summary['quarantined_bills']:,}",
        f"* validation warnings: {summary['validation_warnings']}",
        f"* model version: `{model_version}`",
        f"* current rows written: {written.current_written:,} (kept, newer as-of: {written.current_kept_newer:,})",
        f"* history rows written: {written.history_written:,}",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {name} | {secs:.2f} |" for name, secs in summary["seconds"].items()),
    ]
    create_markdown_artifact(key="run-summary", markdown="\n".join(lines), description=f"Scoring run as of {as_of}")
    return summary
