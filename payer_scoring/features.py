"""Point-in-time customer features as of a date T, computed inside PostgreSQL.

The query is ``sql/customer_features.sql`` (its header defines every term:
matured, late, days past due, the neutral values; the bill rules themselves
are the SQL functions of migration 0007).  :func:`extract_features` is the
step of the daily run (task ``tasks.scoring.extract_features``); training
calls it for every snapshot.  :func:`extract_customer_features` runs the same
query for one customer, optionally with one more bill (the HTTP service).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from payer_scoring.db import read_sql
from payer_scoring.rules import Rules

# Model inputs, in the query's column order.  Units follow the names: n_* counts,
# *_share shares 0-1, *_days days, *_brl BRL; company_is_* are 0/1 flags.
FEATURE_COLUMNS: list[str] = [
    "n_bills",                 # bills issued on or before T (excluded statuses left out)
    "n_matured_bills",         # matured bills (same as n_matured, as a model input)
    "n_late",                  # matured bills paid after due + grace, or unpaid at T
    "n_paid_early",            # bills paid by T before their due date (matured or not)
    "n_unpaid_overdue",        # matured bills unpaid at T
    "late_share",              # n_late / n_matured (0 when nothing matured)
    "dpd_mean_days",           # mean days past due over matured bills (paid date or T minus due, >= 0)
    "dpd_max_days",            # max days past due over matured bills
    "dpd_p90_days",            # 90th percentile (continuous) of days past due over matured bills
    "paid_delay_mean_days",    # mean signed delay (paid date - due) of bills paid by T; < 0 = early
    "recent3_late_share",      # late share of the 3 most recently due matured bills
    "recent3_dpd_mean_days",   # mean days past due of those 3 bills
    "n_matured_90d",           # bills that matured in the last 90 days
    "late_share_90d",          # late share of those (no such bill: the overall late share)
    "late_share_prev90d",      # late share of bills that matured 90-180 days ago (fallback: overall)
    "late_share_trend",        # late_share_90d - late_share_prev90d (> 0: getting worse)
    "tenure_days",             # T - first issue date
    "since_last_bill_days",    # T - last issue date
    "since_last_payment_days", # T - last payment date (never paid: tenure_days)
    "since_last_late_days",    # T - due + grace of the last late bill (never late: tenure_days)
    "n_open",                  # bills unpaid at T (due or not)
    "open_brl",                # billing amount of those
    "overdue_brl",             # billing amount of the matured unpaid bills
    "n_upcoming_open",         # unpaid bills known at T that mature within the horizon
    "n_upcoming_prepaid",      # bills already paid at T that mature within the horizon
    "n_bills_90d",             # bills issued in the last 90 days (billing frequency)
    "mean_amount_brl",         # mean billing amount
    "max_amount_brl",          # max billing amount
    "instalment_share",        # share of bills that are one instalment of several (k/n, n > 1)
    "pix_share",               # share of bills whose payment_method mentions pix
    "boleto_share",            # ... boleto / bank slip
    "card_share",              # ... card / cartao
    "by_mail_share",           # share of bills sent by mail
    "by_whatsapp_share",       # share of bills sent by WhatsApp
    "n_protest_events",        # protest / credit-bureau events known at T (see the SQL header)
    "company_late_share",      # late share of all matured bills of the customer's company at T
    "company_n_customers",     # customers of the company with a bill by T
    "company_is_churn_risk",   # companies.is_churn_risk (0/1; unknown company 0)
    "company_is_key_account",  # companies.is_key_account (0/1; unknown company 0)
]
ID_COLUMNS: list[str] = ["company_id", "customer_id", "n_matured", "observed_category"]


def extract_features(
    engine: Engine,
    as_of: date,
    rules: Rules,
    exclude_run_id: str | None = None,
    *,
    horizon_days: int,
    partition: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Features of every customer with a bill issued on or before ``as_of``.

    One row per (company_id, customer_id), sorted by them; columns
    ``ID_COLUMNS`` (n_matured int, observed_category one of new/good/doubtful/
    forgetful/bad) then ``FEATURE_COLUMNS`` (float64, never NaN).  Bills
    quarantined in the scoring run ``exclude_run_id`` are left out (None:
    none).  ``horizon_days`` (the performance window H, days) sets the
    window of the n_upcoming_* features.  ``partition`` (index, count): only
    the customers of that partition's companies (:func:`in_partition_sql`;
    the filter is in the query's first scan), each row equal to the whole
    run's; None: every customer.  Raises ValueError for a partition outside
    0 <= index < count.
    """
    params = _params(as_of, rules, horizon_days=horizon_days, exclude_run_id=exclude_run_id)
    params = _partition_params(params, partition)
    with engine.connect() as conn:
        frame = read_query_csv(conn, feature_sql(extra_bill=False), params, text_columns=_TEXT_COLUMNS)
    return _typed(frame)


