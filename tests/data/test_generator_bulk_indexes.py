"""The generator loads payments and synthetic_truth without their indexes and rebuilds them at the end.

Worked out independently: the index and constraint definitions are read from
the catalog before the load (as the migrations made them) and must be the
same after it; the rebuilt unique key still refuses a duplicate bill; a load
that fails leaves the indexes in place (the drop is rolled back with it).
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from payer_scoring import generator as gen

_INDEXES = (
    "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
    "WHERE indrelid IN ('payments'::regclass, 'synthetic_truth'::regclass) ORDER BY 1"
)
_CONSTRAINTS = (
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid IN ('payments'::regclass, 'synthetic_truth'::regclass) ORDER BY 1, 2"
)


def _catalog(engine) -> tuple[list, list]:
    with engine.connect() as conn:
        return conn.execute(sa.text(_INDEXES)).all(), conn.execute(sa.text(_CONSTRAINTS)).all()


def test_indexes_and_constraints_are_the_same_after_a_load(clean_db):
    before = _catalog(clean_db)
    assert {name for name, _ in before[0]} >= {"payments_bill_key", "payments_customer_idx", "synthetic_truth_pkey"}
    gen.generate_to_database(clean_db, gen.GeneratorConfig(customers=400, seed=5, start=date(2024, 1, 1), months=12))
    assert _catalog(clean_db) == before
    with clean_db.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError, match="payments_bill_key"):
            cols = "company_id, customer_id, payment_number, installment, issue_date_dte, payment_status, billing_amount, paid_amount"
            conn.execute(sa.text(f"INSERT INTO payments ({cols}) SELECT {cols} FROM payments LIMIT 1"))


def test_a_failed_load_keeps_the_indexes(clean_db, monkeypatch):
    before = _catalog(clean_db)

    def boom(*args, **kwargs):
        raise RuntimeError("chunk failed")

    monkeypatch.setattr(gen, "_generate_chunk", boom)
    with pytest.raises(RuntimeError, match="chunk failed"):
        gen.generate_to_database(clean_db, gen.GeneratorConfig(customers=400, seed=5, start=date(2024, 1, 1), months=12))
    assert _catalog(clean_db) == before
