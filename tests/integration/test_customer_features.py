"""Feature and label SQL against a real PostgreSQL, with values worked out by hand.

Fixture (T = 2025-06-30, horizon 90 days), company C1:

customer A                issued  due    paid   status     amount  notes
  A1 paid early           05-01   05-20  05-15  paid        100    pix, mail
  A2 paid on due date     05-05   06-01  06-01  paid        200    boleto, mail+wa
  A3 paid late (10 d)     05-10   06-05  06-15  paid        300    boleto, wa, 1/2
  A4 unpaid past due      05-20   06-10  -      overdue     400    pix, 2/2
  A5 unpaid not yet due   06-20   07-20  -      pending     500    pix
  A6 cancelled            05-01   05-15  -      cancelled  1000    (never counts)
  A7 paid after T         06-01   06-20  07-05  paid        700    card (unpaid at T)
  A8 issued after T       07-05   07-25  -      pending     800    (not known at T)
customer B: B1 early (04-01/04-10/04-05), B2 on due (04-15/05-10/05-10),
            B3 prepaid not yet due (06-25/07-10/06-28) -> 2 matured: `new`.
company C2, customer C: C1 protested 03-01/03-15 unpaid (event known: due <= T-30),
  C2 processing_protest 06-01/06-15 unpaid (event not yet known), C3 unknown status
  'weird_status' 06-01/06-10 (treated as open), C4 status paid but no paid date
  05-01/05-10 (unpaid).  C2 is a churn-risk company in `companies`.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from billing_fixtures import bill, insert_bills
from payer_scoring.rules import load_rules
from payer_scoring.features import FEATURE_COLUMNS, ID_COLUMNS, extract_features
from payer_scoring.labels import compute_labels

T = date(2025, 6, 30)


def fixture_rows() -> list[dict]:
    return [
        bill("A", "2025-05-01", "2025-05-20", "2025-05-15", amount=100, method="pix", by_mail=True, number="A1"),
        bill("A", "2025-05-05", "2025-06-01", "2025-06-01", amount=200, method="boleto", by_mail=True, by_whatsapp=True, number="A2"),
        bill("A", "2025-05-10", "2025-06-05", "2025-06-15", amount=300, method="boleto", by_whatsapp=True, installment="1/2", number="A3"),
        bill("A", "2025-05-20", "2025-06-10", None, "overdue", amount=400, method="pix", installment="2/2", number="A4"),
        bill("A", "2025-06-20", "2025-07-20", None, amount=500, method="pix", number="A5"),
        bill("A", "2025-05-01", "2025-05-15", None, "cancelled", amount=1000, number="A6"),
        bill("A", "2025-06-01", "2025-06-20", "2025-07-05", amount=700, method="credit_card", number="A7"),
        bill("A", "2025-07-05", "2025-07-25", None, amount=800, number="A8"),
        bill("B", "2025-04-01", "2025-04-10", "2025-04-05", number="B1"),
        bill("B", "2025-04-15", "2025-05-10", "2025-05-10", number="B2"),
        bill("B", "2025-06-25", "2025-07-10", "2025-06-28", number="B3"),
        bill("C", "2025-03-01", "2025-03-15", None, "protested", company="C2", number="C1"),
        bill("C", "2025-06-01", "2025-06-15", None, "processing_protest", company="C2", number="C2"),
        bill("C", "2025-06-01", "2025-06-10", None, "weird_status", company="C2", number="C3"),
        bill("C", "2025-05-01", "2025-05-10", None, "paid", company="C2", number="C4"),
    ]


@pytest.fixture
def fixture_db(clean_db):
    insert_bills(clean_db, fixture_rows())
    with clean_db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO companies (company_id, is_churn_risk, is_key_account) VALUES "
                "('C2', true, false), ('C2', false, false), (NULL, true, true), ('C1', false, true)"
            )
        )
    return clean_db


def _row(frame: pd.DataFrame, customer: str) -> dict:
    rows = frame[frame.customer_id == customer]
    assert len(rows) == 1
    return rows.iloc[0].to_dict()


def test_customer_a_features_match_hand_worked_values(fixture_db):
    frame = extract_features(fixture_db, T, load_rules(), horizon_days=90)
    assert list(frame.columns) == ID_COLUMNS + FEATURE_COLUMNS
    a = _row(frame, "A")
    expected = {
        "n_matured": 5,                 # A1 A2 A3 A4 A7 (A5 not due, A6 cancelled, A8 not issued)
        "observed_category": "forgetful",  # 3 late / 5 = 0.6
        "n_bills": 6,
        "n_matured_bills": 5,
        "n_late": 3,                    # A3 paid late, A4 unpaid, A7 paid only after T
        "n_paid_early": 1,              # A1 (A2 paid on the due date is not early)
        "n_unpaid_overdue": 2,          # A4, A7
        "late_share": 0.6,
        "dpd_mean_days": 8.0,           # [0, 0, 10, 20, 10] / 5
        "dpd_max_days": 20.0,           # A4: 06-30 - 06-10
        "dpd_p90_days": 16.0,           # sorted [0,0,10,10,20], rank 3.6 -> 10 + 0.6*10
        "paid_delay_mean_days": 5 / 3,  # A1 -5, A2 0, A3 +10
        "recent3_late_share": 1.0,      # A7, A4, A3
        "recent3_dpd_mean_days": 40 / 3,
        "n_matured_90d": 5.0,
        "late_share_90d": 0.6,
        "late_share_prev90d": 0.6,      # nothing matured 90-180 days ago: overall share
        "late_share_trend": 0.0,
        "tenure_days": 60.0,            # 06-30 - 05-01
        "since_last_bill_days": 10.0,   # A5 issued 06-20
        "since_last_payment_days": 15.0,  # A3 paid 06-15 (A7's 07-05 payment is after T)
        "since_last_late_days": 10.0,   # A7 due 06-20
        "n_open": 3.0,                  # A4 A5 A7
        "open_brl": 1600.0,
        "overdue_brl": 1100.0,          # A4 + A7
        "n_upcoming_open": 1.0,         # A5 due 07-20 < T + 90
        "n_upcoming_prepaid": 0.0,
        "n_bills_90d": 6.0,
        "mean_amount_brl": 2200 / 6,
        "max_amount_brl": 700.0,
        "instalment_share": 2 / 6,
        "pix_share": 3 / 6,
        "boleto_share": 2 / 6,
        "card_share": 1 / 6,
        "by_mail_share": 2 / 6,
        "by_whatsapp_share": 2 / 6,
        "n_protest_events": 0.0,
        "company_late_share": 3 / 7,    # C1: A 3 late of 5, B 0 of 2
        "company_n_customers": 2.0,
        "company_is_churn_risk": 0.0,
        "company_is_key_account": 1.0,
    }
    for key, value in expected.items():
        if isinstance(value, str):
            assert a[key] == value, key
        else:
            assert a[key] == pytest.approx(value, abs=1e-9), key
    assert set(expected) >= set(FEATURE_COLUMNS)


def test_customer_b_is_new_and_c_is_bad_with_unknown_status_open(fixture_db):
    frame = extract_features(fixture_db, T, load_rules(), horizon_days=90)
    assert sorted(frame.customer_id) == ["A", "B", "C"]
    b = _row(frame, "B")
    assert (b["n_matured"], b["observed_category"], b["n_late"]) == (2, "new", 0)
    assert b["n_paid_early"] == 2 and b["n_upcoming_prepaid"] == 1 and b["n_upcoming_open"] == 0
    assert b["since_last_late_days"] == b["tenure_days"] == 90  # never late: tenure (06-30 - 04-01)
    c = _row(frame, "C")
    assert c["n_bills"] == 4 and c["n_matured"] == 4 and c["n_late"] == 4  # the unknown status counts as open
    assert c["observed_category"] == "bad"
    assert c["n_protest_events"] == 1  # C1 (due 03-15 <= T-30); C2 due 06-15 not yet known
    assert c["since_last_payment_days"] == c["tenure_days"] == 121  # never paid
    assert c["company_is_churn_risk"] == 1.0 and c["company_is_key_account"] == 0.0
    assert c["company_late_share"] == 1.0 and c["company_n_customers"] == 1
    assert not frame[FEATURE_COLUMNS].isna().any().any()


def test_quarantined_bills_of_the_run_are_left_out(fixture_db):
    with fixture_db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO quarantined_payments (flow_run_id, as_of_date, company_id, payment_number, installment, reason) "
                "VALUES ('run-1', :t, 'C1', 'A4', '2/2', 'test')"
            ),
            {"t": T},
        )
    rules = load_rules()
    other = _row(extract_features(fixture_db, T, rules, exclude_run_id="run-2", horizon_days=90), "A")
    assert other["n_late"] == 3
    a = _row(extract_features(fixture_db, T, rules, exclude_run_id="run-1", horizon_days=90), "A")
    assert (a["n_matured"], a["n_late"], a["late_share"], a["n_bills"]) == (4, 2, 0.5, 5)


def test_grace_days_and_original_due_date_change_maturity(fixture_db, tmp_path):
    text = load_rules().source
    body = open(text).read()
    grace = tmp_path / "grace.toml"
    grace.write_text(body.replace("grace_days = 0", "grace_days = 10"))
    a = _row(extract_features(fixture_db, T, load_rules(grace), horizon_days=90), "A")
    # due + 10 < T: A1 A2 A3 A4 matured (A7: 06-30 is not before T); A3 paid 10 days late is on time
    assert (a["n_matured"], a["n_late"]) == (4, 1)
    with fixture_db.begin() as conn:  # A3 renegotiated: original due 05-20, current 06-05
        conn.execute(sa.text("UPDATE payments SET original_due_date_dte = DATE '2025-05-20' WHERE payment_number = 'A3'"))
    original = tmp_path / "original.toml"
    original.write_text(body.replace('due_date_column = "due_date_dte"', 'due_date_column = "original_due_date_dte"'))
    assert _row(extract_features(fixture_db, T, load_rules(), horizon_days=90), "A")["n_late"] == 3
    a = _row(extract_features(fixture_db, T, load_rules(original), horizon_days=90), "A")
    assert a["n_late"] == 3 and a["dpd_max_days"] == 26  # A3 now 26 days late (06-15 - 05-20)


def test_features_on_empty_database_are_an_empty_frame(clean_db):
    frame = extract_features(clean_db, T, load_rules(), horizon_days=90)
    assert frame.empty and list(frame.columns) == ID_COLUMNS + FEATURE_COLUMNS


# ------------------------------------------------------------------ labels
def test_performance_window_labels(fixture_db):
    """Window (06-30, 09-28]: A5 due 07-20 unpaid (late), A8 due 07-25 unpaid (late) -> A bad;
    B3 due 07-10 prepaid -> B good; C has no bill maturing in the window -> no label."""
    labels = compute_labels(fixture_db, T, 90, load_rules())
    got = {r.customer_id: (r.n_window, r.n_window_late, r.label) for r in labels.itertuples()}
    assert got == {"A": (2, 2, "bad"), "B": (1, 0, "good")}
    with fixture_db.begin() as conn:  # A5 paid on time, within the window
        conn.execute(sa.text("UPDATE payments SET paid_at_dte = DATE '2025-07-19', payment_status = 'paid' WHERE payment_number = 'A5'"))
    labels = compute_labels(fixture_db, T, 90, load_rules())
    assert labels.set_index("customer_id").loc["A", "label"] == "forgetful"  # 1 late of 2 = 0.5
    with fixture_db.begin() as conn:  # A8 paid after the window's end: still late
        conn.execute(sa.text("UPDATE payments SET paid_at_dte = DATE '2025-10-01', payment_status = 'paid' WHERE payment_number = 'A8'"))
    assert compute_labels(fixture_db, T, 90, load_rules()).set_index("customer_id").loc["A", "n_window_late"] == 1


# ------------------------------------------------------------------ leakage
def _random_history(seed: int, customers: int = 300) -> list[dict]:
    """Random bills around T: issue dates from T-300 to T+120, delays from early to never."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        company = f"K{c % 7}"
        for _ in range(rng.integers(1, 12)):
            issued = pd.Timestamp(T) + pd.Timedelta(days=int(rng.integers(-300, 120)))
            due = issued + pd.Timedelta(days=int(rng.integers(5, 60)))
            status = rng.choice(["paid", "pending", "overdue", "cancelled", "protested", "paid_after_protested"], p=[0.55, 0.15, 0.1, 0.1, 0.05, 0.05])
            paid = None
            if status in ("paid", "paid_after_protested"):
                paid = (due + pd.Timedelta(days=int(rng.integers(-20, 60)))).date().isoformat()
            rows.append(
                bill(
                    f"cust{c}", issued.date().isoformat(), due.date().isoformat(), paid, str(status),
                    amount=float(rng.integers(10, 5000)), company=company,
                    installment=str(rng.choice(["1/1", "1/3", "2/3"])), method=str(rng.choice(["pix", "boleto", "card"])),
                    by_mail=bool(rng.integers(0, 2)), by_whatsapp=bool(rng.integers(0, 2)),
                )
            )
    return rows


