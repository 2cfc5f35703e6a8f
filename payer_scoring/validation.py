"""Great Expectations validation of the scoring run's inputs and outputs.

Three suites live as GX Core 1.x JSON in ``expectations/``:

* ``payments`` runs inside PostgreSQL through GX's generic SQL data source (the
  table is never pulled into Python; ``add_postgres`` is not used because it
  refuses the embedded server's socket-only URL);
* ``customer_features`` and ``customer_scores`` run on the in-memory frames
  through the pandas data source.

Every expectation's ``meta`` says ``name``, ``severity`` and ``risk``:

* ``severity: critical`` - when the expectation fails (beyond its ``mostly``
  share) the run stops with :class:`ValidationFailed` before anything is
  written;  ``severity: warning`` - reported only;
* ``quarantine: true`` (payments only) - bills failing it, however few, are
  inserted into ``quarantined_payments`` (flow run id, bill key, reason) and
  left out of this run's features.  The bills are found with SQL built from
  the expectation itself (:func:`failing_rows_predicate`, bind parameters only),
  never by reading the table into Python.  The source table is never modified.

Plain functions (:func:`validate_payments_in_database`, :func:`validate_frame`)
return a :class:`ValidationReport`; the Prefect tasks around them are in
``tasks/scoring.py``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
import warnings
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from payer_scoring.rules import PROBABILITY_COLUMNS
from payer_scoring.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SAMPLE_SIZE = 10
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}


class ValidationFailed(RuntimeError):
    """A critical expectation failed; the message names each one (``report`` holds the details)."""

    def __init__(self, report: "ValidationReport") -> None:
        self.report = report
        names = "; ".join(o.headline() for o in report.critical_failures)
        super().__init__(f"suite {report.suite!r}: critical expectation failed: {names}")


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result in plain terms."""

    name: str  # meta.name, e.g. "billing_amount_not_negative"
    expectation: str  # e.g. "expect_column_values_to_be_between(billing_amount)"
    severity: str  # "critical" | "warning"
    risk: str
    success: bool
    unexpected_count: int | None  # row-level expectations only
    unexpected_percent: float | None
    observed: Any  # observed_value (aggregate expectations) or None
    sample: list  # up to SAMPLE_SIZE failing values
    error: str | None = None  # GX raised while evaluating (counts as a failure)

    def headline(self) -> str:
        """One line: name, expectation, and what was observed."""
        if self.error:
            seen = f"error {self.error}"
        elif self.unexpected_count is not None:
            seen = f"{self.unexpected_count} unexpected ({self.unexpected_percent or 0:.3f}%)"
        else:
            seen = f"observed {_short(self.observed)}"
        sample = f", e.g. {_short(self.sample)}" if self.sample else ""
        return f"{self.name} [{self.expectation}]: {seen}{sample}"


@dataclass
class ValidationReport:
    """What one suite found: outcomes, and for payments the quarantined bills per reason."""

    suite: str
    outcomes: list[ExpectationOutcome]
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> bills
    seconds: float = 0.0

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """Failed warning expectations, plus any expectation that passed with some failing rows."""
        return [
            o
            for o in self.outcomes
            if (not o.success and o.severity != "critical") or (o.success and (o.unexpected_count or 0) > 0)
        ]

    @property
    def success(self) -> bool:
        return not self.critical_failures

    @property
    def quarantined_bills(self) -> int:
        return sum(self.quarantined.values())

    def raise_on_critical(self) -> "ValidationReport":
        """Return self, or raise :class:`ValidationFailed` when a critical expectation failed."""
        if self.critical_failures:
            raise ValidationFailed(self)
        return self

    def markdown(self) -> str:
        """Markdown for the Prefect artifact: each failure/warning with observed value and sample."""
        lines = [f"### Suite `{self.suite}`: {'passed' if self.success else '**FAILED**'} "
                 f"({len(self.outcomes)} expectations, {self.seconds:.2f} s)", ""]
        noteworthy = self.critical_failures + self.warnings
        if noteworthy:
            lines += ["| expectation | severity | result | observed | sample of failing values |", "|---|---|---|---|---|"]
            for o in noteworthy:
                result = "failed" if not o.success else "passed (some rows failed)"
                observed = o.error or (
                    f"{o.unexpected_count} rows ({o.unexpected_percent or 0:.3f}%)" if o.unexpected_count is not None else _short(o.observed)
                )
                lines.append(
                    f"| `{o.name}` {o.expectation} | {o.severity} | {result} | {_md(observed)} | {_md(_short(o.sample))} |"
                )
            lines.append("")
        if self.quarantined:
            lines.append("Quarantined bills (left out of scoring): " + ", ".join(f"`{k}` {v}" for k, v in self.quarantined.items()))
        return "\n".join(lines)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- suites
