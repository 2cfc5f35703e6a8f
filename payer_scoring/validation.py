"""Great Expectations validation of the scoring run's inputs and outputs.

Three suites live as GX Core 1.x JSON in ``expectations/``:

* ``payments`` runs inside PostgreSQL in one scan of the table (see
  :func:`validate_payments_in_database`); the catalog checks and anything the
  one-pass translation does not cover run through GX's generic SQL data source
  (the table is never pulled into Python; ``add_postgres`` is not used because
  it refuses the embedded server's socket-only URL);
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
import re
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
    """Plain outcomes from a GX suite result or a list of expectation results (GX's or :class:`_Result`)."""
    out = []
    for r in getattr(result, "results", result):
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
    all_in_gx: bool = False,
) -> ValidationReport:
    """Validate ``payments`` inside PostgreSQL, quarantine failing bills, return the report.

    ``latest_plausible_date`` (the flow passes tomorrow in
    ``settings.timezone``, not ``as_of``: bills issued after a past ``as_of``
    are legitimate) bounds issue and paid dates.  When no critical
    expectation failed, bills failing any ``quarantine: true`` expectation are
    recorded in ``quarantined_payments`` under ``flow_run_id`` (idempotent:
    a retried task adds nothing twice).  Raises :class:`ValidationFailed` on a
    critical failure (nothing is quarantined or written then).

    How (issue 14, "validation in few scans"): every expectation is still
    judged by its own GX class (``Expectation._validate``: success, ``mostly``,
    unexpected percent, sample), but the metrics it needs come from at most
    one pass over the table (:func:`_one_pass_metrics`: row counts, null and
    unexpected counts and up to ``SAMPLE_SIZE`` failing values of every
    row-level expectation, as ``FILTER``-ed aggregates of one ``SELECT``),
    instead of GX's one or two queries per expectation (~25 full scans).
    ``expect_compound_columns_to_be_unique`` is answered from the catalog
    when a valid unique index over NOT NULL columns among its columns
    guarantees it (``payments_bill_key``), otherwise by GX.  Expectations this
    translation does not cover (:func:`_fast_metrics_sql` returns None: the
    column list and type checks, which read only the catalog, or anything
    new) are validated by GX on the table as before.  The quarantine is one
    more pass, only when some quarantine expectation has failing rows.
    ``all_in_gx=True`` evaluates the whole suite with GX on the table (the
    pre-issue-14 path; tests compare the two on broken data).
    """
    import time

    started = time.perf_counter()
    suite = load_suite(suite_name)
    parameters = {"latest_plausible_date": latest_plausible_date.isoformat()}
    if all_in_gx:
        results = _gx_results(engine, suite_name, None, parameters)
    else:
        results = _few_scan_results(engine, suite, suite_name, parameters)
    report = ValidationReport(suite=suite.name, outcomes=_outcomes(results))
    if report.success:
        report.quarantined = quarantine_failing_bills(
            engine, suite, report, as_of=as_of, flow_run_id=flow_run_id, parameters=parameters
        )
    report.seconds = round(time.perf_counter() - started, 3)
    _log_report(report)
    return report.raise_on_critical()


@dataclass(frozen=True)
class _Result:
    """The part of a GX ``ExpectationValidationResult`` that :func:`_outcomes` reads."""

    expectation_config: Any
    success: bool
    result: dict
    exception_info: dict | None = None


def _gx_results(engine: Engine, suite_name: str, names: set[str] | None, parameters: dict) -> list:
    """GX results of the suite's expectations named in ``names`` (None: all), validated by GX on the whole table."""
    import great_expectations as gx  # noqa: F401
    from great_expectations.core import ExpectationSuite

    suite = load_suite(suite_name)
    if names is not None:
        data = json.loads((EXPECTATIONS_DIR / f"{suite_name}.json").read_text(encoding="utf-8"))
        chosen = [e for e in data["expectations"] if e["meta"]["name"] in names]
        if not chosen:
            return []
        suite = ExpectationSuite(name=suite.name, expectations=chosen)
    context = _context()
    url = engine.url.render_as_string(hide_password=False)
    with warnings.catch_warnings():  # "a more specific PostgresDatasource may be more appropriate": see module doc
        warnings.simplefilter("ignore")
        with _data_source(context.data_sources.add_sql, connection_string=url) as source:
            asset = source.add_table_asset(name="payments", table_name="payments")
            batch = asset.add_batch_definition_whole_table("all").get_batch()
            result = batch.validate(suite, result_format=_RESULT_FORMAT, expectation_parameters=parameters)
    return list(result.results)


