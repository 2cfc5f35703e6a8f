"""The results module: the one owner of ``customer_categories``, its history and the billing view.

Writing one scoring run (:func:`write_results`; the task ``tasks.scoring.write_results``
wraps it), or the partitions of one run (:func:`create_staging`,
:func:`copy_to_staging`, :func:`publish_staging`, :func:`drop_staging`).
Repairing: :func:`rebuild_current` (current rows from history for a chosen as-of).
Reading: :func:`read_customer_category`, :func:`read_company_customers` and
:func:`category_counts` (the demo and the HTTP service read through them).  The column lists are declared
once here (:data:`RESULT_COLUMNS`, :data:`RUN_COLUMNS`); the ``sql/results/*.sql``
templates take them as ``{...}`` identifier lists (never values: values are
bind parameters).

How a write works (migration 0012: both tables are partitioned): the rows of
the run are COPYed (binary) into a new table shaped like a history partition,
its primary key is built once after the load, and it is ATTACHed as the
as-of's partition of ``customer_category_history``; the next
``customer_categories`` is built in one merge pass of the staged rows with the
current ones (``current_build.sql``), indexed once, and swapped in as the one
partition of ``customer_categories`` (DETACH old, ATTACH new).  No row is
upserted; the billing view and the grants stay on the unchanged parents.
Guarantees:

* **atomic**: staging, history partition and current swap run in one
  transaction, so a run that fails or is killed (even SIGKILL) leaves the
  previous results (the new tables vanish with the aborted transaction);
* **idempotent**: a rerun for the same ``as_of`` gives identical tables -
  rows whose content did not change keep the ``scored_at`` and
  ``flow_run_id`` of the run that first wrote them (a rerun that changes
  nothing swaps nothing);
* **newest wins**: a run for an older ``as_of`` writes history only and never
  replaces a current row of a newer ``as_of``;
* **one writer**: a transaction-scoped advisory lock serialises writers; a
  second run waits up to ``settings.write_lock_wait_seconds`` and then fails
  with :class:`WriteLockBusy`.  The write also locks ``customer_categories``
  against other writers (readers go on reading the previous rows until commit;
  the swap itself holds an exclusive lock for a few catalog updates).

Customers absent from the run: rows of the same ``as_of`` are removed (a rerun
replaces that date completely); current rows of older dates are kept, with
their ``as_of_date`` telling how old they are.
"""

from __future__ import annotations

