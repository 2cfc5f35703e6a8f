"""Bill events per customer between two as-of dates (``sql/bill_events.sql``): the hysteresis's evidence."""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from payer_scoring.db import read_sql
from payer_scoring.rules import Rules

BILL_EVENT_COLUMNS: list[str] = ["company_id", "customer_id", "n_issued", "n_paid", "n_matured"]


def bill_events(engine: Engine, since: date, as_of: date, rules: Rules) -> pd.DataFrame:
    """Customers with a bill issued, paid or matured in (``since``, ``as_of``]: one row each, counts per kind.

    Raises ValueError when ``since`` is after ``as_of``.
    """
    if since > as_of:
        raise ValueError(f"since {since} is after as_of {as_of}")
    params = {**rules.sql_params(), "since": since, "as_of": as_of}
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(read_sql("bill_events")), conn, params=params)
    frame = frame[BILL_EVENT_COLUMNS].copy()
    frame["company_id"] = frame["company_id"].astype(str)
    frame["customer_id"] = frame["customer_id"].astype(str)
    for c in BILL_EVENT_COLUMNS[2:]:
        frame[c] = frame[c].astype("int64")
    return frame.reset_index(drop=True)


def mark_bill_events(frame: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """Boolean per row of ``frame`` (company_id, customer_id): the customer is in ``events``."""
    keys = pd.MultiIndex.from_frame(events[["company_id", "customer_id"]])
    return pd.Series(pd.MultiIndex.from_frame(frame[["company_id", "customer_id"]]).isin(keys), index=frame.index)
