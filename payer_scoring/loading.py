"""Load CSV files into `payments` (upsert on the bill key) and `companies` (snapshot replace).

How a payments load works (:func:`load_payments_file`):

1. The file is read as UTF-8 (a BOM is skipped; CRLF or LF) with the ``csv``
   module, one record at a time, so memory does not grow with the file.  The
   header is line 1; blank lines are skipped.
2. Each record is turned into the 39 typed `payments` values by the layout:
   the platform's export layout, or a mapping file (:mod:`payer_scoring.mapping`).
   A record with a value that does not fit (unparseable date, text in an
   amount, missing key value, bad instalment ``k/n``, unknown boolean, wrong
   number of fields) is *rejected*: one line per bad value goes to the rejects
   report, and the record is not loaded.
3. Good records are COPYed in chunks of ``settings.load_chunk_rows`` into a
   temporary staging table, all inside ONE transaction.
4. A bill key (company_id, payment_number, installment) repeated in the file:
   the later line wins; each earlier line is listed in the report with kind
   ``duplicate`` (it is not a reject and does not count against the threshold).
5. If rejected records / records read > ``settings.reject_share_max``, the
   transaction is rolled back (payments unchanged) and :class:`LoadError` is
   raised with a one-line summary.  Otherwise the staged rows are upserted
   into `payments` (``INSERT ... ON CONFLICT ... DO UPDATE``) and committed, so
   loading the same file twice leaves the same bills.

The rejects report is a CSV with columns ``file, line, column, value,
expected, kind`` (``line`` = physical line in the input, header = 1; ``kind``
= ``reject`` or ``duplicate``), sorted by line.  It is always written (header
only when nothing was rejected), by default to ``<file name>.rejects.csv`` in
the current folder, because the input folder may be read-only.
"""

from __future__ import annotations

import csv
import heapq
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from payer_scoring import parsing
from payer_scoring.db import copy_rows, read_sql
from payer_scoring.mapping import PAYMENT_COLUMNS, MappingError, export_layout, load_mapping
from payer_scoring.parsing import CellError

log = logging.getLogger(__name__)

STAGE_COLUMNS = (*PAYMENT_COLUMNS, "source_file", "source_line")
REJECTS_HEADER = ("file", "line", "column", "value", "expected", "kind")
# Defaults of settings.reject_share_max / settings.load_chunk_rows (the CLI passes the settings).
DEFAULT_REJECT_SHARE_MAX = 0.01
DEFAULT_CHUNK_ROWS = 50_000
_CSV_FIELD_LIMIT = 16 * 1024 * 1024  # bytes in one field; a runaway quote fails with a clear message

# The company profiling export: (table column, header in the export, type).
# Two export names contain '-'; they are stored with '_' (see 0001 migration).
COMPANY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("company_id", "company_id", "text"),
    ("consider_for_revenue", "consider_for_revenue", "boolean"),
    ("first_active_date", "first_active_date", "timestamp"),
    ("last_active_date", "last_active_date", "timestamp"),
    ("is_considered_for_recovery", "is_considered_for_recovery", "boolean"),
    ("is_cosidered_for_subscription", "is_cosidered_for_subscription", "boolean"),
    ("is_considered_for_wapp_messages_sent", "is_considered_for_wapp_messages_sent", "boolean"),
    ("recovery_tax", "recovery_tax", "float"),
    ("whatsapp_tax", "whatsapp_tax", "float"),
    ("monthly_fee_tax", "monthly_fee_tax", "float"),
    ("has_fit_bank", "has_fit_bank", "boolean"),
    ("is_using_kobana", "is_using_kobana", "boolean"),
    ("bank_account_type", "bank_account_type", "text"),
    ("company_size", "company_size", "text"),
    ("has_no_issues", "has_no_issues", "boolean"),
    ("is_dropout", "is_dropout", "boolean"),
    ("is_churn", "is_churn", "boolean"),
    ("is_preactive", "is_preactive", "boolean"),
    ("is_trial_m_1", "is_trial_m_1", "boolean"),
    ("is_trial_m_2", "is_trial_m_2", "boolean"),
    ("payments_issued_m_1", "payments_issued_m-1", "float"),
    ("payments_issued_with_due_date_same_month_m_1", "payments_issued_with_due_date_same_month_m-1", "float"),
    ("median_of_issued_payments", "median_of_issued_payments", "float"),
    ("growth_rate", "growth_rate", "float"),
    ("is_growing", "is_growing", "boolean"),
    ("is_shrinking", "is_shrinking", "boolean"),
    ("is_churn_risk", "is_churn_risk", "boolean"),
    ("is_key_account", "is_key_account", "boolean"),
    ("is_key_onboarding", "is_key_onboarding", "boolean"),
)
_COMPANY_PARSERS = {
    "text": parsing.text_parser,
    "boolean": parsing.boolean_parser,
    "timestamp": parsing.timestamp_parser,
    "float": parsing.float_parser,
}