SUITE_NAMES: tuple[str, ...] = ("payments", "customer_features", "customer_scores")


class SuiteError(ValueError):
    """An expectation suite file that cannot be used as written; the message names the file and the expectation."""


def load_suite(name: str, directory: Path | None = None):
    """Return the GX ``ExpectationSuite`` in ``<directory>/<name>.json`` (default ``expectations/``), loaded strictly.

    GX drops an expectation it cannot build (an unknown type, bad kwargs) with
    a logged traceback and keeps the rest, so a broken critical check would
    silently vanish.  Refused here, with :class:`SuiteError` (a ``ValueError``)
    naming the file and the expectation (``#n`` counted from 0, and its meta.name):
    unreadable file or broken JSON (line and column), no ``expectations``
    list, an unknown expectation type, ``meta`` lacking ``name``/``severity``
    (critical|warning)/``risk``, a meta.name used twice, or a suite whose
    built expectation count differs from the file's.
    """
    import great_expectations as gx  # noqa: F401  (telemetry already off: payer_scoring/__init__)
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations.registry import get_expectation_impl

    path = (EXPECTATIONS_DIR if directory is None else Path(directory)) / f"{name}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the expectation suite ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path} line {exc.lineno} column {exc.colno}: broken JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list) or not data["expectations"]:
        raise SuiteError(f"{path}: expected a JSON object with a non-empty 'expectations' list")
    names: set[str] = set()
    for i, exp in enumerate(data["expectations"]):
        if not isinstance(exp, dict):
            raise SuiteError(f"{path}: expectation #{i}: expected a JSON object")
        meta = exp.get("meta") or {}
        label = f"expectation #{i} ({meta.get('name') or exp.get('type')})"
        try:
            get_expectation_impl(str(exp.get("type")))
        except Exception:  # noqa: BLE001 - GX raises ExpectationNotFoundError
            raise SuiteError(f"{path}: {label}: unknown expectation type '{exp.get('type')}'") from None
        missing = [k for k in ("name", "severity", "risk") if not meta.get(k)]
        if missing or meta.get("severity") not in ("critical", "warning"):
            raise SuiteError(f"{path}: {label}: meta needs name, severity (critical|warning) and risk")
        if meta["name"] in names:
            raise SuiteError(f"{path}: {label}: meta.name used twice")
        names.add(meta["name"])
    gx_logger = logging.getLogger("great_expectations")
    level = gx_logger.level
    gx_logger.setLevel(logging.CRITICAL)  # its traceback for a dropped expectation: we name it below instead
    try:
        suite = ExpectationSuite(**data)
    except Exception as exc:  # noqa: BLE001 - pydantic/GX errors on a malformed suite: find the expectation
        reason = str(exc).splitlines()[0]
        for i, exp in enumerate(data["expectations"]):
            try:
                ExpectationSuite(name=str(data.get("name", name)), expectations=[exp])
            except Exception as one:  # noqa: BLE001
                lines = [line.strip() for line in str(one).splitlines() if line.strip()]
                reason = "; ".join(lines[:3])
                raise SuiteError(f"{path}: expectation #{i} ({exp['meta']['name']}): invalid kwargs ({reason})") from None
        raise SuiteError(f"{path}: not a valid expectation suite ({reason})") from None
    finally:
        gx_logger.setLevel(level)
    built = {(e.meta or {}).get("name") for e in suite.expectations}
    if len(suite.expectations) != len(data["expectations"]):
        dropped = [f"#{i} ({n})" for i, n in enumerate(e["meta"]["name"] for e in data["expectations"]) if n not in built]
        raise SuiteError(
            f"{path}: GX built {len(suite.expectations)} of the file's {len(data['expectations'])} expectations; "
            f"dropped: {', '.join(dropped) or '?'} (check its type and kwargs)"
        )
    return suite


def check_suites(directory: Path | None = None, names: tuple[str, ...] = SUITE_NAMES) -> dict[str, int]:
    """Load every suite strictly (:func:`load_suite`) before a run reads anything; return {suite: expectations}.

    Raises :class:`SuiteError` for the first suite that cannot be used.
    """
    return {name: len(load_suite(name, directory).expectations) for name in names}


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GX context per process (each new one creates a temporary docs folder and logs it).

    Every validation adds its data source under a fresh name and deletes it
    afterwards (:func:`_data_source`), so runs in one process never share one.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "great_expectations.data_context", "great_expectations.datasource"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@contextmanager
