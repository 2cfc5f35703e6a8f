"""The weekly picture of category shares reads what was published: the latest run of each 7-day period."""

from __future__ import annotations

from datetime import date

import pandas as pd

from payer_scoring.reports import weekly_category_counts
from payer_scoring.results import write_results


def _scores(categories: list[str]) -> pd.DataFrame:
    n = len(categories)
    return pd.DataFrame({
        "company_id": ["c1"] * n,
        "customer_id": [f"k{i}" for i in range(n)],
        "category": categories,
        "p_good": [0.7] * n, "p_doubtful": [0.1] * n, "p_forgetful": [0.1] * n, "p_bad": [0.1] * n,
        "observed_category": categories,
    })


def test_weekly_counts_take_each_periods_latest_run(clean_db):
    runs = {
        date(2026, 6, 1): ["good", "good", "bad"],        # outside 2 weeks before 2026-06-21
        date(2026, 6, 9): ["good", "bad", "bad"],         # 06-08..06-14: superseded by 06-10
        date(2026, 6, 10): ["new", "bad", "bad", "doubtful"],
        date(2026, 6, 16): ["good"] * 5,                  # 06-15..06-21: superseded by 06-20
        date(2026, 6, 20): ["good", "good", "forgetful", "new", "new"],
    }
    for day, categories in runs.items():
        write_results(clean_db, _scores(categories), as_of=day, model_version="m1", flow_run_id=f"r{day}")

    weeks = weekly_category_counts(clean_db, date(2026, 6, 21), weeks=2)

    assert weeks == [
        {"as_of": date(2026, 6, 10), "counts": {"new": 1, "bad": 2, "doubtful": 1}},
        {"as_of": date(2026, 6, 20), "counts": {"good": 2, "forgetful": 1, "new": 2}},
    ]
    assert weekly_category_counts(clean_db, date(2026, 5, 31)) == []
