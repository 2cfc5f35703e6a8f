"""What counts as a transient database error: the one retry rule of both flows."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from payer_scoring.db import DatabaseError, is_transient_error
from payer_scoring.results import WriteLockBusy


def _pg(cls, sqlstate: str | None):
    """A psycopg error of ``cls`` carrying ``sqlstate`` (as the server would send it)."""
    exc = cls("message from the server")
    if sqlstate is not None:
        exc.sqlstate = sqlstate  # psycopg reads it from the server's diagnostics; set it as the server would
    return exc


def _wrapped(orig):
    """The SQLAlchemy exception psycopg's error arrives as, chained as SQLAlchemy chains it."""
    cls = sa.exc.OperationalError if isinstance(orig, psycopg.OperationalError) else sa.exc.DatabaseError
    exc = cls("SELECT 1", {}, orig)
    exc.__cause__ = orig
    return exc


@pytest.mark.parametrize(
    ("orig", "transient"),
    [
        (_pg(psycopg.OperationalError, None), True),                      # connection refused / closed (client side)
        (_pg(psycopg.OperationalError, "08006"), True),                   # connection_failure
        (_pg(psycopg.OperationalError, "08001"), True),                   # sqlclient_unable_to_establish_sqlconnection
        (_pg(psycopg.errors.AdminShutdown, "57P01"), True),               # server shutting down
        (_pg(psycopg.errors.CannotConnectNow, "57P03"), True),            # server starting
        (_pg(psycopg.errors.SerializationFailure, "40001"), True),
        (_pg(psycopg.errors.DeadlockDetected, "40P01"), True),
        (_pg(psycopg.errors.LockNotAvailable, "55P03"), False),           # lock timeout: another writer
        (_pg(psycopg.errors.QueryCanceled, "57014"), False),              # statement timeout
        (_pg(psycopg.errors.InvalidCatalogName, "3D000"), False),         # database does not exist
        (_pg(psycopg.errors.InvalidPassword, "28P01"), False),
        (_pg(psycopg.errors.UndefinedTable, "42P01"), False),
        (_pg(psycopg.errors.UniqueViolation, "23505"), False),
    ],
)
def test_transient_is_decided_by_sqlstate(orig, transient):
    assert is_transient_error(orig) is transient
    assert is_transient_error(_wrapped(orig)) is transient
    outer = DatabaseError("cannot connect to PostgreSQL at ...: reason")
    outer.__cause__ = _wrapped(orig)
    assert is_transient_error(outer) is transient


def test_project_errors_without_a_transient_cause_are_not_retried():
    assert not is_transient_error(DatabaseError("0005_results.sql was changed after it was applied (sha256 differs)"))
    assert not is_transient_error(DatabaseError("embedded PostgreSQL failed to start in /x: exit 1"))
    assert not is_transient_error(WriteLockBusy("another score-customers run is still writing"))
    assert not is_transient_error(ValueError("no training snapshot fits"))
    assert not is_transient_error(None)
    assert is_transient_error(sa.exc.DisconnectionError("connection invalidated"))