def _few_scan_results(engine: Engine, suite, suite_name: str, parameters: dict) -> list:
    """Results in suite order: one-pass metrics judged by each expectation's GX class, GX for the rest."""
    with engine.connect() as conn:
        columns = _table_columns(conn)
        guarantees = _Guarantees(_unique_keys(conn), _check_regexes(conn))
    plans: dict[str, tuple[Any, dict]] = {}
    one_pass = _OnePass()
    for exp in suite.expectations:
        config = exp.configuration
        metrics = _fast_metrics_sql(config.type, _raw_kwargs(config), columns, guarantees, one_pass, parameters)
        if metrics is not None:
            plans[(config.meta or {})["name"]] = (exp, metrics)
    values_of = one_pass.run(engine, [m for _, m in plans.values()])
    by_name: dict[str, Any] = {}
    for name, (exp, metrics) in plans.items():
        values = {metric: values_of(spec) for metric, spec in metrics.items()}
        try:
            out = exp._validate(metrics=values, runtime_configuration={"result_format": _RESULT_FORMAT})
            by_name[name] = _Result(exp.configuration, bool(out["success"]), out.get("result") or {})
        except Exception as exc:  # noqa: BLE001 - GX's validator catches an expectation's error the same way
            by_name[name] = _Result(exp.configuration, False, {}, {"raised_exception": True, "exception_message": str(exc)})
    rest = {(e.configuration.meta or {})["name"] for e in suite.expectations} - set(plans)
    for r in _gx_results(engine, suite_name, rest, parameters) if rest else []:
        by_name[(r.expectation_config.meta or {})["name"]] = r
    return [by_name[(e.configuration.meta or {})["name"]] for e in suite.expectations]


def _raw_kwargs(config) -> dict:
    """The expectation's kwargs as plain JSON values (row_condition as a dict)."""
    kwargs = dict(config.kwargs)
    condition = kwargs.get("row_condition")
    if condition is not None and hasattr(condition, "dict"):
        kwargs["row_condition"] = condition.dict()
    return kwargs


def _table_columns(conn) -> set[str]:
    return set(
        conn.execute(
            sa.text("SELECT column_name FROM information_schema.columns WHERE table_name = 'payments' AND table_schema = current_schema()")
        ).scalars()
    )


def _unique_keys(conn) -> list[set[str]]:
    """Column sets of the valid, total, column-only unique indexes of ``payments`` whose columns are all NOT NULL
    (or that treat NULLs as equal): each guarantees that no two rows share those columns' values."""
    rows = conn.execute(
        sa.text(
            "SELECT array_agg(a.attname::text) AS cols, bool_and(a.attnotnull) OR bool_or(i.indnullsnotdistinct) AS strict "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE c.oid = to_regclass('payments') AND i.indisunique AND i.indisvalid AND i.indpred IS NULL "
            "AND i.indexprs IS NULL GROUP BY i.indexrelid"
        )
    ).all()
    return [set(r.cols) for r in rows if r.strict]


@dataclass(frozen=True)
class _Count:
    """Rows of ``payments`` where every predicate in ``where`` (ids of :class:`_OnePass`) holds."""

    where: frozenset


@dataclass(frozen=True)
class _Sample:
    """Up to ``SAMPLE_SIZE`` values of ``columns`` (one: values; two: (A, B) pairs) of the first rows, in
    physical order as GX's ``LIMIT`` query reads them, where every predicate in ``where`` holds."""

    columns: tuple
    where: frozenset


