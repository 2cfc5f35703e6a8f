"""The results module: the one owner of ``customer_categories``, its history and the billing view.

Writing one scoring run: COPY into a staging table, merge in one transaction
(:func:`write_results`; the task ``tasks.scoring.write_results`` wraps it).
Repairing: :func:`rebuild_current` (current rows from history for a chosen as-of).
Reading: :func:`read_customer_category`, :func:`read_company_customers` and
:func:`category_counts` (the demo and the HTTP service read through them).  The column lists are declared
once here (:data:`RESULT_COLUMNS`, :data:`RUN_COLUMNS`); the ``sql/results/*.sql``
templates take them as ``{...}`` identifier lists (never values: values are
bind parameters).  Guarantees (sql/results/*.sql):

* **atomic**: the staging COPY and both merges run in one transaction, so a
  run that fails or is killed (even SIGKILL) leaves the previous results;
* **idempotent**: a rerun for the same ``as_of`` gives byte-identical tables -
  rows whose content did not change are not rewritten, so even ``scored_at``
  and ``flow_run_id`` keep the values of the run that first wrote them;
* **newest wins**: a run for an older ``as_of`` writes history only and never
  replaces a current row of a newer ``as_of``;
* **one writer**: a transaction-scoped advisory lock serialises writers; a
  second run waits up to ``settings.write_lock_wait_seconds`` and then fails
  with :class:`WriteLockBusy`.

Customers absent from the run: rows of the same ``as_of`` are removed (a rerun
replaces that date completely); current rows of older dates are kept, with
their ``as_of_date`` telling how old they are.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from payer_scoring.db import read_sql
from payer_scoring.rules import PROBABILITY_COLUMNS

log = logging.getLogger(__name__)

# Columns taken from the scores frame, in staging-table order: the key, then
# the content a rerun compares (RESULT_CONTENT), with their PostgreSQL types.
KEY_COLUMNS: tuple[str, ...] = ("company_id", "customer_id")
_COLUMN_TYPES: dict[str, str] = {
    "company_id": "text",
    "customer_id": "text",
    "category": "text",
    **{c: "float8" for c in PROBABILITY_COLUMNS},
    "observed_category": "text",
    # migration 0008 (issue 11): the risk score and up to 3 reason codes
    "risk_score": "float8",
    "reason_codes": "text[]",
}
RESULT_COLUMNS: tuple[str, ...] = tuple(_COLUMN_TYPES)
RESULT_CONTENT: tuple[str, ...] = tuple(c for c in RESULT_COLUMNS if c not in KEY_COLUMNS)
_STAGING_TYPES: tuple[str, ...] = tuple(_COLUMN_TYPES.values())
# Columns each write adds from its run (bind parameters), in table order.
RUN_COLUMNS: tuple[str, ...] = ("as_of_date", "model_version", "scored_at", "flow_run_id")
# Columns migration 0008 added at the end of both tables (after the run columns).
RISK_COLUMNS: tuple[str, ...] = ("risk_score", "reason_codes")
# The tables' columns in their physical order.
TABLE_COLUMNS: tuple[str, ...] = (
    *(c for c in RESULT_COLUMNS if c not in RISK_COLUMNS), *RUN_COLUMNS, *RISK_COLUMNS
)
# What a reader gets for one customer (the billing view's columns).
BILLING_VIEW_COLUMNS: tuple[str, ...] = (
    "company_id", "customer_id", "category", "category_label", *PROBABILITY_COLUMNS,
    "observed_category", "as_of_date", "model_version",
    "risk_score", "reason_codes", "reason_texts_pt_br", "reason_texts_en",
)
# What the readers below select from the billing view.  When migration 0008
# adds risk_score and reason_codes to the view, adding them here is the one
# change (the HTTP service's answer already has both fields, null until then).
CUSTOMER_READ_COLUMNS: tuple[str, ...] = BILLING_VIEW_COLUMNS
# "Riskiest first" for a company's list, most significant key first (customer_id
# breaks ties): the calibrated risk score of migration 0008 (rows written by a
# model before it have none and come last), then p_bad.
RISK_ORDER: tuple[str, ...] = ("risk_score DESC NULLS LAST", "p_bad DESC")


@lru_cache(maxsize=64)
def results_sql(name: str) -> str:
    """``sql/results/<name>.sql`` with its ``{...}`` column lists filled from the declarations above.

    Cached per process (the files and the lists do not change while it runs;
    the HTTP service reads one per request).

    Placeholders: ``{columns}`` (RESULT_COLUMNS), ``{content}`` (RESULT_CONTENT),
    ``{s_columns}`` / ``{h_columns}`` / ``{c_content}`` / ``{excluded_content}`` / ``{h_content}``
    (the same lists prefixed by a table alias), ``{set_content}``
    (``col = EXCLUDED.col`` pairs), ``{staging_columns}`` (name and type),
    ``{read_columns}`` (CUSTOMER_READ_COLUMNS) and ``{risk_order}`` (RISK_ORDER).
    Identifiers only, all from this module's fixed lists.
    """
    def alias(prefix: str, cols) -> str:
        return ", ".join(f"{prefix}.{c}" for c in cols)

    lists = {
        "{columns}": ", ".join(RESULT_COLUMNS),
        "{content}": ", ".join(RESULT_CONTENT),
        "{s_columns}": alias("s", RESULT_COLUMNS),
        "{c_content}": alias("c", RESULT_CONTENT),
        "{h_content}": alias("h", RESULT_CONTENT),
        "{h_columns}": alias("h", RESULT_COLUMNS),
        "{excluded_content}": alias("EXCLUDED", RESULT_CONTENT),
        "{set_content}": ", ".join(f"{c} = EXCLUDED.{c}" for c in RESULT_CONTENT),
        "{staging_columns}": ", ".join(f"{c} {t}" for c, t in _COLUMN_TYPES.items()),
        "{read_columns}": ", ".join(CUSTOMER_READ_COLUMNS),
        "{risk_order}": ", ".join(RISK_ORDER),
    }
    text = read_sql(f"results/{name}")
    for placeholder, value in lists.items():
        text = text.replace(placeholder, value)
    return text
# Advisory-lock key shared by every writer of customer_categories (any constant bigint).
WRITE_LOCK_KEY = 7_352_005


class WriteLockBusy(RuntimeError):
    """Another run held the results write lock for longer than the allowed wait."""


@dataclass(frozen=True)
class WriteSummary:
    """Row counts of one write (``*_written`` = inserted or changed rows)."""

    as_of: date
    rows_staged: int
    history_written: int
    history_removed: int
    current_written: int
    current_removed: int
    current_kept_newer: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def write_results(
    engine: Engine,
    scores: pd.DataFrame,
    *,
    as_of: date,
    model_version: str,
    flow_run_id: str,
    lock_wait_seconds: float = 300.0,
    scored_at: datetime | None = None,
) -> WriteSummary:
    """Merge ``scores`` (one row per customer, :data:`RESULT_COLUMNS`) into the result tables.

    ``risk_score`` (NaN: NULL) and ``reason_codes`` (lists of codes) may be
    absent: they are then NULL and empty.

    Returns the row counts.  Raises :class:`WriteLockBusy` when another writer
    holds the lock longer than ``lock_wait_seconds``, ``KeyError`` when a
    column is missing, and SQLAlchemy errors from the database (the
    transaction is then rolled back and nothing is changed).
    """
    missing = [c for c in RESULT_COLUMNS if c not in scores.columns and c not in RISK_COLUMNS]
    if missing:
        raise KeyError(f"scores frame lacks column(s) {missing}; expected {list(RESULT_COLUMNS)}")
    if any(c not in scores.columns for c in RISK_COLUMNS):
        # a frame without the issue-11 columns (a model without a risk score): NULL score, no reasons
        scores = scores.copy()
        if "risk_score" not in scores.columns:
            scores["risk_score"] = np.nan
        if "reason_codes" not in scores.columns:
            scores["reason_codes"] = pd.Series([[] for _ in range(len(scores))], index=scores.index, dtype=object)
    started = time.perf_counter()
    params = {
        "as_of_date": as_of,
        "model_version": model_version,
        "scored_at": scored_at or datetime.now(timezone.utc),
        "flow_run_id": flow_run_id,
    }
    with engine.connect() as conn, conn.begin():
        if conn.dialect.server_version_info >= (14,):
            # A killed client is noticed within seconds even while its backend
            # waits on a lock, so its advisory lock is released promptly.
            conn.execute(sa.text("SELECT set_config('client_connection_check_interval', '2s', true)"))
        _take_write_lock(conn, lock_wait_seconds)
        conn.execute(sa.text(results_sql("stage")))
        # Sorts and hashes of a few hundred thousand rows stay in memory.
        conn.execute(sa.text("SELECT set_config('work_mem', '256MB', true)"))
        staged = _copy_frame(conn, scores.loc[:, list(RESULT_COLUMNS)])
        # The key refuses a customer scored twice and gives the merges an
        # ordered, indexed input whatever the planner's row estimates say.
        conn.execute(sa.text(results_sql("stage_key")))
        conn.execute(sa.text("ANALYZE results_staging"))
        newest = conn.execute(sa.text("SELECT max(as_of_date) FROM customer_categories")).scalar()
        kept_newer = 0
        if newest is not None and newest > as_of:
            kept_newer = conn.execute(sa.text(results_sql("current_newer")), params).scalar_one()
        rerun = conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM customer_category_history WHERE as_of_date = :as_of_date)"), params
        ).scalar_one()
        if rerun:  # replace that date's rows, rewriting only what changed
            history_written = conn.execute(sa.text(results_sql("history_upsert")), params).rowcount
            history_removed = conn.execute(sa.text(results_sql("history_prune")), params).rowcount
        else:
            history_written = conn.execute(sa.text(results_sql("history_insert")), params).rowcount
            history_removed = 0
        current_written = conn.execute(sa.text(results_sql("current_upsert")), params).rowcount
        # Current rows of date T exist only if a run for T wrote them - with its history rows.
        current_removed = conn.execute(sa.text(results_sql("current_prune")), params).rowcount if rerun else 0
    summary = WriteSummary(
        as_of=as_of,
        rows_staged=staged,
        history_written=history_written,
        history_removed=history_removed,
        current_written=current_written,
        current_removed=current_removed,
        current_kept_newer=kept_newer,
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info("results written: %s", summary)
    return summary


@dataclass(frozen=True)
class RebuildSummary:
    """What :func:`rebuild_current` did (row counts)."""

    as_of: date
    current_removed: int
    current_written: int
    history_removed: int
    newest_as_of_before: date | None

    def as_dict(self) -> dict:
        return asdict(self)


def rebuild_current(engine: Engine, as_of: date, *, lock_wait_seconds: float = 300.0) -> RebuildSummary:
    """Repair ``customer_categories`` from history as of ``as_of``, in one transaction; return the counts.

    For the operator whose current table holds a wrong as-of (e.g. a run for
    2999-01-01 that every later daily run would keep, newest wins):
    history rows later than ``as_of`` are deleted, then every current row is
    replaced by the customer's latest history row on or before ``as_of``
    (customers without one disappear from the billing view).  Takes the
    results write lock (waits ``lock_wait_seconds``, then
    :class:`WriteLockBusy`); on any error nothing changes.  The next daily run
    then writes current rows as usual.  CLI: ``payer-scoring results
    rebuild-current --as-of DATE``.
    """
    params = {"as_of_date": as_of}
    with engine.connect() as conn, conn.begin():
        _take_write_lock(conn, lock_wait_seconds)
        newest = conn.execute(sa.text("SELECT max(as_of_date) FROM customer_categories")).scalar()
        history_removed = conn.execute(sa.text(results_sql("rebuild_history_later")), params).rowcount
        removed = conn.execute(sa.text(results_sql("rebuild_current_clear")), params).rowcount
        written = conn.execute(sa.text(results_sql("rebuild_current_insert")), params).rowcount
    summary = RebuildSummary(as_of, removed, written, history_removed, newest)
    log.info("current categories rebuilt from history: %s", summary)
    return summary


def _take_write_lock(conn: Connection, wait_seconds: float) -> None:
    """Take the transaction-scoped write lock, waiting at most ``wait_seconds``."""
    if conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY}).scalar_one():
        return
    holder = conn.execute(
        sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = :k LIMIT 1"
        ),
        {"k": WRITE_LOCK_KEY},
    ).scalar()
    log.warning("another run is writing the results (backend pid %s); waiting up to %.0f s", holder, wait_seconds)
    conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{int(wait_seconds * 1000)}ms"})
    try:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise WriteLockBusy(
                f"another score-customers run (backend pid {holder}) is still writing customer_categories "
                f"after {wait_seconds:.0f} s; nothing was written - rerun when it has finished"
            ) from None
        raise
    conn.execute(sa.text("SELECT set_config('lock_timeout', '0', true)"))


def _copy_frame(conn: Connection, frame: pd.DataFrame) -> int:
    """COPY ``frame`` (staging column order) into ``results_staging``; return the row count.

    Binary COPY: floats travel bit-exact, missing values (None/NaN/NA in text
    columns) as NULL.  About 0.4 s for 300,000 rows here (CSV text from pandas
    took 3 s, mostly float formatting).
    """
    columns = []
    for name, pg_type in zip(RESULT_COLUMNS, _STAGING_TYPES):
        series = frame[name]
        if pg_type == "text":
            series = series.astype(object).where(series.notna(), None)
        elif pg_type == "float8" and series.isna().any():
            series = series.astype(object).where(series.notna(), None)  # NaN -> NULL (risk_score of an old model)
        elif pg_type == "text[]":
            series = series.map(lambda codes: list(codes) if isinstance(codes, (list, tuple, np.ndarray)) else [])
        columns.append(series.tolist())
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY results_staging ({', '.join(RESULT_COLUMNS)}) FROM STDIN (FORMAT binary)") as copy:
        copy.set_types(list(_STAGING_TYPES))
        for row in zip(*columns):
            copy.write_row(row)
    return len(frame)


def read_customer_category(engine: Engine, company_id: str, customer_id: str) -> dict | None:
    """The current row of one customer as billing sees it (:data:`CUSTOMER_READ_COLUMNS`), or None when unknown.

    Ids as the export writes them (space-separated hex); bind parameters only.
    """
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(results_sql("read_customer")), {"company_id": company_id, "customer_id": customer_id}
        ).mappings().first()
    return None if row is None else dict(row)


def read_company_customers(
    engine: Engine, company_id: str, *, category: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[dict]]:
    """One page of a company's current rows, riskiest first (:data:`RISK_ORDER`, then customer_id).

    Returns (rows matching the filter in all pages, the page: up to ``limit``
    dicts of :data:`CUSTOMER_READ_COLUMNS`).  ``category`` None: every
    category.  Both statements run in one REPEATABLE READ transaction, so the
    total and the page describe the same daily run even while one is written.
    Raises ValueError for a negative ``offset`` or a ``limit`` below 1.
    """
    if limit < 1 or offset < 0:
        raise ValueError(f"limit {limit} / offset {offset}: expected limit >= 1 and offset >= 0")
    params = {"company_id": company_id, "category": category, "limit": limit, "offset": offset}
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        total = conn.execute(sa.text(results_sql("count_company_customers")), params).scalar_one()
        rows = conn.execute(sa.text(results_sql("read_company_customers")), params).mappings().all()
    return int(total), [dict(r) for r in rows]


def read_previous_categories(engine: Engine, as_of: date) -> tuple[date | None, pd.DataFrame]:
    """The latest scoring date before ``as_of`` in the history and its rows (company_id, customer_id, category, model_version).

    The hysteresis of the daily run compares with it; read from the history
    (not the current table) so that a rerun for the same ``as_of`` sees the
    same previous day.  (None, empty frame) when no earlier run exists.
    """
    with engine.connect() as conn:
        previous = conn.execute(
            sa.text("SELECT max(as_of_date) FROM customer_category_history WHERE as_of_date < :as_of"), {"as_of": as_of}
        ).scalar()
        if previous is None:
            return None, pd.DataFrame(columns=["company_id", "customer_id", "category", "model_version"])
        frame = pd.read_sql(
            sa.text(read_sql("results/previous_categories")), conn, params={"as_of_date": previous}
        )
    return previous, frame


def read_scored_history(engine: Engine, as_of: date) -> pd.DataFrame:
    """Every history row of the scoring date ``as_of`` (what was published then), one per customer.

    Columns: company_id, customer_id, category, p_*, observed_category,
    risk_score (NULL on rows of the old model), model_version.
    """
    with engine.connect() as conn:
        return pd.read_sql(sa.text(read_sql("results/scored_history")), conn, params={"as_of_date": as_of})


def scoring_dates(engine: Engine, first: date | None, last: date | None) -> list[date]:
    """Distinct scoring dates in the history within [first, last] (None: unbounded), oldest first.

    ``sql/results/scoring_dates_between.sql``: one index probe per date, not a scan of every customer row.
    """
    bounds = {"first": first or date.min, "last": last or date.max}
    with engine.connect() as conn:
        return list(conn.execute(sa.text(read_sql("results/scoring_dates_between")), bounds).scalars())


def category_counts(engine: Engine, as_of: date) -> dict[str, int]:
    """Customers per current category written for ``as_of``, most common first: {category: customers}."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(read_sql("results/category_counts")), {"as_of": as_of}).all()
    return {r.category: int(r.customers) for r in rows}