class LoadError(Exception):
    """A load that did not happen; the message is one line naming the file and the reason."""


@dataclass(frozen=True)
class LoadReport:
    """What a load did.  Counts are CSV records (header and blank lines excluded).

    ``rows_read = inserted + updated + rejected + duplicates`` for payments.
    """

    file: Path
    table: str
    rows_read: int
    inserted: int
    updated: int
    rejected: int
    duplicates: int
    rejects_path: Path
    ignored_columns: tuple[str, ...] = ()
    replaced_rows: int | None = None  # companies: rows of the previous snapshot removed

    @property
    def loaded(self) -> int:
        """Rows written to the table (inserted + updated)."""
        return self.inserted + self.updated

    def summary(self) -> str:
        """One line: file, rows read, loaded (inserted/updated), rejected, duplicates, report path."""
        text = (
            f"{self.file}: {self.rows_read:,} rows read, {self.loaded:,} loaded into {self.table} "
            f"({self.inserted:,} inserted, {self.updated:,} updated), {self.rejected:,} rejected, "
            f"{self.duplicates:,} duplicates superseded"
        )
        if self.replaced_rows is not None:
            text += f", previous snapshot of {self.replaced_rows:,} rows replaced"
        if self.ignored_columns:
            text += f"; columns not loaded: {', '.join(self.ignored_columns)}"
        return text + f"; rejects report: {self.rejects_path}"


# ---------------------------------------------------------------- reading


def _python_encoding(encoding: str) -> str:
    """The codec name to open files with (UTF-8 skips a BOM); :class:`LoadError` for an unknown name."""
    import codecs

    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise LoadError(f"--encoding {encoding}: unknown text encoding (e.g. utf-8, latin-1, cp1252)") from None
    return "utf-8-sig" if name in ("utf-8", "utf-8-sig") else name