import logging
import re
import secrets
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
    ``{s_columns}`` / ``{h_columns}`` / ``{c_columns}`` / ``{c_content}`` / ``{h_content}``
    (the same lists prefixed by a table alias), ``{pick_content}`` / ``{pick_run}``
    (current_build.sql: each column taken from the staged or the current row by
    the customer's fate), ``{read_columns}`` (CUSTOMER_READ_COLUMNS) and
    ``{risk_order}`` (RISK_ORDER).  Identifiers only, all from this module's
    fixed lists.
    """
    def alias(prefix: str, cols) -> str:
        return ", ".join(f"{prefix}.{c}" for c in cols)

    lists = {
        "{columns}": ", ".join(RESULT_COLUMNS),
        "{content}": ", ".join(RESULT_CONTENT),
        "{s_columns}": alias("s", RESULT_COLUMNS),
        "{c_columns}": alias("c", RESULT_COLUMNS),
        "{c_content}": alias("c", RESULT_CONTENT),
        "{h_content}": alias("h", RESULT_CONTENT),
        "{h_columns}": alias("h", RESULT_COLUMNS),
        "{pick_content}": ",\n           ".join(
            f"CASE WHEN f.fate IN ('written', 'same') THEN s.{c} ELSE c.{c} END AS {c}" for c in RESULT_COLUMNS
        ),
        "{pick_run}": ",\n           ".join(
            f"CASE WHEN f.fate = 'written' THEN s.{c} ELSE c.{c} END AS {c}" for c in ("scored_at", "flow_run_id")
        ),
        "{read_columns}": ", ".join(CUSTOMER_READ_COLUMNS),
        "{risk_order}": ", ".join(RISK_ORDER),
    }
    text = read_sql(f"results/{name}")
    for placeholder, value in lists.items():
        text = text.replace(placeholder, value)
    return text


# Advisory-lock key shared by every writer of customer_categories (any constant bigint).
WRITE_LOCK_KEY = 7_352_005
# Fixed relation names of migration 0012 and of one write (payer_scoring/results.py owns them).
STAGING_TABLE = "results_staging"             # the staged rows of one write, inside its transaction
CURRENT_PARTITION = "customer_categories_current"
NEXT_CURRENT = "customer_categories_next"     # the next current partition while it is built
HISTORY_PARTITION_PREFIX = "customer_category_history_"
HISTORY_DEFAULT = "customer_category_history_default"
# Committed per-run staging tables (Dask partitions COPY into them): results_staging_<epoch s>_<hex>.
RUN_STAGING_PREFIX = "results_staging_"
RUN_STAGING_MAX_AGE_SECONDS = 86_400  # an older one is a crashed run's leftover: dropped by the next write


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


def history_partition(as_of: date) -> str:
    """Name of the history partition of ``as_of``: ``customer_category_history_YYYYMMDD``."""
    return f"{HISTORY_PARTITION_PREFIX}{as_of:%Y%m%d}"


def _complete_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with the issue-11 columns added when absent (NULL risk score, no reasons); KeyError when another lacks."""
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
    return scores


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
    """Write ``scores`` (one row per customer, :data:`RESULT_COLUMNS`) as the results of ``as_of``, in one transaction.

    ``risk_score`` (NaN: NULL) and ``reason_codes`` (lists of codes) may be
    absent: they are then NULL and empty.  How (migration 0012): one binary
    COPY into a new table shaped like a history partition, its key built once,
    attached as the date's partition; the next current table built in one
    merge pass and swapped in (:func:`_publish`).

    Returns the row counts.  Raises :class:`WriteLockBusy` when another writer
    holds the lock (or a session a lock on ``customer_categories``) longer than
    ``lock_wait_seconds``, ``KeyError`` when a column is missing, and
    SQLAlchemy errors from the database (``IntegrityError`` for a customer
    scored twice or a value breaking a CHECK; the transaction is then rolled
    back and nothing is changed).
    """
    scores = _complete_frame(scores)
    started = time.perf_counter()
    run = (as_of, model_version, scored_at or datetime.now(timezone.utc), flow_run_id)
    with engine.connect() as conn, conn.begin():
        _session_settings(conn)
        _take_write_lock(conn, lock_wait_seconds)
        _create_staging(conn, STAGING_TABLE, as_of)
        staged = _copy_frame(conn, STAGING_TABLE, scores.loc[:, list(RESULT_COLUMNS)], run)
        summary = _publish(conn, as_of, staged, lock_wait_seconds, started)
    log.info("results written: %s", summary)
    return summary


# ------------------------------------------------------------ staged writes (partitioned scoring)
def create_staging(engine: Engine, as_of: date) -> str:
    """Create (committed) an empty per-run staging table for ``as_of``; return its name.

    For scoring split into partitions (flows/daily_scoring.py with the Dask
    runner): each partition COPYs its rows into it with
    :func:`copy_to_staging` in its own transaction, then
    :func:`publish_staging` swaps everything into place in one transaction.
    Nothing reads the table until then (billing reads only the view), so a
    failed partition leaves the published results untouched; the caller drops
    the table with :func:`drop_staging` (a crashed run's table is dropped by a
    later write after :data:`RUN_STAGING_MAX_AGE_SECONDS`).
    """
    name = f"{RUN_STAGING_PREFIX}{int(time.time())}_{secrets.token_hex(4)}"
    with engine.connect() as conn, conn.begin():
        _create_staging(conn, name, as_of)
    return name


def copy_to_staging(
    engine: Engine,
    table: str,
    scores: pd.DataFrame,
    *,
    as_of: date,
    model_version: str,
    flow_run_id: str,
    scored_at: datetime,
) -> int:
    """COPY ``scores`` (as for :func:`write_results`) into the staging ``table`` in one transaction; return the rows.

    Every partition of one run passes the same ``as_of``, ``model_version``,
    ``flow_run_id`` and ``scored_at`` (UTC).  Raises ``IntegrityError`` for a
    NULL/out-of-range value or a row of another as-of (nothing is then added).
    """
    _check_staging_name(table)
    scores = _complete_frame(scores)
    with engine.connect() as conn, conn.begin():
        return _copy_frame(conn, table, scores.loc[:, list(RESULT_COLUMNS)], (as_of, model_version, scored_at, flow_run_id))


def publish_staging(engine: Engine, table: str, *, as_of: date, lock_wait_seconds: float = 300.0) -> WriteSummary:
    """Swap the staged rows of ``table`` into place as the results of ``as_of``, in one transaction.

    Same guarantees and counts as :func:`write_results` (the staging table is
    consumed: it becomes the date's history partition, or is dropped).
    Raises as :func:`write_results`; on any error nothing changes and
    ``table`` is left for :func:`drop_staging`.
    """
    _check_staging_name(table)
    started = time.perf_counter()
    with engine.connect() as conn, conn.begin():
        _session_settings(conn)
        _take_write_lock(conn, lock_wait_seconds)
        _drop_stale_staging(conn)
        conn.execute(sa.text(f"ALTER TABLE {_ident(table)} RENAME TO {STAGING_TABLE}"))
        staged = conn.execute(sa.text(f"SELECT count(*) FROM {STAGING_TABLE}")).scalar_one()
        summary = _publish(conn, as_of, staged, lock_wait_seconds, started)
    log.info("results written from %s: %s", table, summary)
    return summary


def drop_staging(engine: Engine, table: str) -> None:
    """Drop the staging ``table`` if it is still there (after a failed or published run)."""
    _check_staging_name(table)
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {_ident(table)}"))


def _check_staging_name(table: str) -> None:
    if not re.fullmatch(rf"{RUN_STAGING_PREFIX}\d+_[0-9a-f]+", table):
        raise ValueError(f"{table!r} is not a staging table of payer_scoring.results.create_staging")


def _drop_stale_staging(conn: Connection) -> None:
    """Drop the per-run staging tables of runs that crashed more than a day ago (nothing reads them)."""
    names = conn.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE :p"),
        {"p": RUN_STAGING_PREFIX + "%"},
    ).scalars().all()
    now = time.time()
    for name in names:
        match = re.fullmatch(rf"{RUN_STAGING_PREFIX}(\d+)_[0-9a-f]+", name)
        if match and now - int(match.group(1)) > RUN_STAGING_MAX_AGE_SECONDS:
            log.warning("dropping the staging table %s of a run that never published", name)
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {_ident(name)}"))