@dataclass(frozen=True)
class _Guarantees:
    """What the catalog guarantees about every row of ``payments``: unique column sets, column regexes."""

    unique_keys: list
    regexes: dict  # column -> [regex of a validated CHECK (column ~ 'regex')]

    def unique(self, columns: list[str]) -> bool:
        """True when a guaranteed-unique column set lies within ``columns`` (no two rows share their values)."""
        return any(key <= set(columns) for key in self.unique_keys)

    def matches(self, column: str, regex: str) -> bool:
        """True when a CHECK constraint makes every non-NULL ``column`` value match ``regex``.

        Sound for a constraint regex equal to ``regex``, or equal to it once
        each bounded repeat ``{m,n}`` (m >= 1) is widened to ``+`` (``X{1,6}``
        matches a subset of what ``X+`` matches); regexes with back-references
        or look-arounds are never compared.
        """
        for checked in self.regexes.get(column, []):
            if "(?" in checked or re.search(r"\\[1-9]", checked):
                continue
            if checked == regex or re.sub(r"\{[1-9][0-9]*,[0-9]+\}", "+", checked) == regex:
                return True
        return False


def _check_regexes(conn) -> dict[str, list[str]]:
    """{column: [regex]} of the validated CHECK constraints of ``payments`` of the form ``column ~ 'regex'``."""
    out: dict[str, list[str]] = {}
    for (definition,) in conn.execute(
        sa.text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass('payments') AND contype = 'c' AND convalidated"
        )
    ):
        m = re.fullmatch(r"CHECK \(\(\"?(\w+)\"? ~ '((?:[^']|'')*)'::text\)\)", definition)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2).replace("''", "'"))
    return out


class _OnePass:
    """Every row-level predicate of the suite evaluated once per row, in one scan of ``payments``.

    Each distinct predicate gets a bit; one ``GROUP BY`` over the bit masks
    gives the number of rows of every combination, hence every count GX
    needs (:class:`_Count`).  Only when some sample is non-empty a second
    query reads the first failing values (:class:`_Sample`), limited to
    ``SAMPLE_SIZE`` rows per combination in ``ctid`` order.
    """

    def __init__(self) -> None:
        self.predicates: dict[str, int] = {}
        self.params: dict[str, Any] = {}

    def prefix(self) -> str:
        return f"p{len(self.params)}_"

    def pred(self, sql: str, params: dict | None = None) -> int:
        self.params.update(params or {})
        return self.predicates.setdefault(sql, len(self.predicates))

    def _masks(self, ids: list[int]) -> list[str]:
        sqls = {i: sql for sql, i in self.predicates.items()}
        words = []
        for start in range(0, len(ids), 62):
            terms = [f"coalesce({sqls[i]}, false)::int::bigint * {1 << (k - start)}" for k, i in enumerate(ids) if start <= k < start + 62]
            words.append(" + ".join(terms))
        return words

    def run(self, engine: Engine, plans: list[dict]):
        """Run the pass; return a function mapping a metric spec to its value."""
        ids = sorted(self.predicates.values())
        groups: list[tuple[int, int]] = []  # (mask over ids as a Python int, rows)
        total = 0
        if ids or plans:
            words = self._masks(ids)
            cols = ", ".join(f"{w} AS w{j}" for j, w in enumerate(words)) or "0::bigint AS w0"
            names = ", ".join(f"w{j}" for j in range(max(len(words), 1)))
            query = f"SELECT {names}, count(*) AS n FROM (SELECT {cols} FROM payments) s GROUP BY {names}"
            with engine.connect() as conn:
                for row in conn.execute(sa.text(query), self.params):
                    mask = 0
                    for j in range(max(len(words), 1)):
                        mask |= int(row[j]) << (62 * j)
                    groups.append((mask, int(row.n)))
                    total += int(row.n)

        def bits(where: frozenset) -> int:
            return sum(1 << i for i in where)

        def count(where: frozenset) -> int:
            need = bits(where)
            return sum(n for mask, n in groups if mask & need == need)

        samples = {spec for plan in plans for spec in plan.values() if isinstance(spec, _Sample) and count(spec.where)}
        found = self._samples(engine, sorted(samples, key=repr)) if samples else {}

        def value(spec: Any) -> Any:
            if isinstance(spec, _Count):
                return count(spec.where)
            if isinstance(spec, _Sample):
                return found.get(spec, [])
            return spec

        return value

    def _samples(self, engine: Engine, specs: list[_Sample]) -> dict:
        sqls = {i: sql for sql, i in self.predicates.items()}
        conds = ["(" + " AND ".join(sqls[i] for i in sorted(spec.where)) + ")" for spec in specs]
        columns = sorted({c for spec in specs for c in spec.columns})
        hit = " + ".join(f"CASE WHEN {c} THEN {1 << k}::bigint ELSE 0::bigint END" for k, c in enumerate(conds))
        query = (
            f"SELECT block, line, hit, {', '.join(f'c{j}' for j in range(len(columns)))} FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY hit ORDER BY block, line) AS rn FROM ("
            f"SELECT (ctid::text::point)[0]::bigint AS block, (ctid::text::point)[1]::int AS line, {hit} AS hit, "
            + ", ".join(f'"{c}" AS c{j}' for j, c in enumerate(columns))
            + f" FROM payments WHERE {' OR '.join(conds)}) f) r WHERE rn <= {SAMPLE_SIZE} ORDER BY block, line"
        )
        with engine.connect() as conn:
            rows = conn.execute(sa.text(query), self.params).all()
        out: dict[_Sample, list] = {}
        for k, spec in enumerate(specs):
            picked = [r for r in rows if int(r.hit) & (1 << k)][:SAMPLE_SIZE]
            at = [columns.index(c) + 3 for c in spec.columns]
            out[spec] = [r[at[0]] for r in picked] if len(at) == 1 else [tuple(r[i] for i in at) for r in picked]
        return out