def _first_undecodable_line(path: Path, encoding: str) -> tuple[int, str]:
    """(physical line, offending bytes in hex) of the first line that ``encoding`` cannot decode."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return number, raw[exc.start : exc.end].hex(" ")
    return 0, ""


def _records(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    """Yield (physical line where the record starts, fields) for every non-blank CSV record.

    ``encoding``: the file's text encoding (default UTF-8, BOM skipped).
    Raises :class:`LoadError` on text the encoding cannot decode (naming the
    first such line) or on broken CSV quoting.
    """
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    codec = _python_encoding(encoding)
    line = 0
    try:
        with open(path, encoding=codec, newline="") as fh:
            reader = csv.reader(fh, strict=True)
            for record in reader:
                start, line = line + 1, reader.line_num
                if record:
                    yield start, record
    except UnicodeDecodeError as exc:
        bad_line, seen = _first_undecodable_line(path, codec)
        hint = " (a Latin-1 / Windows export? try --encoding latin-1 or cp1252)" if codec == "utf-8-sig" else ""
        where = f" line {bad_line}" if bad_line else ""
        raise LoadError(
            f"{path}{where}: not {encoding} text (bytes {seen or exc.object[exc.start:exc.end].hex(' ')}: {exc.reason}){hint}"
        ) from None
    except csv.Error as exc:
        raise LoadError(f"{path} line {line + 1}: malformed CSV ({exc})") from None
    except IsADirectoryError:
        raise LoadError(f"{path}: is a folder, expected a CSV file") from None


def _header(path: Path, records: Iterator[tuple[int, list[str]]]) -> list[str]:
    try:
        _line, header = next(records)
    except StopIteration:
        raise LoadError(f"{path}: empty file, expected a header line") from None
    header = [name.strip() for name in header]
    if len(header) == 1:
        for sep, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if header[0].count(sep) >= 2:
                raise LoadError(
                    f"{path}: the header is one column holding {header[0].count(sep) + 1} names separated by "
                    f"'{sep}' ({label}-delimited?); expected comma-separated CSV - re-export with ',' as the delimiter"
                )
    seen: set[str] = set()
    repeated = sorted({n for n in header if n in seen or seen.add(n)})
    if repeated:
        raise LoadError(f"{path}: column(s) named twice in the header: {', '.join(repeated)}")
    return header


# ---------------------------------------------------------------- rejects report


class _RejectsWriter:
    """Collects reject lines (in line order) in a temporary file, then writes the sorted report."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self._tmp = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")
        self._csv = csv.writer(self._tmp)
        self.rows_rejected = 0
        self.first: str | None = None  # the first bad value, for the one-line threshold error

    def reject(self, line: int, problems: Sequence[CellError]) -> None:
        self.rows_rejected += 1
        if self.first is None and problems:
            p = problems[0]
            self.first = f"line {line}, column {p.column or '?'} {p.value!r}, expected {p.expected}"
        for p in problems:
            self._csv.writerow((self.file_label, line, p.column or "", p.value, p.expected, "reject"))

    def write(self, target: Path, duplicates: Sequence[Sequence[Any]] = ()) -> None:
        """Write the report to ``target`` (atomically): rejects merged with ``duplicates`` by line."""
        self._tmp.seek(0)
        rejects = ((int(r[1]), r) for r in csv.reader(self._tmp))
        dups = ((int(r[1]), r) for r in duplicates)
        part = target.with_name(target.name + ".part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(21, "is a folder, expected a file path")
            with open(part, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(REJECTS_HEADER)
                for _line, row in heapq.merge(rejects, dups, key=lambda item: item[0]):
                    writer.writerow(row)
            os.replace(part, target)
        except OSError as exc:
            if part.parent.is_dir():
                part.unlink(missing_ok=True)
            why = exc.strerror or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)):
                why = "a parent of it is a file, not a folder"
            raise LoadError(f"cannot write the rejects report {target}: {why}") from None
        finally:
            self._tmp.close()