# ------------------------------------------------------------ the write, inside one transaction
def _ident(name: str) -> str:
    """``name`` quoted as an SQL identifier (names built here from fixed prefixes and dates)."""
    return '"' + name.replace('"', '""') + '"'


def _session_settings(conn: Connection) -> None:
    """Transaction-local settings of a write: prompt notice of a killed client, in-memory sorts and index builds."""
    if conn.dialect.server_version_info >= (14,):
        # A killed client is noticed within seconds even while its backend
        # waits on a lock, so its advisory lock is released promptly.
        conn.execute(sa.text("SELECT set_config('client_connection_check_interval', '2s', true)"))
    # Sorts, hashes and index builds of a few hundred thousand rows stay in memory.
    conn.execute(sa.text("SELECT set_config('work_mem', '256MB', true)"))
    conn.execute(sa.text("SELECT set_config('maintenance_work_mem', '256MB', true)"))
    # Joins on the text ids by hashing (byte comparison), not by sorting: the fresh staging table has no
    # statistics, and the planner's merge join sorted both sides under the database's collation
    # (5x slower than the hash join for 100,000 export-shaped ids).
    conn.execute(sa.text("SELECT set_config('enable_mergejoin', 'off', true)"))


def _create_staging(conn: Connection, name: str, as_of: date) -> None:
    """Create the staging table ``name`` for ``as_of`` (its CHECK lets ATTACH skip its validation scan)."""
    conn.execute(sa.text(results_sql("stage").replace("{staging}", _ident(name))))
    conn.execute(
        sa.text(
            f"ALTER TABLE {_ident(name)} ADD CONSTRAINT results_staging_as_of "
            f"CHECK (as_of_date = DATE '{as_of.isoformat()}')"
        )
    )