def in_partition_sql(alias: str = "") -> str:
    """SQL condition: the row's company is in partition ``:partition_index`` of ``:partition_count``.

    A partitioned run splits customers by company (``payer_company_partition``,
    migration 0013, the one owner of the rule): each partition holds whole
    companies, so its company aggregates equal the single-process run's.
    """
    a = f"{alias}." if alias else ""
    return f"payer_company_partition({a}company_id, CAST(:partition_count AS integer)) = CAST(:partition_index AS integer)"


def _partition_params(params: dict, partition: tuple[int, int] | None) -> dict:
    """``params`` with ``partition_index``/``partition_count`` set (None, None: every customer).

    Raises ValueError unless ``partition`` is None or (index, count) with 0 <= index < count.
    """
    if partition is None:
        return {**params, "partition_index": None, "partition_count": None}
    index, count = partition
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise ValueError(f"partition {partition!r}: expected (index, count) with 0 <= index < count")
    return {**params, "partition_index": index, "partition_count": count}


@lru_cache(maxsize=2)
def feature_sql(*, extra_bill: bool) -> str:
    """``sql/customer_features.sql`` reading ``payments`` (the batch) or, with ``extra_bill``, payments plus one bill.

    The query's one placeholder ``{bills}`` takes one of two fixed texts:
    ``payments`` or the subquery of ``sql/customer_features_extra_bill.sql``
    (bind parameters ``x_<column>``).  Only the text changes, never a value.
    """
    bills = read_sql("customer_features_extra_bill").strip() if extra_bill else "payments"
    return read_sql("customer_features").replace("{bills}", bills)


# The payments columns the feature query reads: what an on-demand extra bill
# must carry (payments.installment_count is derived from installment, as the
# table's generated column does).
EXTRA_BILL_COLUMNS: tuple[str, ...] = (
    "company_id", "customer_id", "payment_number", "installment",
    "issue_date_dte", "original_due_date_dte", "due_date_dte", "paid_at_dte",
    "payment_method", "payment_status", "billing_amount", "by_mail", "by_whatsapp",
)


def extract_customer_features(
    engine: Engine,
    as_of: date,
    rules: Rules,
    *,
    company_id: str,
    customer_id: str,
    horizon_days: int,
    extra_bill: dict | None = None,
) -> pd.DataFrame:
    """Features of one customer as of ``as_of``, by the daily batch's own query; optionally with one more bill.

    Same frame as :func:`extract_features` (0 or 1 row): the query is
    ``sql/customer_features.sql`` restricted to ``company_id`` (its company
    aggregates need every customer of the company) and then to ``customer_id``,
    so each value equals the batch's at the same ``as_of`` bit for bit.

    ``extra_bill``: one bill, a dict holding :data:`EXTRA_BILL_COLUMNS` (dates
    as ``date``, ``billing_amount`` BRL, ``by_mail``/``by_whatsapp`` bool or
    None).  It joins the stored bills inside the query as bind parameters - a
    stored bill with the same key (company_id, payment_number, installment) is
    replaced by it, as ``payer-scoring load payments`` would upsert it - so the
    result equals the batch run on a copy of ``payments`` holding that bill.
    Why bind parameters rather than a temporary table inside a rolled-back
    transaction: the service's database role may not create anything, not even
    a temporary table (migration 0010), and one statement is one round trip.
    The batch keeps its plan: it reads ``payments`` itself (:func:`feature_sql`).
    Nothing is written.  A customer with no bill in the database is scored on
    ``extra_bill`` alone.  Raises ``KeyError`` when ``extra_bill`` lacks a column.
    """
    params = _params(as_of, rules, horizon_days=horizon_days, exclude_run_id=None)
    params["company_id"] = company_id
    params["customer_id"] = customer_id
    if extra_bill is not None:
        missing = [c for c in EXTRA_BILL_COLUMNS if c not in extra_bill]
        if missing:
            raise KeyError(f"extra bill lacks {missing}; expected {list(EXTRA_BILL_COLUMNS)}")
        params.update({f"x_{c}": extra_bill[c] for c in EXTRA_BILL_COLUMNS})
    with engine.connect() as conn:
        frame = read_query_csv(conn, feature_sql(extra_bill=extra_bill is not None), params, text_columns=_TEXT_COLUMNS)
    return _typed(frame)


def _params(as_of: date, rules: Rules, *, horizon_days: int, exclude_run_id: str | None) -> dict:
    """Bind parameters of sql/customer_features.sql for the whole batch (no company, customer or extra bill)."""
    return {
        **rules.sql_params(),
        "as_of": as_of,
        "horizon_days": int(horizon_days),
        "exclude_run_id": exclude_run_id,
        "company_id": None,
        "customer_id": None,
        "partition_index": None,
        "partition_count": None,
    }


_TEXT_COLUMNS = ("company_id", "customer_id", "observed_category")


