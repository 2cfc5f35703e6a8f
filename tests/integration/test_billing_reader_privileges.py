"""billing_reader after migration 0009: CONNECT to this database only, no TEMP, catalogs readable (issue 12 #8)."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from payer_scoring import db as dbmod


def _as_reader(url: str) -> sa.Engine:
    return sa.create_engine(sa.engine.make_url(url).set(username="billing_reader", password=None))


def test_billing_reader_has_no_temp_and_no_connect_to_scratch_databases(engine, database_url):
    with engine.connect() as conn:
        privileges = conn.execute(
            sa.text(
                "SELECT has_database_privilege('billing_reader', current_database(), 'CONNECT'),"
                " has_database_privilege('billing_reader', current_database(), 'TEMPORARY'),"
                " has_database_privilege('public', current_database(), 'CONNECT')"
            )
        ).one()
    assert tuple(privileges) == (True, False, False)

    reader = _as_reader(database_url)
    try:
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) > 0 FROM pg_class")).scalar_one()  # catalogs: PostgreSQL's default
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied to create temporary tables"):
                conn.execute(sa.text("CREATE TEMP TABLE scratch (x int)"))
    except sa.exc.OperationalError as exc:  # a real server with password auth
        pytest.skip(f"cannot log in as billing_reader on this server: {exc.orig}")
    finally:
        reader.dispose()

    admin = sa.engine.make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
    scratch = f"payer_scoring_scratch_{os.getpid()}"
    dbmod.ensure_database(admin, scratch)
    try:
        other = _as_reader(sa.engine.make_url(database_url).set(database=scratch).render_as_string(hide_password=False))
        with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
            with other.connect():
                pass
        other.dispose()
    finally:
        dbmod.drop_database(admin, scratch)