_MAP_KWARGS = {"column", "mostly", "row_condition", "condition_parser"}
_FAST_KWARGS = {
    "expect_column_values_to_not_be_null": _MAP_KWARGS,
    "expect_column_values_to_be_null": _MAP_KWARGS,
    "expect_column_values_to_be_between": _MAP_KWARGS | {"min_value", "max_value", "strict_min", "strict_max"},
    "expect_column_values_to_be_in_set": _MAP_KWARGS | {"value_set"},
    "expect_column_values_to_match_regex": _MAP_KWARGS | {"regex"},
    "expect_column_pair_values_a_to_be_greater_than_b": {"column_A", "column_B", "or_equal", "ignore_row_if", "mostly", "row_condition", "condition_parser"},
    "expect_compound_columns_to_be_unique": {"column_list", "ignore_row_if", "mostly", "row_condition", "condition_parser"},
    "expect_table_row_count_to_be_between": {"min_value", "max_value", "strict_min", "strict_max"},
}
_MAP_METRIC = {
    "expect_column_values_to_not_be_null": "column_values.nonnull",
    "expect_column_values_to_be_null": "column_values.null",
    "expect_column_values_to_be_between": "column_values.between",
    "expect_column_values_to_be_in_set": "column_values.in_set",
    "expect_column_values_to_match_regex": "column_values.match_regex",
    "expect_column_pair_values_a_to_be_greater_than_b": "column_pair_values.a_greater_than_b",
    "expect_compound_columns_to_be_unique": "compound_columns.unique",
}