def _publish(conn: Connection, as_of: date, staged: int, lock_wait_seconds: float, started: float) -> WriteSummary:
    """``results_staging`` (rows of ``as_of``, run columns set) becomes the date's history and merges into current.

    Inside the caller's transaction, write lock held.  History: the staged
    key is built (a customer scored twice fails here), unchanged rows of a
    rerun keep their run columns, and the table is attached as the date's
    partition in place of the old one.  Current: see ``current_build.sql``;
    the next table is swapped in only when something changed.
    """
    params = {"as_of_date": as_of}
    conn.execute(sa.text(results_sql("stage_key")))
    old_rows, rescored, unchanged = conn.execute(sa.text(results_sql("history_old_rows")), params).one()
    history_written, history_removed = staged - unchanged, old_rows - rescored
    partition = history_partition(as_of)
    history_changes = not old_rows or history_written or history_removed  # else a rerun that changes nothing
    if history_changes:
        if unchanged:  # unchanged rows keep the run columns of the run that first wrote them
            conn.execute(sa.text(results_sql("history_carry_over")), params)
        exists = conn.execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": partition}).scalar_one()
        if exists:
            conn.execute(sa.text(f"ALTER TABLE customer_category_history DETACH PARTITION {_ident(partition)}"))
            conn.execute(sa.text(f"DROP TABLE {_ident(partition)}"))
        if old_rows:
            conn.execute(sa.text(results_sql("history_default_prune")), params)
        conn.execute(
            sa.text(
                f"ALTER TABLE customer_category_history ATTACH PARTITION {STAGING_TABLE} "
                f"FOR VALUES IN (DATE '{as_of.isoformat()}')"
            )
        )

    _lock_current(conn, lock_wait_seconds)
    conn.execute(sa.text(results_sql("current_next")))
    newest = conn.execute(sa.text("SELECT max(as_of_date) FROM customer_categories")).scalar()
    if newest is None or newest < as_of:  # the daily case: two plain inserts, no merge of every row
        fates = {"written": conn.execute(sa.text(results_sql("current_build_newer"))).rowcount}
        conn.execute(sa.text(results_sql("current_build_kept")))
    else:
        fates = dict(conn.execute(sa.text(results_sql("current_build")), params).tuples().all())
    current_written, current_removed = int(fates.get("written", 0)), int(fates.get("removed", 0))
    if current_written or current_removed:
        _swap_current(conn)
    else:
        conn.execute(sa.text(f"DROP TABLE {NEXT_CURRENT}"))
    if history_changes:  # the staged rows keep their partition's name from now on
        conn.execute(sa.text(f"ALTER TABLE {STAGING_TABLE} RENAME TO {_ident(partition)}"))
        conn.execute(sa.text(f"ALTER INDEX results_staging_key RENAME TO {_ident(partition + '_pkey')}"))
    else:
        conn.execute(sa.text(f"DROP TABLE {STAGING_TABLE}"))
    return WriteSummary(
        as_of=as_of,
        rows_staged=int(staged),
        history_written=int(history_written),
        history_removed=int(history_removed),
        current_written=current_written,
        current_removed=current_removed,
        current_kept_newer=int(fates.get("kept_newer", 0)),
        seconds=round(time.perf_counter() - started, 3),
    )


def _lock_current(conn: Connection, wait_seconds: float) -> None:
    """Lock ``customer_categories`` against other writers (readers go on) for the rest of the transaction.

    The swap later upgrades it to ACCESS EXCLUSIVE for a few catalog updates;
    both wait at most ``wait_seconds`` (then :class:`WriteLockBusy`: nothing written).
    """
    conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{max(1, int(wait_seconds * 1000))}ms"})
    try:
        conn.execute(sa.text(results_sql("current_lock")))
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise WriteLockBusy(
                f"another session held a lock on customer_categories for {wait_seconds:.0f} s; "
                "nothing was written - rerun when it has finished"
            ) from None
        raise