def check_rejects_path(target: Path) -> None:
    """Refuse, before anything is read or loaded, a rejects-report path that can never be written.

    Raises :class:`LoadError` (one line) when ``target`` is a folder or one of
    its existing parents is a file.  Other write errors (permissions, a full
    disk) still surface when the report is written, with the same wording.
    """
    if target.is_dir():
        raise LoadError(f"cannot write the rejects report {target}: is a folder, expected a file path")
    for parent in (target.parent, *target.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise LoadError(f"cannot write the rejects report {target}: a parent of it is a file, not a folder")
            break


def default_rejects_path(path: Path) -> Path:
    """``<file name>.rejects.csv`` in the current folder (input folders may be read-only)."""
    return Path.cwd() / f"{Path(path).name}.rejects.csv"


def _share(part: int, whole: int) -> str:
    share = part / whole if whole else 0.0
    text = f"{share:.1%}"
    return f"{share:.2g}%" if text == "0.0%" and share > 0 else text


def _check_threshold(path: Path, read: int, rejected: int, share_max: float, report: Path, first: str | None = None) -> None:
    """Raise LoadError when rejected / read > share_max; the message names the first bad value (line, column, expected)."""
    if read and rejected / read > share_max:
        raise LoadError(
            f"{path}: {rejected:,} of {read:,} rows rejected ({_share(rejected, read)}) "
            f"> {share_max:.1%} allowed; {f'first: {first}; ' if first else ''}see {report}"
        )


# ---------------------------------------------------------------- payments


def load_payments_file(
    engine: Engine,
    path: Path | str,
    mapping_path: Path | str | None = None,
    rejects_path: Path | str | None = None,
    *,
    reject_share_max: float = DEFAULT_REJECT_SHARE_MAX,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[int, int, float], None] | None = None,
    encoding: str = "utf-8",
) -> LoadReport:
    """Upsert the bills of one CSV file into `payments`; return what was done.

    ``progress``, when given, is called after each COPY chunk with (rows read
    from the file so far, rows copied so far, seconds since the start).

    ``mapping_path``: a mapping YAML for another layout (None = the export layout).
    ``reject_share_max`` (share 0-1) and ``chunk_rows``: the settings
    ``reject_share_max`` / ``load_chunk_rows`` (the CLI passes them).  ``encoding``:
    the file's text encoding (CLI ``--encoding``).  Raises :class:`LoadError` (one
    line) when the file or mapping cannot be read, a needed column is missing,
    or too many rows are rejected; in every error case `payments` is unchanged.
    """
    share_max = reject_share_max
    chunk_size = chunk_rows
    path = Path(path)
    report_path = Path(rejects_path) if rejects_path is not None else default_rejects_path(path)
    check_rejects_path(report_path)
    try:
        layout = load_mapping(Path(mapping_path)) if mapping_path is not None else export_layout()
    except MappingError as exc:
        raise LoadError(str(exc)) from None
    if not path.exists():
        raise LoadError(f"{path}: file not found")

    records = _records(path, encoding)
    header = _header(path, records)
    try:
        converter = layout.bind(header)
    except KeyError as exc:
        missing = ", ".join(exc.args[0])
        if layout.path is None:
            raise LoadError(
                f"{path}: missing column(s) of the payments export layout: {missing} "
                f"(another layout needs --mapping)"
            ) from None
        raise LoadError(f"{path}: missing column(s) named in {layout.path}: {missing}") from None
    used = set(layout.source_columns())
    ignored = tuple(name for name in header if name not in used)
    if ignored and layout.path is None:
        log.warning("%s: columns not in the export layout are ignored: %s", path, ", ".join(ignored))

    source_file = path.name
    width = len(header)
    rejects = _RejectsWriter(str(path))
    read = 0
    copied = 0
    started = time.perf_counter()
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(read_sql("load_payments_stage")))
        chunk: list[list[Any]] = []
        for line, record in records:
            read += 1
            if len(record) != width:
                rejects.reject(line, [CellError(f"{len(record)} fields", f"{width} fields as in the header", "(row)")])
                continue
            values, problems = converter.convert(record)
            if problems:
                rejects.reject(line, problems)
                continue
            values.append(source_file)
            values.append(line)
            chunk.append(values)
            if len(chunk) >= chunk_size:
                copied += _copy_chunk(conn, path, chunk)
                chunk = []
                if progress is not None:
                    progress(read, copied, time.perf_counter() - started)
        if chunk:
            copied += _copy_chunk(conn, path, chunk)
            if progress is not None:
                progress(read, copied, time.perf_counter() - started)

        duplicates = [
            (str(path), d.line, "company_id|payment_number|installment",
             f"{d.company_id}|{d.payment_number}|{d.installment}",
             f"a bill key not repeated later in the file (line {d.kept_line} supersedes it)", "duplicate")
            for d in conn.execute(sa.text(read_sql("load_payments_duplicates")))
        ]
        rejects.write(report_path, duplicates)
        _check_threshold(path, read, rejects.rows_rejected, share_max, report_path, rejects.first)  # raises -> rollback
        counts = conn.execute(sa.text(read_sql("load_payments_upsert"))).one()
    report = LoadReport(
        file=path,
        table="payments",
        rows_read=read,
        inserted=counts.inserted,
        updated=counts.updated,
        rejected=rejects.rows_rejected,
        duplicates=len(duplicates),
        rejects_path=report_path,
        ignored_columns=ignored,
    )
    log.debug(report.summary())
    return report


def _copy_chunk(conn: Connection, path: Path, rows: list[list[Any]], table: str = "payments_stage", columns: Sequence[str] = STAGE_COLUMNS) -> int:
    """COPY parsed rows (last value = source line) into ``table``; a refusal becomes a one-line LoadError."""
    try:
        n = copy_rows(conn, table, columns, rows)
    except Exception as exc:  # psycopg errors: values the parsers let through but PostgreSQL refused
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoadError(f"{path}: PostgreSQL refused rows between lines {rows[0][-1]} and {rows[-1][-1]}: {first}") from exc
    log.debug("%s: copied %d rows up to line %d into %s", path, len(rows), rows[-1][-1], table)
    return n


# ---------------------------------------------------------------- companies

# Default of settings.companies_shrink_share_max: half the companies gone at once
# is a truncated export far more often than a real churn.
DEFAULT_SHRINK_SHARE_MAX = 0.5


