"""Generator calibration against EXPORT_PROFILE.md, measured in PostgreSQL after a real COPY.

Profile targets (reference export, 391,258 bills): paid 39.3 %, pending 29.7 %,
cancelled 20.0 %, overdue 10.5 %; median 3 bills per customer; 18.2 % of paid
bills paid after the due date; one company per ~250 customers.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from payer_scoring import generator as gen

PROFILE_STATUS_SHARE = {"paid": 0.393, "pending": 0.297, "cancelled": 0.200, "overdue": 0.105}
CUSTOMERS = 20_000
START, MONTHS = date(2023, 3, 1), 24


def _one(conn, sql: str, **params):
    return conn.execute(sa.text(sql), params).scalar_one()


def test_generated_database_matches_the_export_profile(clean_db):
    config = gen.GeneratorConfig(customers=CUSTOMERS, seed=42, start=START, months=MONTHS)
    summary = gen.generate_to_database(clean_db, config)
    assert summary.startswith(f"generated {CUSTOMERS:,} customers, 80 companies") and "\n" not in summary

    with clean_db.connect() as conn:
        shares = dict(
            conn.execute(
                sa.text("SELECT payment_status, count(*)::float / sum(count(*)) OVER () FROM payments GROUP BY 1")
            ).all()
        )
        for status, target in PROFILE_STATUS_SHARE.items():
            assert shares[status] == pytest.approx(target, abs=0.03), status
        median_bills = _one(
            conn,
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n) FROM "
            "(SELECT count(*) AS n FROM payments GROUP BY company_id, customer_id) c",
        )
        assert median_bills == 3
        late_share = _one(
            conn, "SELECT avg((paid_at_dte > due_date_dte)::int) FROM payments WHERE paid_at_dte IS NOT NULL"
        )
        assert 0.15 <= late_share <= 0.21
        assert _one(conn, "SELECT count(DISTINCT company_id) FROM payments") == 80
        assert _one(conn, "SELECT count(*) FROM companies") == 80
        assert _one(conn, "SELECT count(DISTINCT (company_id, customer_id)) FROM payments") == CUSTOMERS
        assert _one(conn, "SELECT max(n) FROM (SELECT count(*) AS n FROM payments GROUP BY customer_id) c") >= 300
        # snapshot at the end date: nothing paid on/after it, pending = not yet due
        end = gen.add_months(START, MONTHS)
        assert _one(conn, "SELECT count(*) FROM payments WHERE paid_at_dte >= :e", e=end) == 0
        assert _one(conn, "SELECT count(*) FROM payments WHERE payment_status = 'pending' AND due_date_dte < :e", e=end) == 0
        assert _one(conn, "SELECT count(*) FROM payments WHERE payment_status = 'overdue' AND due_date_dte >= :e", e=end) == 0
        assert _one(conn, "SELECT count(DISTINCT payment_method) FROM payments") == 7
        assert _one(conn, "SELECT count(DISTINCT payment_status) FROM payments") >= 12
        # the truth covers every customer, once as 'initial'
        assert _one(conn, "SELECT count(*) FROM synthetic_truth WHERE cause = 'initial'") == CUSTOMERS
        run = conn.execute(sa.text("SELECT seed, customers, end_date, bills FROM synthetic_runs")).one()
        assert (run.seed, run.customers, run.end_date) == (42, CUSTOMERS, end)
        assert run.bills == _one(conn, "SELECT count(*) FROM payments")
        # amounts: lognormal around the profile's quartiles (299 / 682 / 1,780)
        q25, q50, q75 = conn.execute(
            sa.text("SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY billing_amount) FROM payments")
        ).scalar_one()
        assert 220 < q25 < 380 and 560 < q50 < 820 and 1_400 < q75 < 2_200

    # a second run into the now non-empty database is refused, and changes nothing
    with pytest.raises(gen.GeneratorError, match="payments, companies, synthetic_truth already hold rows"):
        gen.generate_to_database(clean_db, gen.GeneratorConfig(customers=10, seed=1, start=START))
    with clean_db.connect() as conn:
        assert _one(conn, "SELECT count(*) FROM synthetic_runs") == 1


def test_generated_csv_round_trips_through_the_loader(clean_db, tmp_path):
    loading = pytest.importorskip("payer_scoring.loading", reason="payer_scoring.loading (the CSV loader) is missing")
    config = gen.GeneratorConfig(customers=400, seed=9, start=START, months=MONTHS)
    gen.generate_to_csv(config, tmp_path)
    report = loading.load_payments_file(clean_db, tmp_path / "payments.csv", rejects_path=tmp_path / "rejects.csv")
    companies = loading.load_companies_file(clean_db, tmp_path / "companies.csv", rejects_path=tmp_path / "c_rejects.csv")
    assert report.rejected == 0 and companies.rejected == 0

    # the same config straight into a database gives the same rows
    export = gen.build_export(config)
    expected = {}
    for chunk in export.chunks():
        for status, n in chunk.payments["payment_status"].value_counts().items():
            expected[status] = expected.get(status, 0) + n
    with clean_db.connect() as conn:
        loaded = dict(conn.execute(sa.text("SELECT payment_status, count(*) FROM payments GROUP BY 1")).all())
        assert loaded == expected
        assert _one(conn, "SELECT count(*) FROM companies") == len(export.companies)
        assert report.inserted == sum(expected.values())
        # typed values survive: discount dates, booleans, timestamps
        row = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE discount_before_payment > 0 AND discount_before_payment_due_date IS NULL) AS lost_dates,"
                " count(*) FILTER (WHERE by_mail IS NULL) AS null_bools,"
                " count(*) FILTER (WHERE paid_at_dte IS NOT NULL AND paid_at_tsmp::date <> paid_at_dte) AS bad_stamps"
                " FROM payments"
            )
        ).one()
        assert tuple(row) == (0, 0, 0)