def _swap_current(conn: Connection) -> None:
    """Index ``customer_categories_next`` and make it the one partition of ``customer_categories``.

    The parent relation stays, so the billing view, its grants and the grants
    on ``customer_categories`` are untouched; readers see the old rows until
    commit and the new ones after (the DETACH waits for running readers).
    """
    conn.execute(sa.text(results_sql("current_keys")))
    conn.execute(sa.text(results_sql("current_risk_index")))
    old = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'customer_categories'::regclass"
        )
    ).scalars().all()
    for name in old:
        conn.execute(sa.text(f"ALTER TABLE customer_categories DETACH PARTITION {_ident(name)}"))
        conn.execute(sa.text(f"DROP TABLE {_ident(name)}"))
    conn.execute(
        sa.text(f"ALTER TABLE customer_categories ATTACH PARTITION {NEXT_CURRENT} FOR VALUES FROM (MINVALUE) TO (MAXVALUE)")
    )
    conn.execute(sa.text(f"ALTER TABLE {NEXT_CURRENT} RENAME TO {CURRENT_PARTITION}"))
    conn.execute(sa.text(f"ALTER INDEX {NEXT_CURRENT}_pkey RENAME TO {CURRENT_PARTITION}_pkey"))
    conn.execute(sa.text(f"ALTER INDEX {NEXT_CURRENT}_company_risk RENAME TO {CURRENT_PARTITION}_company_risk"))


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
    history rows later than ``as_of`` are deleted (their partitions dropped),
    then the current table is rebuilt from each customer's latest history row
    on or before ``as_of`` and swapped in (customers without one disappear
    from the billing view).  Takes the results write lock (waits
    ``lock_wait_seconds``, then :class:`WriteLockBusy`); on any error nothing
    changes.  The next daily run then writes current rows as usual.  CLI:
    ``payer-scoring results rebuild-current --as-of DATE``.
    """
    params = {"as_of_date": as_of}
    with engine.connect() as conn, conn.begin():
        _session_settings(conn)
        _take_write_lock(conn, lock_wait_seconds)
        newest = conn.execute(sa.text("SELECT max(as_of_date) FROM customer_categories")).scalar()
        history_removed = 0
        partitions = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'customer_category_history'::regclass AND c.relname ~ :pattern"
            ),
            {"pattern": f"^{HISTORY_PARTITION_PREFIX}[0-9]{{8}}$"},
        ).scalars().all()
        for name in partitions:
            if datetime.strptime(name[len(HISTORY_PARTITION_PREFIX):], "%Y%m%d").date() > as_of:
                history_removed += conn.execute(sa.text(f"SELECT count(*) FROM {_ident(name)}")).scalar_one()
                conn.execute(sa.text(f"ALTER TABLE customer_category_history DETACH PARTITION {_ident(name)}"))
                conn.execute(sa.text(f"DROP TABLE {_ident(name)}"))
        history_removed += conn.execute(sa.text(results_sql("rebuild_history_later")), params).rowcount
        _lock_current(conn, lock_wait_seconds)
        removed = conn.execute(sa.text("SELECT count(*) FROM customer_categories")).scalar_one()
        conn.execute(sa.text(results_sql("current_next")))
        written = conn.execute(sa.text(results_sql("rebuild_current_build")), params).rowcount
        _swap_current(conn)
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


# COPY column order: the frame's columns, then the run's.
_COPY_COLUMNS: tuple[str, ...] = (*RESULT_COLUMNS, *RUN_COLUMNS)
_COPY_TYPES: tuple[str, ...] = (*_STAGING_TYPES, "date", "text", "timestamptz", "text")


def _copy_frame(conn: Connection, table: str, frame: pd.DataFrame, run: tuple) -> int:
    """Binary COPY of ``frame`` (RESULT_COLUMNS order) plus the ``run`` values (RUN_COLUMNS) into ``table``; return the rows.

    Floats travel bit-exact, missing values (None/NaN/NA in text columns) as
    NULL.  A database error (a NULL or out-of-range value, a row of another
    as-of) is raised as SQLAlchemy's error of its class (e.g. ``IntegrityError``).
    """
    import psycopg

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
    statement = f"COPY {_ident(table)} ({', '.join(_COPY_COLUMNS)}) FROM STDIN (FORMAT binary)"
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(list(_COPY_TYPES))
            for row in zip(*columns):
                copy.write_row((*row, *run))
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error, dialect=conn.dialect) from None
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
