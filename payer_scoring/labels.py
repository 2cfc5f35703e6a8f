"""Performance-window labels: the rules applied to the bills maturing in (T, T+H].

The query is ``sql/performance_labels.sql``.  Labels exist only for snapshots
whose window has fully matured (T + H on or before the data's as-of date) and
only for customers with at least one bill maturing in the window.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from payer_scoring.db import read_sql
from payer_scoring.rules import Rules

LABEL_COLUMNS: list[str] = ["company_id", "customer_id", "n_window", "n_window_late", "label"]


def compute_labels(engine: Engine, as_of: date, horizon_days: int, rules: Rules) -> pd.DataFrame:
    """Label of every customer with a bill maturing in (as_of, as_of + horizon_days].

    One row per (company_id, customer_id): n_window (bills maturing in the
    window), n_window_late (of those, paid late or unpaid at the window's end),
    label (good/doubtful/forgetful/bad by the rules' late-share thresholds).
    The caller must make sure as_of + horizon_days is not after the data's end.
    """
    params = {**rules.sql_params(), "as_of": as_of, "horizon_days": int(horizon_days)}
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(read_sql("performance_labels")), conn, params=params)
    frame = frame[LABEL_COLUMNS].copy()
    frame["company_id"] = frame["company_id"].astype(str)
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["n_window"] = frame["n_window"].astype("int64")
    frame["n_window_late"] = frame["n_window_late"].astype("int64")
    frame["label"] = frame["label"].astype(str)
    return frame.reset_index(drop=True)