def _fast_metrics_sql(
    expectation_type: str, kwargs: dict, columns: set[str], guarantees: _Guarantees, one_pass: _OnePass, parameters: dict
) -> dict[str, Any] | None:
    """The GX metrics one expectation's ``_validate`` reads, as :class:`_Count`/:class:`_Sample` specs of ``one_pass``.

    None: this expectation is left to GX (a type or kwarg not translated
    here, a column the table lacks, a uniqueness no index guarantees).  The
    SQL mirrors the conditions GX's SQL metrics use (unexpected rows among the
    non-NULL values of the domain; ``row_condition`` filters the domain; a
    pair ignores rows with either value missing) and is checked against GX on
    broken data by ``tests/integration/test_payments_validation.py``.
    """
    allowed = _FAST_KWARGS.get(expectation_type)
    if allowed is None or set(k for k, v in kwargs.items() if v is not None) - allowed:
        return None
    named = [kwargs.get(k) for k in ("column", "column_A", "column_B")] + list(kwargs.get("column_list") or [])
    if any(c is not None and c not in columns for c in named):
        return None  # GX reports the missing column as it always did
    everything = _Count(frozenset())
    if expectation_type == "expect_table_row_count_to_be_between":
        return {"table.row_count": everything}
    prefix = one_pass.prefix()
    domain: frozenset = frozenset()
    if kwargs.get("row_condition"):
        bound: dict[str, Any] = {}

        def col(name: str) -> str:
            if name not in columns:
                raise ValueError(name)
            return f'"{name}"'

        def bind(v: Any) -> str:
            key = f"{prefix}c{len(bound)}"
            bound[key] = v
            return f":{key}"

        try:
            domain = frozenset({one_pass.pred("(" + _row_condition_sql(kwargs["row_condition"], col, bind) + ")", bound)})
        except ValueError:
            return None

    def where(*sqls: str, params: dict | None = None) -> frozenset:
        return domain | {one_pass.pred(sql, params) for sql in sqls}

    metric = _MAP_METRIC[expectation_type]
    rows = _Count(domain)
    if expectation_type == "expect_compound_columns_to_be_unique":
        cols = list(kwargs["column_list"])
        ignore = kwargs.get("ignore_row_if") or "all_values_are_missing"
        if ignore != "all_values_are_missing" or not guarantees.unique(cols):
            return None
        kept = _Count(where("NOT (" + " AND ".join(f'"{c}" IS NULL' for c in cols) + ")"))
        return {"table.row_count": rows, f"{metric}.filtered_row_count": kept, f"{metric}.unexpected_count": 0,
                f"{metric}.unexpected_values": []}
    plain = {k: v for k, v in kwargs.items() if k not in ("row_condition", "condition_parser")}
    if expectation_type == "expect_column_values_to_match_regex" and guarantees.matches(plain["column"], plain["regex"]):
        column = plain["column"]  # the CHECK constraint already refused every value that would fail
        return {"table.row_count": rows, "column_values.nonnull.unexpected_count": _Count(where(f'"{column}" IS NULL')),
                f"{metric}.unexpected_count": 0, f"{metric}.unexpected_values": []}
    if expectation_type == "expect_column_values_to_match_regex":  # not a quarantine type: translated here only
        key = f"{prefix}u0"
        unexpected, params = f'("{plain["column"]}" IS NOT NULL AND NOT ("{plain["column"]}" ~ :{key}))', {key: plain["regex"]}
    else:
        try:
            unexpected, params = failing_rows_predicate(expectation_type, plain, columns, parameters, prefix=prefix + "u")
        except ValueError:
            return None
    failing = where(unexpected, params=params)
    if expectation_type == "expect_column_pair_values_a_to_be_greater_than_b":
        if (kwargs.get("ignore_row_if") or "both_values_are_missing") != "either_value_is_missing":
            return None
        a, b = kwargs["column_A"], kwargs["column_B"]
        return {
            "table.row_count": rows,
            f"{metric}.filtered_row_count": _Count(where(f'"{a}" IS NOT NULL', f'"{b}" IS NOT NULL')),
            f"{metric}.unexpected_count": _Count(failing),
            f"{metric}.unexpected_values": _Sample((a, b), failing),
        }
    column = kwargs["column"]
    return {
        "table.row_count": rows,
        "column_values.nonnull.unexpected_count": _Count(where(f'"{column}" IS NULL')),
        f"{metric}.unexpected_count": _Count(failing),
        f"{metric}.unexpected_values": _Sample((column,), failing),
    }