def test_no_feature_at_t_depends_on_anything_dated_after_t(clean_db):
    insert_bills(clean_db, _random_history(seed=7))
    rules = load_rules()
    before = extract_features(clean_db, T, rules, horizon_days=90)
    assert len(before) > 200
    with clean_db.begin() as conn:
        # the future changes: payments after T are undone or moved later, bills issued
        # after T disappear, new bills issued after T appear, payments after T are added
        conn.execute(sa.text("UPDATE payments SET paid_at_dte = NULL, payment_status = CASE WHEN payment_status = 'paid_after_protested' THEN 'protested' ELSE 'overdue' END WHERE paid_at_dte > :t"), {"t": T})
        conn.execute(sa.text("DELETE FROM payments WHERE issue_date_dte > :t AND payment_number LIKE 'P%' AND random() < 0.5"), {"t": T})
        conn.execute(sa.text("UPDATE payments SET paid_at_dte = :t + 3, payment_status = 'paid' WHERE paid_at_dte IS NULL AND payment_status = 'overdue' AND due_date_dte < :t + 200"), {"t": T})
    insert_bills(clean_db, [bill(f"cust{c}", "2025-07-01", "2025-06-15", "2025-07-02", company=f"K{c % 7}") for c in range(0, 300, 3)])
    insert_bills(clean_db, [bill("brand-new", "2025-07-01", "2025-07-10", company="K1")])
    after = extract_features(clean_db, T, rules, horizon_days=90)
    pd.testing.assert_frame_equal(before, after)