def write_backtest_report(engine: Engine, report: dict, *, horizon_days: int, flow_run_id: str | None = None) -> None:
    """Upsert one backtest row (``backtest_reports``) from :func:`models.risk_backtest.scored_backtest`'s dict.

    ``report`` also carries ``as_of_date`` (the scoring date).  The headline
    figures get columns of their own (NULL when not measurable); the whole
    report goes to ``metrics`` (jsonb, NaN written as null).
    """
    import json
    import math

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if hasattr(value, "item"):
            return clean(value.item())
        return value

    report = clean(report)
    risk = report.get("risk") or {}
    params = {
        "as_of_date": report["as_of_date"],
        "horizon_days": int(horizon_days),
        "model_version": report.get("model_version"),
        "outcome": report["outcome"],
        "n_scored": report["n_scored"],
        "n_with_outcome": report["n_with_outcome"],
        "risk_auc": risk.get("auc"),
        "risk_brier": risk.get("brier"),
        "risk_ece": risk.get("ece"),
        "observed_auc": report.get("observed_auc"),
        "category_auc": report.get("category_auc"),
        "category_macro_f1": (report.get("macro_f1") or {}).get("category"),
        "observed_macro_f1": (report.get("macro_f1") or {}).get("observed"),
        "metrics": json.dumps(report),
        "flow_run_id": flow_run_id,
    }
    with engine.begin() as conn:
        conn.execute(sa.text(read_sql("results/backtest_upsert")), params)


def read_backtest_reports(engine: Engine, horizon_days: int) -> pd.DataFrame:
    """Every backtest row of ``horizon_days``, oldest scoring date first (headline columns, no jsonb)."""
    with engine.connect() as conn:
        return pd.read_sql(
            sa.text(
                "SELECT as_of_date, model_version, outcome, n_scored, n_with_outcome, risk_auc, risk_brier, risk_ece, "
                "observed_auc, category_auc, category_macro_f1, observed_macro_f1 FROM backtest_reports "
                "WHERE horizon_days = :h ORDER BY as_of_date"
            ),
            conn,
            params={"h": int(horizon_days)},
        )