def _data_source(add, **kwargs):
    """Yield a data source made by ``add(name=<unique>, **kwargs)``; delete it from the shared context afterwards."""
    name = f"ds_{uuid.uuid4().hex[:12]}"
    source = add(name=name, **kwargs)
    try:
        yield source
    finally:
        try:
            _context().data_sources.delete(name)
        except Exception:  # noqa: BLE001 - cleanup only; never hide the validation's own outcome
            log.debug("could not delete GX data source %s", name, exc_info=True)


def _outcomes(result) -> list[ExpectationOutcome]:
    out = []
    for r in result.results:
        config = r.expectation_config
        meta = config.meta or {}
        kwargs = config.kwargs
        target = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or ",".join(
            filter(None, [kwargs.get("column_A"), kwargs.get("column_B")])
        )
        res = r.result or {}
        error = None
        if r.exception_info and r.exception_info.get("raised_exception"):
            error = str(r.exception_info.get("exception_message") or "raised").splitlines()[0][:200]
        out.append(
            ExpectationOutcome(
                name=meta.get("name", config.type),
                expectation=f"{config.type}({target})" if target else config.type,
                severity=meta.get("severity", "critical"),
                risk=meta.get("risk", ""),
                success=bool(r.success) and error is None,
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                observed=res.get("observed_value"),
                sample=list(res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
                error=error,
            )
        )
    return out


# --------------------------------------------------------------------------- payments (in the database)
def validate_payments_in_database(
    engine: Engine,
    *,
    as_of: date,
    flow_run_id: str,
    latest_plausible_date: date,
    suite_name: str = "payments",
) -> ValidationReport:
    """Validate ``payments`` inside PostgreSQL, quarantine failing bills, return the report.

    ``latest_plausible_date`` (the flow passes tomorrow in
    ``settings.timezone``, not ``as_of``: bills issued after a past ``as_of``
    are legitimate) bounds issue and paid dates.  When no critical
    expectation failed, bills failing any ``quarantine: true`` expectation are
    recorded in ``quarantined_payments`` under ``flow_run_id`` (idempotent:
    a retried task adds nothing twice).  Raises :class:`ValidationFailed` on a
    critical failure (nothing is quarantined or written then).
    """
    import time

    started = time.perf_counter()
    suite = load_suite(suite_name)
    parameters = {"latest_plausible_date": latest_plausible_date.isoformat()}
    context = _context()
    url = engine.url.render_as_string(hide_password=False)
    with warnings.catch_warnings():  # "a more specific PostgresDatasource may be more appropriate": see module doc
        warnings.simplefilter("ignore")
        with _data_source(context.data_sources.add_sql, connection_string=url) as source:
            asset = source.add_table_asset(name="payments", table_name="payments")
            batch = asset.add_batch_definition_whole_table("all").get_batch()
            result = batch.validate(suite, result_format=_RESULT_FORMAT, expectation_parameters=parameters)
    report = ValidationReport(suite=suite.name, outcomes=_outcomes(result))
    if report.success:
        report.quarantined = quarantine_failing_bills(
            engine, suite, report, as_of=as_of, flow_run_id=flow_run_id, parameters=parameters
        )
    report.seconds = round(time.perf_counter() - started, 3)
    _log_report(report)
    return report.raise_on_critical()


def quarantine_failing_bills(
    engine: Engine, suite, report: ValidationReport, *, as_of: date, flow_run_id: str, parameters: dict
) -> dict[str, int]:
    """Insert the bills failing each ``quarantine: true`` expectation; return {reason: bills inserted}."""
    with engine.connect() as conn:
        columns = set(
            conn.execute(
                sa.text("SELECT column_name FROM information_schema.columns WHERE table_name = 'payments' AND table_schema = current_schema()")
            ).scalars()
        )
    counts: dict[str, int] = {}
    by_name = {o.name: o for o in report.outcomes}
    with engine.begin() as conn:
        for exp in suite.expectations:
            config = exp.configuration
            meta = config.meta or {}
            outcome = by_name.get(meta.get("name"))
            if not meta.get("quarantine") or outcome is None or not (outcome.unexpected_count or 0):
                continue
            predicate, params = failing_rows_predicate(config.type, config.kwargs, columns, parameters)
            reason = f"{meta['name']}: {outcome.expectation}"
            inserted = conn.execute(
                sa.text(
                    "INSERT INTO quarantined_payments (flow_run_id, as_of_date, company_id, payment_number, installment, reason) "
                    f"SELECT :flow_run_id, :as_of, company_id, payment_number, installment, :reason FROM payments WHERE {predicate} "
                    "ON CONFLICT DO NOTHING"
                ),
                {**params, "flow_run_id": flow_run_id, "as_of": as_of, "reason": reason},
            ).rowcount
            counts[meta["name"]] = inserted
    return counts


_OPERATORS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def failing_rows_predicate(
    expectation_type: str, kwargs: dict, columns: set[str], parameters: dict | None = None
) -> tuple[str, dict]:
    """SQL ``WHERE`` text selecting the rows an expectation counts as unexpected, and its bind parameters.

    Column names must be in ``columns`` (the table's real columns); every value
    is a bind parameter.  ``{"$PARAMETER": name}`` values are looked up in
    ``parameters``.  Raises ``ValueError`` for an expectation type this
    function cannot translate (a suite test keeps every quarantine expectation
    translatable).
    """
    parameters = parameters or {}
    params: dict[str, Any] = {}

    def col(name: str) -> str:
        if name not in columns:
            raise ValueError(f"column {name!r} is not a column of payments")
        return f'"{name}"'

    def value(v: Any) -> Any:
        if isinstance(v, dict) and "$PARAMETER" in v:
            return parameters[v["$PARAMETER"]]
        return v

    def bind(v: Any) -> str:
        key = f"q{len(params)}"
        params[key] = value(v)
        return f":{key}"

    if expectation_type == "expect_column_values_to_not_be_null":
        where = f"{col(kwargs['column'])} IS NULL"
    elif expectation_type == "expect_column_values_to_be_null":
        where = f"{col(kwargs['column'])} IS NOT NULL"
    elif expectation_type == "expect_column_values_to_be_between":
        c = col(kwargs["column"])
        parts = []
        if kwargs.get("min_value") is not None:
            parts.append(f"{c} {'<=' if kwargs.get('strict_min') else '<'} {bind(kwargs['min_value'])}")
        if kwargs.get("max_value") is not None:
            parts.append(f"{c} {'>=' if kwargs.get('strict_max') else '>'} {bind(kwargs['max_value'])}")
        where = "(" + " OR ".join(parts) + ")"
    elif expectation_type == "expect_column_values_to_be_in_set":
        c = col(kwargs["column"])
        where = f"({c} IS NOT NULL AND NOT ({c} = ANY({bind(list(value(kwargs['value_set'])))})))"
    elif expectation_type == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = col(kwargs["column_A"]), col(kwargs["column_B"])
        where = f"({a} IS NOT NULL AND {b} IS NOT NULL AND {a} {'<' if kwargs.get('or_equal') else '<='} {b})"
    else:
        raise ValueError(f"cannot find failing rows of {expectation_type} in SQL; set meta.quarantine to false")
    condition = kwargs.get("row_condition")
    if condition:
        if hasattr(condition, "dict"):
            condition = condition.dict()
        if not isinstance(condition, dict) or condition.get("type") != "comparison":
            raise ValueError(f"row_condition {condition!r}: only a single comparison can be translated to SQL")
        c = col(condition["column"]["name"])
        op = str(condition["operator"])
        if op in ("IN", "NOT_IN"):
            test = f"{c} = ANY({bind(list(condition['parameter']))})"
            where += f" AND {'NOT ' if op == 'NOT_IN' else ''}({test}) AND {c} IS NOT NULL"
        elif op in _OPERATORS:
            where += f" AND {c} {_OPERATORS[op]} {bind(condition['parameter'])}"
        else:
            raise ValueError(f"row_condition operator {op!r} cannot be translated to SQL")
    return where, params


# --------------------------------------------------------------------------- frames (in memory)
def validate_frame(frame: pd.DataFrame, suite_name: str, parameters: dict | None = None) -> ValidationReport:
    """Validate an in-memory frame against ``expectations/<suite_name>.json``; return the report.

    The ``customer_scores`` suite also gets a ``probability_sum_error`` column
    (|sum of the PROBABILITY_COLUMNS - 1|) on a copy of the frame.
    Raises :class:`ValidationFailed` when a critical expectation failed.
    """
    import time

    started = time.perf_counter()
    suite = load_suite(suite_name)
    data = frame
    if suite_name == "customer_scores":
        data = frame.assign(
            probability_sum_error=(frame[list(PROBABILITY_COLUMNS)].sum(axis=1, skipna=False) - 1.0).abs()
        )
    context = _context()
    with _data_source(context.data_sources.add_pandas) as source:
        asset = source.add_dataframe_asset(name=suite_name)
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": data})
        result = batch.validate(suite, result_format=_RESULT_FORMAT, expectation_parameters=parameters or {})
    report = ValidationReport(suite=suite.name, outcomes=_outcomes(result), seconds=round(time.perf_counter() - started, 3))
    _log_report(report)
    return report.raise_on_critical()


def _log_report(report: ValidationReport) -> None:
    for o in report.critical_failures:
        log.error("suite %s: CRITICAL %s", report.suite, o.headline())
    for o in report.warnings:
        log.warning("suite %s: warning %s", report.suite, o.headline())
    if report.quarantined:
        log.warning("suite %s: quarantined bills %s", report.suite, report.quarantined)