def quarantine_failing_bills(
    engine: Engine, suite, report: ValidationReport, *, as_of: date, flow_run_id: str, parameters: dict
) -> dict[str, int]:
    """Insert the bills failing each ``quarantine: true`` expectation; return {reason: bills inserted}.

    One ``INSERT ... SELECT`` over ``payments`` for all failing quarantine
    expectations together (one scan; none when nothing failed): each bill gets
    one row per expectation it fails, as before with one statement each.
    """
    with engine.connect() as conn:
        columns = _table_columns(conn)
    counts: dict[str, int] = {}
    by_name = {o.name: o for o in report.outcomes}
    branches: list[str] = []
    params: dict[str, Any] = {"flow_run_id": flow_run_id, "as_of": as_of}
    for exp in suite.expectations:
        config = exp.configuration
        meta = config.meta or {}
        outcome = by_name.get(meta.get("name"))
        if not meta.get("quarantine") or outcome is None or not (outcome.unexpected_count or 0):
            continue
        i = len(branches)
        predicate, bound = failing_rows_predicate(config.type, config.kwargs, columns, parameters, prefix=f"e{i}_")
        params.update(bound)
        params[f"reason{i}"] = f"{meta['name']}: {outcome.expectation}"
        branches.append(f"(:reason{i}, {predicate})")
        counts[meta["name"]] = 0
    if not branches:
        return counts
    names = {f"{name}: {by_name[name].expectation}": name for name in counts}
    with engine.begin() as conn:
        inserted = conn.execute(
            sa.text(
                "WITH ins AS (INSERT INTO quarantined_payments (flow_run_id, as_of_date, company_id, payment_number, installment, reason) "
                "SELECT :flow_run_id, :as_of, p.company_id, p.payment_number, p.installment, r.reason FROM payments p "
                f"CROSS JOIN LATERAL (VALUES {', '.join(branches)}) AS r(reason, hit) WHERE r.hit "
                "ON CONFLICT DO NOTHING RETURNING reason) SELECT reason, count(*) FROM ins GROUP BY reason"
            ),
            params,
        ).all()
    for reason, n in inserted:
        counts[names[reason]] = int(n)
    return counts


_OPERATORS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def failing_rows_predicate(
    expectation_type: str, kwargs: dict, columns: set[str], parameters: dict | None = None, *, prefix: str = "q"
) -> tuple[str, dict]:
    """SQL ``WHERE`` text selecting the rows an expectation counts as unexpected, and its bind parameters.

    Column names must be in ``columns`` (the table's real columns); every value
    is a bind parameter named ``<prefix><n>``.  ``{"$PARAMETER": name}`` values are looked up in
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
        key = f"{prefix}{len(params)}"
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
        where += " AND " + _row_condition_sql(condition, col, bind)
    return where, params


def _row_condition_sql(condition: Any, col, bind) -> str:
    """SQL for a GX ``row_condition`` (one comparison): the rows GX keeps in the expectation's domain.

    ``IN``/``NOT_IN`` leave out rows where the column is NULL, as GX's
    ``col IN (...)`` / ``col NOT IN (...)`` do.  Raises ``ValueError`` otherwise.
    """
    if hasattr(condition, "dict"):
        condition = condition.dict()
    if not isinstance(condition, dict) or condition.get("type") != "comparison":
        raise ValueError(f"row_condition {condition!r}: only a single comparison can be translated to SQL")
    c = col(condition["column"]["name"])
    op = str(getattr(condition["operator"], "value", condition["operator"]))
    if op in ("IN", "NOT_IN"):
        test = f"{c} = ANY({bind(list(condition['parameter']))})"
        return f"{'NOT ' if op == 'NOT_IN' else ''}({test}) AND {c} IS NOT NULL"
    if op in _OPERATORS:
        return f"{c} {_OPERATORS[op]} {bind(condition['parameter'])}"
    raise ValueError(f"row_condition operator {op!r} cannot be translated to SQL")


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
