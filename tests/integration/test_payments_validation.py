"""Payments validation in few scans (issue 14) gives the same report and quarantine as GX on the whole table.

A small, deliberately broken bill table (one bill per failing expectation,
plus clean bills) is validated twice: the pre-issue-14 way (``all_in_gx=True``:
GX evaluates every expectation on the table, ~25 queries) and the new way
(one pass of metrics judged by each expectation's GX class).  Every outcome
field and the quarantined bills must be equal, and both must equal the
values pinned below, worked out by hand from the rows inserted here.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from payer_scoring.validation import ValidationFailed, validate_payments_in_database

AS_OF = date(2026, 6, 15)
LATEST = date(2026, 6, 16)
CLEAN = 2000  # clean bills, so that one bad bill stays within `mostly` (0.1 % of 2,010 bills = 2 bills)

# (payment_number, changes from a clean bill); each breaks what its name says
BROKEN = [
    ("neg-billing", {"billing_amount": -5}),
    ("neg-paid", {"paid_amount": -7}),
    ("no-due", {"due_date_dte": None}),
    ("due-before-issue", {"due_date_dte": "2026-01-01", "issue_date_dte": "2026-02-01"}),
    ("paid-no-date", {"payment_status": "paid", "paid_at_dte": None}),
    ("future-issue", {"issue_date_dte": "2026-07-01", "due_date_dte": "2026-07-10"}),
    ("far-due", {"due_date_dte": "2150-01-01"}),
    ("future-paid", {"payment_status": "paid", "paid_at_dte": "2026-08-01"}),
    ("weird-status", {"payment_status": "mystery"}),
    ("unpaid-with-date", {"payment_status": "pending", "paid_at_dte": "2026-01-05"}),
]
QUARANTINED = {
    ("neg-billing", "billing_amount_not_negative"),
    ("neg-paid", "paid_amount_not_negative"),
    ("no-due", "due_date_present"),
    ("due-before-issue", "due_not_before_issue"),
    ("paid-no-date", "paid_bill_has_paid_date"),
    ("future-issue", "issue_date_plausible"),
    ("far-due", "due_date_plausible"),
    ("future-paid", "paid_date_plausible"),
}


def _insert(engine, extra_installments: int = 0) -> None:
    clean = {"payment_status": "paid", "billing_amount": 100, "paid_amount": 100, "issue_date_dte": "2026-01-01",
             "due_date_dte": "2026-01-10", "paid_at_dte": "2026-01-09"}
    rows = [{**clean, "payment_number": f"ok-{i}", "installment": "1/1"} for i in range(CLEAN)]
    rows += [{**clean, **change, "payment_number": number, "installment": "1/1"} for number, change in BROKEN]
    rows += [{**clean, "payment_number": f"plan-{i}", "installment": "3/2"} for i in range(extra_installments)]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO payments (company_id, customer_id, payment_number, issue_date_dte, due_date_dte, paid_at_dte, "
                "payment_status, billing_amount, paid_amount, installment, fees, fine) VALUES ('c1', 'u1', :payment_number, "
                "CAST(:issue_date_dte AS date), CAST(:due_date_dte AS date), CAST(:paid_at_dte AS date), :payment_status, "
                ":billing_amount, :paid_amount, :installment, 1, 0)"
            ),
            rows,
        )


def _quarantined(engine, run_id: str) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT payment_number, reason FROM quarantined_payments WHERE flow_run_id = :r"), {"r": run_id}
        ).all()
    return {(r.payment_number, r.reason.split(":")[0]) for r in rows}


def _by_name(report) -> dict:
    return {o.name: o for o in report.outcomes}


def test_few_scans_report_and_quarantine_equal_gx_on_the_whole_table(clean_db):
    _insert(clean_db)
    gx = validate_payments_in_database(clean_db, as_of=AS_OF, flow_run_id="gx", latest_plausible_date=LATEST, all_in_gx=True)
    fast = validate_payments_in_database(clean_db, as_of=AS_OF, flow_run_id="fast", latest_plausible_date=LATEST)
    # every field: success, counts, percents, observed values, samples (GX lists results in its own order,
    # the few-scan path in the suite's order: compared by name)
    assert _by_name(fast) == _by_name(gx)
    assert fast.quarantined == gx.quarantined
    assert _quarantined(clean_db, "fast") == _quarantined(clean_db, "gx") == QUARANTINED
    assert sorted(fast.markdown().splitlines()[1:]) == sorted(gx.markdown().splitlines()[1:])  # all but the seconds

    by_name = {o.name: o for o in fast.outcomes}
    total = CLEAN + len(BROKEN)
    # pinned from the rows above
    assert by_name["payments_not_empty"].observed == total
    assert (by_name["billing_amount_not_negative"].unexpected_count, by_name["billing_amount_not_negative"].sample) == (1, [Decimal("-5.00")])
    assert by_name["billing_amount_not_negative"].unexpected_percent == pytest.approx(100 / total)
    assert by_name["paid_amount_not_negative"].sample == [Decimal("-7.00")]
    assert (by_name["due_date_present"].unexpected_count, by_name["due_date_present"].sample) == (1, [None])
    assert by_name["due_not_before_issue"].sample == [[date(2026, 1, 1), date(2026, 2, 1)]] or by_name["due_not_before_issue"].sample == [(date(2026, 1, 1), date(2026, 2, 1))]
    assert by_name["paid_bill_has_paid_date"].unexpected_count == 1
    # the paid-status domain: every clean bill, and the three broken ones that are paid
    paid_rows = CLEAN + sum(1 for _, c in BROKEN if c.get("payment_status", "paid") == "paid")
    assert by_name["paid_bill_has_paid_date"].unexpected_percent == pytest.approx(100 / paid_rows)
    # the unpaid domain: 'mystery' (a clean bill's paid date) and 'pending', both with a paid date, in table order
    unpaid = by_name["unpaid_bill_has_no_paid_date"]
    assert (unpaid.success, unpaid.unexpected_count, unpaid.sample) == (False, 2, [date(2026, 1, 9), date(2026, 1, 5)])
    assert by_name["status_known"].sample == ["mystery"]
    assert by_name["issue_date_plausible"].sample == [date(2026, 7, 1)]
    assert by_name["due_date_plausible"].sample == [date(2150, 1, 1)]
    assert by_name["paid_date_plausible"].sample == [date(2026, 8, 1)]
    assert by_name["bill_key_unique"].unexpected_count == 0 and by_name["bill_key_unique"].success
    assert by_name["installment_format"].unexpected_count == 0
    assert fast.success and fast.quarantined == {name: 1 for _, name in sorted(QUARANTINED, key=lambda q: q[0])} | {}
    assert sum(fast.quarantined.values()) == len(QUARANTINED)


def test_critical_failure_reports_the_same_as_gx_and_quarantines_nothing(clean_db):
    _insert(clean_db, extra_installments=5)  # 5 of 2,015 bills with instalment k > n: beyond mostly 0.999 (a warning)
    with clean_db.begin() as conn:  # and 10 negative billed amounts: beyond mostly 0.999 of a critical one
        conn.execute(sa.text("UPDATE payments SET billing_amount = -1 WHERE payment_number IN "
                             "(SELECT payment_number FROM payments WHERE payment_number LIKE 'ok-%' ORDER BY payment_number LIMIT 10)"))
    reports = {}
    for run, all_in_gx in (("gx", True), ("fast", False)):
        with pytest.raises(ValidationFailed, match="billing_amount_not_negative") as failed:
            validate_payments_in_database(clean_db, as_of=AS_OF, flow_run_id=run, latest_plausible_date=LATEST, all_in_gx=all_in_gx)
        reports[run] = failed.value.report
        assert _quarantined(clean_db, run) == set()
    assert _by_name(reports["fast"]) == _by_name(reports["gx"])
    by_name = {o.name: o for o in reports["fast"].outcomes}
    assert by_name["billing_amount_not_negative"].unexpected_count == 11
    # the first 10 of 11 in table order: the UPDATE wrote the ten -1.00 rows after the -5.00 one
    assert by_name["billing_amount_not_negative"].sample == [Decimal("-5.00")] + [Decimal("-1.00")] * 9
    plan = by_name["installment_within_plan"]
    assert (plan.success, plan.unexpected_count, plan.sample) == (False, 5, [[2, 3]] * 5) or (plan.success, plan.unexpected_count, plan.sample) == (False, 5, [(2, 3)] * 5)


def test_expectations_no_constraint_backs_are_left_to_gx(clean_db):
    """Without the bill-key index and the instalment CHECK, uniqueness and format are still checked (by GX)."""
    _insert(clean_db)
    with clean_db.begin() as conn:
        conn.execute(sa.text("ALTER TABLE payments DROP CONSTRAINT payments_bill_key, DROP CONSTRAINT payments_installment_format"))
        conn.execute(sa.text("INSERT INTO payments (company_id, customer_id, payment_number, issue_date_dte, due_date_dte, "
                             "payment_status, billing_amount, installment) VALUES ('c1', 'u1', 'ok-1', '2026-01-01', '2026-01-10', "
                             "'pending', 1, '1/1'), ('c1', 'u1', 'odd', '2026-01-01', '2026-01-10', 'pending', 1, '1/1/1')"))
    try:
        reports = {}
        for run, all_in_gx in (("gx", True), ("fast", False)):
            with pytest.raises(ValidationFailed) as failed:
                validate_payments_in_database(clean_db, as_of=AS_OF, flow_run_id=run, latest_plausible_date=LATEST, all_in_gx=all_in_gx)
            reports[run] = failed.value.report
        assert _by_name(reports["fast"]) == _by_name(reports["gx"])
        by_name = {o.name: o for o in reports["fast"].outcomes}
        assert (by_name["bill_key_unique"].success, by_name["bill_key_unique"].unexpected_count) == (False, 2)
        assert (by_name["installment_format"].success, by_name["installment_format"].sample) == (False, ["1/1/1"])
    finally:
        with clean_db.begin() as conn:
            conn.execute(sa.text("TRUNCATE payments"))
            conn.execute(sa.text("ALTER TABLE payments ADD CONSTRAINT payments_bill_key UNIQUE (company_id, payment_number, installment), "
                                 "ADD CONSTRAINT payments_installment_format CHECK (installment ~ '^[0-9]{1,6}/[0-9]{1,6}$')"))
