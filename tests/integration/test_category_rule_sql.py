"""The SQL side of the category rule and the results contract, against the real database."""

from __future__ import annotations

import itertools

import sqlalchemy as sa

from payer_scoring.results import BILLING_VIEW_COLUMNS, TABLE_COLUMNS
from payer_scoring.rules import CATEGORY_LABELS, category_for, load_rules


def _columns(conn, relation: str) -> list[str]:
    return list(
        conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t ORDER BY ordinal_position"
            ),
            {"t": relation},
        ).scalars()
    )


def test_results_tables_and_billing_view_hold_the_declared_columns(engine):
    with engine.connect() as conn:
        for table in ("customer_categories", "customer_category_history"):
            assert _columns(conn, table) == list(TABLE_COLUMNS), table
        assert _columns(conn, "billing_customer_category") == list(BILLING_VIEW_COLUMNS)
        labels = dict(conn.execute(sa.text("SELECT category, category_label FROM category_labels")).all())
    assert labels == CATEGORY_LABELS


def test_sql_category_function_is_the_python_rule(engine):
    rules = load_rules()
    cases = [(late, matured) for matured, late in itertools.product(range(0, 21), range(0, 21)) if late <= matured]
    params = rules.sql_params()
    with engine.connect() as conn:
        got = conn.execute(
            sa.text(
                "SELECT n_late, n_matured, payer_category(n_late, n_matured, :m, CAST(:g AS numeric), "
                "CAST(:d AS numeric), CAST(:f AS numeric)) AS category "
                "FROM unnest(CAST(:late AS bigint[]), CAST(:matured AS bigint[])) AS t(n_late, n_matured)"
            ),
            {
                "m": params["min_matured_bills"], "g": params["good_max"], "d": params["doubtful_max"],
                "f": params["forgetful_max"], "late": [c[0] for c in cases], "matured": [c[1] for c in cases],
            },
        ).all()
    assert len(got) == len(cases)
    for n_late, n_matured, category in got:
        assert category == category_for(n_matured, n_late, rules), (n_late, n_matured)