def _check_snapshot_size(path: Path, loaded: int, previous: int, shrink_share_max: float | None) -> None:
    """Raise LoadError for an empty snapshot, or one more than ``shrink_share_max`` smaller than ``previous`` rows."""
    if loaded == 0:
        raise LoadError(
            f"{path}: no company rows to load; the previous snapshot of {previous:,} rows is kept "
            f"(an empty export is refused)"
        )
    if shrink_share_max is not None and previous and (previous - loaded) / previous > shrink_share_max:
        raise LoadError(
            f"{path}: {loaded:,} rows would replace a snapshot of {previous:,} "
            f"({_share(previous - loaded, previous)} fewer, more than {shrink_share_max:.0%} allowed); "
            f"previous snapshot kept - pass --allow-shrink if the drop is real"
        )



def load_companies_file(
    engine: Engine,
    path: Path | str,
    rejects_path: Path | str | None = None,
    *,
    reject_share_max: float = DEFAULT_REJECT_SHARE_MAX,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    encoding: str = "utf-8",
    shrink_share_max: float | None = DEFAULT_SHRINK_SHARE_MAX,
) -> LoadReport:
    """Replace the whole `companies` snapshot with one CSV file of the company profiling export.

    All 29 export columns must be in the header (the two names with '-' may
    also be written with '_').  Null or repeated company ids, ``inf`` in
    growth_rate, booleans as text (empty = NULL) and all-empty columns load as
    they are.  Bad values are rejected as for payments; over the reject share
    (settings ``reject_share_max``) -> :class:`LoadError` and the previous
    snapshot stays.  Delete and inserts run in one transaction.
    A snapshot with no valid row is always refused, and one more than
    ``shrink_share_max`` (share 0-1, setting ``companies_shrink_share_max``;
    None = no limit, CLI ``--allow-shrink``) smaller than the previous one
    too: :class:`LoadError`, previous snapshot kept.
    """
    share_max = reject_share_max
    chunk_size = chunk_rows
    path = Path(path)
    report_path = Path(rejects_path) if rejects_path is not None else default_rejects_path(path)
    check_rejects_path(report_path)
    if not path.exists():
        raise LoadError(f"{path}: file not found")
    records = _records(path, encoding)
    header = _header(path, records)
    index = {name: i for i, name in enumerate(header)}
    cells = []
    missing = []
    for column, export_name, kind in COMPANY_COLUMNS:
        i = index.get(export_name, index.get(column))
        if i is None:
            missing.append(export_name)
            continue
        cells.append((header[i], i, _COMPANY_PARSERS[kind]()))
    if missing:
        raise LoadError(f"{path}: missing column(s) of the company profiling export: {', '.join(missing)}")
    used = {header[i] for _n, i, _p in cells}
    ignored = tuple(name for name in header if name not in used)
    columns = (*(c for c, _e, _k in COMPANY_COLUMNS), "source_file", "source_line")

    width = len(header)
    rejects = _RejectsWriter(str(path))
    read = loaded = 0
    with engine.connect() as conn, conn.begin():
        replaced = conn.execute(sa.text(read_sql("load_companies_clear"))).rowcount
        chunk: list[list[Any]] = []
        for line, record in records:
            read += 1
            if len(record) != width:
                rejects.reject(line, [CellError(f"{len(record)} fields", f"{width} fields as in the header", "(row)")])
                continue
            values, problems = [], []
            for name, i, parse in cells:
                text = record[i]
                try:
                    values.append(parse(text) if text.strip() else None)
                except CellError as exc:
                    exc.column = name
                    problems.append(exc)
            if problems:
                rejects.reject(line, problems)
                continue
            chunk.append([*values, path.name, line])
            if len(chunk) >= chunk_size:
                loaded += _copy_chunk(conn, path, chunk, "companies", columns)
                chunk = []
        if chunk:
            loaded += _copy_chunk(conn, path, chunk, "companies", columns)
        rejects.write(report_path)
        _check_threshold(path, read, rejects.rows_rejected, share_max, report_path, rejects.first)  # raises -> rollback
        _check_snapshot_size(path, loaded, replaced, shrink_share_max)  # raises -> rollback
    report = LoadReport(
        file=path,
        table="companies",
        rows_read=read,
        inserted=loaded,
        updated=0,
        rejected=rejects.rows_rejected,
        duplicates=0,
        rejects_path=report_path,
        ignored_columns=ignored,
        replaced_rows=replaced,
    )
    log.debug(report.summary())
    return report
