"""What the daily scoring run reports: the content of its Prefect artifacts, as plain data.

The tasks in ``tasks/scoring.py`` publish these; tests read them without Prefect.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from payer_scoring.db import read_sql
from payer_scoring.results import WriteSummary, scoring_dates
from payer_scoring.rules import CATEGORIES, CATEGORY_LABELS
from payer_scoring.validation import ValidationReport


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


def run_summary(
    as_of: date,
    model_version: str,
    quarantined_bills: int,
    validation_warnings: int,
    written: WriteSummary,
    seconds: dict[str, float],
) -> dict:
    """The run summary: customers scored, quarantined bills, warnings, model, rows written, step seconds."""
    return {
        "as_of": as_of.isoformat(),
        "customers_scored": written.rows_staged,
        "quarantined_bills": quarantined_bills,
        "validation_warnings": validation_warnings,
        "model_version": model_version,
        "current_rows_written": written.current_written,
        "current_rows_kept_newer": written.current_kept_newer,
        "history_rows_written": written.history_written,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 3)},
    }


def run_summary_markdown(summary: dict) -> str:
    """Markdown of :func:`run_summary` for the ``run-summary`` artifact."""
    lines = [
        f"## Scoring as of {summary['as_of']}",
        "",
        f"* customers scored: **{summary['customers_scored']:,}**",
        f"* quarantined bills: {summary['quarantined_bills']:,}",
        f"* validation warnings: {summary['validation_warnings']}",
        f"* model version: `{summary['model_version']}`",
        f"* current rows written: {summary['current_rows_written']:,} (kept, newer as-of: {summary['current_rows_kept_newer']:,})",
        f"* history rows written: {summary['history_rows_written']:,}",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {name} | {secs:.2f} |" for name, secs in summary["seconds"].items()),
    ]
    return "\n".join(lines)


def weekly_category_counts(engine: Engine, as_of: date, weeks: int = 8) -> list[dict]:
    """Category counts of the last scoring date of each of the ``weeks`` 7-day periods ending at ``as_of``.

    Reads ``customer_category_history`` (what was published, after
    hysteresis).  Returns [{as_of: date, counts: {category: customers}}],
    oldest first; a period without a scoring run is left out (so fewer than
    ``weeks`` rows, or none before the first run).
    """
    first = as_of - timedelta(days=7 * weeks - 1)
    latest: dict[int, date] = {}
    for day in scoring_dates(engine, first, as_of):
        latest[(as_of - day).days // 7] = day  # oldest first: the last one kept is the period's latest
    days = sorted(latest.values())
    counts: dict[date, dict[str, int]] = {day: {} for day in days}
    with engine.connect() as conn:
        for r in conn.execute(sa.text(read_sql("results/category_counts_history")), {"days": days}):
            counts[r.as_of_date][r.category] = int(r.customers)
    return [{"as_of": day, "counts": counts[day]} for day in days]


def weekly_shares_markdown(weeks: list[dict]) -> str:
    """Markdown table of :func:`weekly_category_counts`: one row per run, the share (%) of each category and the customers."""
    head = "| as of | " + " | ".join(CATEGORIES) + " | customers |"
    lines = [head, "|---|" + "---:|" * (len(CATEGORIES) + 1)]
    for week in weeks:
        total = sum(week["counts"].values()) or 1
        cells = " | ".join(f"{100 * week['counts'].get(code, 0) / total:.1f} %" for code in CATEGORIES)
        lines.append(f"| {week['as_of']} | {cells} | {sum(week['counts'].values()):,} |")
    return "\n".join(lines)