def read_query_csv(conn, sql: str, params: dict, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The rows of ``sql`` (bind parameters ``:name``) as a DataFrame, streamed as ``COPY (...) TO STDOUT`` CSV.

    ``text_columns`` are read as strings ('' stays ''); every other column is
    parsed as a number, with an empty field (SQL NULL) or NaN as NaN.  Floats
    round-trip exactly (PostgreSQL writes the shortest exact text, pandas 3
    parses it exactly).  Against ``pd.read_sql`` on 1M customers x 43 columns
    this takes about a third of the client time and memory: no Python object
    per value.  Parameters are merged into the statement by psycopg
    (client-side, escaped): COPY takes no server-side parameters.
    """
    import io

    compiled = sa.text(sql).compile(dialect=conn.dialect)
    buffer = io.BytesIO()
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        statement = f"COPY ({compiled.string}) TO STDOUT (FORMAT csv, HEADER)"
        with cur.copy(statement, compiled.construct_params(params)) as copy:
            for block in copy:
                buffer.write(block)
    buffer.seek(0)
    header = buffer.readline().decode().rstrip("\r\n").split(",")
    buffer.seek(0)
    return pd.read_csv(
        buffer,
        dtype={c: str for c in text_columns},
        keep_default_na=False,
        na_values={c: ["", "NaN"] for c in header if c not in text_columns},
    )


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ID_COLUMNS + FEATURE_COLUMNS if c not in frame.columns]
    if missing:  # the SQL and FEATURE_COLUMNS drifted apart: a programming error
        raise RuntimeError(f"sql/customer_features.sql does not return {missing}")
    out = frame[ID_COLUMNS + FEATURE_COLUMNS].copy()
    out["company_id"] = out["company_id"].astype(str)
    out["customer_id"] = out["customer_id"].astype(str)
    out["observed_category"] = out["observed_category"].astype(str)
    out["n_matured"] = out["n_matured"].astype("int64")
    out[FEATURE_COLUMNS] = out[FEATURE_COLUMNS].astype("float64")
    return out.reset_index(drop=True)


def add_customers_without_counted_bills(
    engine: Engine,
    as_of: date,
    rules: Rules,
    features: pd.DataFrame,
    exclude_run_id: str | None = None,
    *,
    partition: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """``features`` plus one row per customer with a bill issued by ``as_of`` but none that counts.

    Such customers (every bill cancelled or voided, or quarantined in the run
    ``exclude_run_id``) have no row in ``sql/customer_features.sql``; here they
    get ``n_matured`` 0, observed category ``new``, every count, share, day
    statistic and amount 0, ``tenure_days`` = as_of - first issue date,
    ``since_last_bill_days`` = as_of - last issue date, the "since the last
    payment / late bill" days = tenure (the query's neutral values), and the
    company columns of the company's other customers (0 when it has none).
    Returns a new frame: the rows of ``features``, then the added ones (in the
    query's order); ``features`` is not changed.  ``partition`` (index, count):
    only that partition's customers (``features`` is then that partition's,
    from :func:`extract_features`); their company columns equal the whole run's.
    """
    params = {**rules.sql_params(), "as_of": as_of, "exclude_run_id": exclude_run_id}
    params = _partition_params(params, partition)
    with engine.connect() as conn:
        missing = pd.read_sql(sa.text(read_sql("customers_without_counted_bills")), conn, params=params)
    if missing.empty:
        return features
    missing["company_id"] = missing["company_id"].astype(str)
    missing["customer_id"] = missing["customer_id"].astype(str)
    known = pd.MultiIndex.from_frame(features[["company_id", "customer_id"]])
    missing = missing[~pd.MultiIndex.from_frame(missing[["company_id", "customer_id"]]).isin(known)]
    if missing.empty:
        return features
    rows = pd.DataFrame(0.0, index=range(len(missing)), columns=FEATURE_COLUMNS)
    rows.insert(0, "company_id", missing["company_id"].to_numpy())
    rows.insert(1, "customer_id", missing["customer_id"].to_numpy())
    rows.insert(2, "n_matured", 0)
    rows.insert(3, "observed_category", "new")
    tenure = (pd.Timestamp(as_of) - pd.to_datetime(missing["first_issued"])).dt.days.to_numpy(dtype=float)
    rows["tenure_days"] = tenure
    rows["since_last_bill_days"] = (pd.Timestamp(as_of) - pd.to_datetime(missing["last_issued"])).dt.days.to_numpy(dtype=float)
    rows["since_last_payment_days"] = tenure
    rows["since_last_late_days"] = tenure
    company_columns = [c for c in FEATURE_COLUMNS if c.startswith("company_")]
    company = features.groupby("company_id")[company_columns].first()  # a partition holds whole companies
    looked_up = company.reindex(rows["company_id"]).fillna(0.0).to_numpy()
    rows[company_columns] = looked_up
    return _typed(pd.concat([features, rows[ID_COLUMNS + FEATURE_COLUMNS]], ignore_index=True))
