"""Issue 11 against the real database: bill events, a row for every customer, risk score and reasons in the
billing view, and the backtest of past scoring runs (values worked out by hand)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from billing_fixtures import bill, insert_bills
from models.risk_reasons import REASONS
from payer_scoring.bill_events import bill_events
from payer_scoring.features import add_customers_without_counted_bills, extract_features
from payer_scoring.results import read_customer_category, read_previous_categories, write_results
from payer_scoring.rules import load_rules

T = date(2025, 6, 10)


def test_bill_events_between_two_dates(clean_db):
    insert_bills(clean_db, [
        bill("a", "2025-06-10", "2025-07-10"),                              # issued on T: event
        bill("b", "2025-05-01", "2025-06-08", paid="2025-06-10"),           # paid on T: event
        bill("c", "2025-05-01", "2025-06-08"),                              # due 06-08: matured already at 06-09
        bill("d", "2025-05-01", "2025-06-09"),                              # due 06-09: matured at T (06-09 < 06-10), not at 06-09
        bill("e", "2025-05-01", "2025-06-20"),                              # nothing between 06-09 and 06-10
        bill("f", "2025-06-10", "2025-07-10", status="cancelled"),          # cancelled bills never count
        bill("g", "2025-05-01", "2025-06-01", paid="2025-06-09"),           # paid the day before: not in (06-09, 06-10]
    ])
    events = bill_events(clean_db, date(2025, 6, 9), T, load_rules())
    got = {r.customer_id: (r.n_issued, r.n_paid, r.n_matured) for r in events.itertuples()}
    assert got == {"a": (1, 0, 0), "b": (0, 1, 0), "d": (0, 0, 1)}
    with pytest.raises(ValueError, match="after"):
        bill_events(clean_db, T, date(2025, 6, 9), load_rules())


def test_customer_whose_every_bill_is_cancelled_still_gets_a_row(clean_db):
    insert_bills(clean_db, [
        bill("ok", "2025-01-01", "2025-02-01", paid="2025-01-30", company="C1"),
        bill("gone", "2025-03-01", "2025-04-01", status="cancelled", company="C1"),
        bill("gone", "2025-05-01", "2025-06-01", status="error", company="C1"),
        bill("future", "2025-07-01", "2025-08-01", status="cancelled", company="C1"),  # issued after T: no row
    ])
    rules = load_rules()
    features = extract_features(clean_db, T, rules, horizon_days=90)
    assert features["customer_id"].tolist() == ["ok"]
    out = add_customers_without_counted_bills(clean_db, T, rules, features)
    assert out["customer_id"].tolist() == ["ok", "gone"]
    gone = out.iloc[1]
    assert gone["observed_category"] == "new" and gone["n_matured"] == 0
    assert gone["tenure_days"] == (T - date(2025, 3, 1)).days
    assert gone["since_last_bill_days"] == (T - date(2025, 5, 1)).days
    assert gone["n_bills"] == 0 and gone["late_share"] == 0
    assert gone["company_late_share"] == features.iloc[0]["company_late_share"]
    assert not out.isna().any().any()
    assert len(features) == 1  # the input is not changed


def test_risk_score_and_reason_texts_reach_the_billing_view(clean_db):
    frame = pd.DataFrame({
        "company_id": ["X", "X"], "customer_id": ["y1", "y2"], "category": ["bad", "good"],
        "p_good": [0.1, 0.7], "p_doubtful": [0.1, 0.1], "p_forgetful": [0.2, 0.1], "p_bad": [0.6, 0.1],
        "observed_category": ["bad", "good"], "risk_score": [0.9, 0.3],
        "reason_codes": [["UNPAID_OVERDUE_BILLS", "DAYS_PAST_DUE_HIGH"], []],
    })
    write_results(clean_db, frame, as_of=T, model_version="m1", flow_run_id="r1")
    row = read_customer_category(clean_db, "X", "y1")
    assert row["risk_score"] == 0.9
    assert row["reason_codes"] == ["UNPAID_OVERDUE_BILLS", "DAYS_PAST_DUE_HIGH"]
    assert row["reason_texts_en"] == [REASONS["UNPAID_OVERDUE_BILLS"][2], REASONS["DAYS_PAST_DUE_HIGH"][2]]
    assert row["reason_texts_pt_br"] == [REASONS["UNPAID_OVERDUE_BILLS"][1], REASONS["DAYS_PAST_DUE_HIGH"][1]]
    assert read_customer_category(clean_db, "X", "y2")["reason_codes"] == []
    # the README's example query: bad payers of company X by risk
    with clean_db.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT customer_id, risk_score FROM billing_customer_category "
            "WHERE company_id = :c AND category IN ('bad', 'forgetful') ORDER BY risk_score DESC"), {"c": "X"}).all()
    assert rows == [("y1", 0.9)]
    previous_date, previous = read_previous_categories(clean_db, date(2025, 6, 11))
    assert previous_date == T and previous["category"].tolist() == ["bad", "good"]
    assert read_previous_categories(clean_db, T)[0] is None


def test_reason_code_labels_view_is_the_python_table(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT code, text_pt_br, text_en FROM reason_code_labels ORDER BY sort_order")).all()
    assert [tuple(r) for r in rows] == [(code, pt, en) for code, (_, pt, en) in REASONS.items()]


def test_backtest_of_a_past_scoring_run(clean_db):
    """Four judged customers scored at T; their bills maturing in (T, T+90] decide the outcome."""
    from models.monitoring import backtest_scoring_runs
    from payer_scoring.settings import Settings

    insert_bills(clean_db, [
        bill("a", "2025-06-01", "2025-07-01", paid="2025-07-05"),   # late -> outcome 1
        bill("b", "2025-06-01", "2025-07-01", paid="2025-06-30"),   # on time -> 0
        bill("c", "2025-06-01", "2025-07-01"),                      # unpaid -> 1
        bill("d", "2025-06-01", "2025-07-01", paid="2025-06-20"),   # on time -> 0
        bill("n", "2025-06-01", "2025-07-01", paid="2025-07-02"),   # new customer, late -> 1
    ])
    frame = pd.DataFrame({
        "company_id": ["C1"] * 6, "customer_id": list("abcdnz"),
        "category": ["bad", "good", "forgetful", "doubtful", "new", "good"],
        "p_good": [0.25] * 6, "p_doubtful": [0.25] * 6, "p_forgetful": [0.25] * 6, "p_bad": [0.25] * 6,
        "observed_category": ["forgetful", "good", "good", "bad", "new", "good"],
        "risk_score": [0.8, 0.3, 0.6, 0.4, 0.7, 0.1],  # z has no bill in the window: no outcome
        "reason_codes": [[]] * 6,
    })
    write_results(clean_db, frame, as_of=T, model_version="m1", flow_run_id="r1")
    settings = Settings(horizon_days=90)
    reports = backtest_scoring_runs(clean_db, date(2025, 12, 31), settings, load_rules())
    assert len(reports) == 1
    rep = reports[0]
    assert (rep["n_scored"], rep["n_with_outcome"], rep["n_judged"]) == (6, 5, 4)
    # judged: a(1, .8) b(0, .3) c(1, .6) d(0, .4): the risk score separates them perfectly
    assert rep["risk"]["auc"] == 1.0
    assert rep["risk"]["brier"] == pytest.approx(np.mean([0.2**2, 0.3**2, 0.4**2, 0.4**2]))
    # observed: a forgetful(2), c good(0) vs b good(0), d bad(3): pairs (a,b) 1, (a,d) 0, (c,b) .5, (c,d) 0 -> 1.5/4
    assert rep["observed_auc"] == pytest.approx(0.375)
    # category: a bad(3), c forgetful(2) vs b good(0), d doubtful(1): all pairs won
    assert rep["category_auc"] == 1.0
    assert rep["bad_rate_category"]["bad"] == {"n": 1, "outcome_rate": 1.0}
    assert rep["risk_all"]["n"] == 5
    with clean_db.connect() as conn:
        row = conn.execute(sa.text("SELECT as_of_date, risk_auc, observed_auc, n_with_outcome FROM backtest_reports")).one()
    assert tuple(row) == (T, 1.0, 0.375, 5)
    # rerun: the row is replaced, not duplicated
    backtest_scoring_runs(clean_db, date(2025, 12, 31), settings, load_rules())
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM backtest_reports")).scalar() == 1
