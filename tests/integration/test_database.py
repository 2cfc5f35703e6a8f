"""The database layer against a real PostgreSQL: migrations, schema, embedded server URL."""

from __future__ import annotations

import subprocess

import sqlalchemy as sa

from payer_scoring import db as dbmod


def test_migrations_are_recorded_and_safe_to_run_twice(engine):
    files = [p.name for p in dbmod.migration_files()]
    assert dbmod.apply_migrations(engine) == []  # already applied by the fixture
    with engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT name FROM schema_migrations ORDER BY version")).scalars().all()
    assert recorded == files


def test_edited_migration_is_refused(engine, tmp_path):
    first = dbmod.migration_files()[0]
    (tmp_path / first.name).write_text(first.read_text() + "\n-- edited\n")
    try:
        dbmod.apply_migrations(engine, tmp_path)
    except dbmod.DatabaseError as exc:
        assert first.name in str(exc) and "changed after it was applied" in str(exc)
    else:
        raise AssertionError("an edited migration was accepted")


def test_payments_has_the_39_export_columns_with_proper_types(engine):
    with engine.connect() as conn:
        cols = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'payments' AND column_name NOT IN "
                    "('source_file','source_line','loaded_at','installment_number','installment_count')"
                )
            ).all()
        )
    assert len(cols) == 39
    assert cols["issue_date_dte"] == "date"
    assert cols["paid_at_tsmp"] == "timestamp without time zone"
    assert cols["billing_amount"] == "numeric"
    assert cols["by_whatsapp"] == "boolean"
    assert cols["discount_before_payment_due_date"] == "date"


def test_companies_has_29_columns_with_dashes_stored_as_underscores(engine):
    with engine.connect() as conn:
        cols = conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'companies' "
                "AND column_name NOT IN ('company_row_id','source_file','source_line','loaded_at')"
            )
        ).scalars().all()
    assert len(cols) == 29
    assert "payments_issued_m_1" in cols and "payments_issued_with_due_date_same_month_m_1" in cols


def test_db_url_command_prints_a_url_psql_accepts(database_url, cli):
    out = subprocess.run([*cli, "db", "url"], capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("postgresql://")
    got = subprocess.run(["psql", out, "-tAc", "SELECT current_database()"], capture_output=True, text=True)
    if got.returncode == 0:  # psql is optional on the machine; the URL must parse either way
        assert got.stdout.strip() == sa.engine.make_url(database_url).database
    else:
        assert "invalid" not in got.stderr.lower(), got.stderr
