"""What the daily scoring run reports: the content of its Prefect artifacts, as plain data.

The tasks in ``tasks/scoring.py`` publish these; tests read them without Prefect.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from payer_scoring.results import WriteSummary
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
