"""Test fixtures: a real PostgreSQL (the embedded one unless DATABASE_URL is set).

The session creates a throw-away database ``payer_scoring_test_<pid>`` on the
server, points ``DATABASE_URL`` at it (so CLI commands and flows under test use
it too), applies the migrations, and drops it at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import payer_scoring  # noqa: F401  (telemetry off before anything else)
from payer_scoring import db as dbmod
from payer_scoring.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """SQLAlchemy URL of the session's throw-away database (migrated)."""
    base = Settings()
    server_url = dbmod.resolve_database_url(base, create=True)  # starts the embedded server if needed
    name = f"payer_scoring_test_{os.getpid()}"
    admin_url = make_url(server_url).set(database="postgres").render_as_string(hide_password=False)
    dbmod.drop_database(admin_url, name)
    dbmod.ensure_database(admin_url, name)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    os.environ["PAYER_SCORING_MODEL_STORE"] = str(tmp_path_factory.mktemp("model_store"))
    get_settings.cache_clear()
    engine = dbmod.prepare_database(get_settings())  # applies migrations
    engine.dispose()
    yield url
    dbmod._engine_for.cache_clear()
    if old is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = old
    get_settings.cache_clear()
    dbmod.drop_database(admin_url, name)


@pytest.fixture(scope="session")
def engine(database_url) -> sa.Engine:
    """Engine on the session's migrated test database."""
    return dbmod.get_engine(get_settings())


@pytest.fixture
def clean_db(engine) -> sa.Engine:
    """The test database with every table emptied (schema_migrations kept)."""
    with engine.begin() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ).scalars().all()
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect API for flow runs (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def cli() -> list[str]:
    """argv prefix that runs the installed ``payer-scoring`` console command of this venv."""
    import sys

    exe = Path(sys.executable).with_name("payer-scoring")
    assert exe.exists(), f"{exe} missing: run `make venv`"
    return [str(exe)]