# ------------------------------------------------------------------ rule boundaries in SQL
BOUNDARY_CASES = {  # customer: (matured bills, late among them, expected observed category)
    "two_matured": (2, 0, "new"),
    "two_matured_late": (2, 2, "new"),
    "three_matured": (3, 0, "good"),
    "three_matured_one_late": (3, 1, "forgetful"),  # 0.333
    "share_030": (10, 3, "doubtful"),
    "share_0308": (13, 4, "forgetful"),
    "share_070": (10, 7, "forgetful"),
    "share_0714": (7, 5, "bad"),
    "share_010": (10, 1, "doubtful"),
}


def _boundary_rows(t: date) -> list[dict]:
    rows = []
    base = pd.Timestamp(t)
    for customer, (n, late, _) in BOUNDARY_CASES.items():
        for i in range(n):
            due = (base - pd.Timedelta(days=10 + 3 * i)).date()
            issued = (due - pd.Timedelta(days=20)).isoformat()
            paid = (due + pd.Timedelta(days=2 if i < late else 0)).isoformat()
            if i == 0 and late:  # one of the late bills is left unpaid instead
                paid = None
            rows.append(bill(customer, issued, due.isoformat(), paid, "overdue" if paid is None else None))
    return rows


def test_observed_category_at_exact_boundaries(clean_db):
    insert_bills(clean_db, _boundary_rows(T))
    frame = extract_features(clean_db, T, load_rules(), horizon_days=90).set_index("customer_id")
    for customer, (n, late, expected) in BOUNDARY_CASES.items():
        assert frame.loc[customer, "n_matured"] == n, customer
        assert frame.loc[customer, "n_late"] == late, customer
        assert frame.loc[customer, "observed_category"] == expected, customer


def test_label_at_exact_boundaries(clean_db):
    """The same bills seen as a performance window: labels use the thresholds, not the minimum."""
    insert_bills(clean_db, _boundary_rows(T))
    start = date(2025, 3, 1)  # every bill matures in (03-01, 03-01 + 121 days]
    labels = compute_labels(clean_db, start, (T - start).days, load_rules()).set_index("customer_id")
    for customer, (n, late, expected) in BOUNDARY_CASES.items():
        want = {"two_matured": "good", "two_matured_late": "bad"}.get(customer, expected)
        assert (labels.loc[customer, "n_window"], labels.loc[customer, "n_window_late"]) == (n, late), customer
        assert labels.loc[customer, "label"] == want, customer
