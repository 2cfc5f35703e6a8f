"""Source layouts for `payments`: the platform's export layout and YAML mapping files.

A mapping file describes how to build the 39 `payments` columns from another
CSV layout.  It is small and declarative::

    version: 1                      # optional; only 1 exists
    description: free text          # optional
    base_date: 2018-01-01           # needed only by `relative_days` columns
    columns:                        # target column -> rule (targets: the 39 export columns)
      customer_id: customerID                     # shorthand for {column: customerID}
      company_id: {constant: ibm_ar}              # same value on every row
      payment_number: {template: "{SK_ID_PREV}-{NUM_INSTALMENT_NUMBER}"}  # joins source columns
      payment_status: {if_present: SettledDate, then: paid, else: pending}
      issue_date_dte: {column: InvoiceDate, format: "%m/%d/%Y"}  # strptime format
      due_date_dte: {column: DAYS_INSTALMENT, relative_days: true}  # base_date + N days
      original_due_date_dte: {column: DAYS_INSTALMENT, relative_days: true, add_days: -30}
      by_mail: {column: PaperlessBill, values: {"Electronic": "true", "Paper": "false"}}
      paid_amount: {column: AMT_PAYMENT, default: "0"}  # used when the cell is empty

Each rule has exactly one source -- ``column``, ``template``, ``constant`` or
``if_present`` (with ``then`` and optional ``else``, default empty = NULL) --
plus optional modifiers: ``values`` (a map of source text to target text; a
value missing from the map is rejected; quote the keys, YAML reads Yes/No as
booleans), ``default`` (text used when the cell is empty), ``format`` (strptime
format; date, timestamp and epoch-date targets), ``relative_days`` (the cell is
a whole number of days after ``base_date``; date-like targets) and
``add_days`` (shift a date-like target by N days).  After these steps the text
is parsed by the target column's type, exactly as in the export layout.

Targets not named get NULL, except ``installment`` (``'1/1'``) and
``paid_amount`` (``0``).  ``company_id``, ``customer_id``, ``payment_number``,
``issue_date_dte``, ``payment_status`` and ``billing_amount`` must be named.
An unknown key anywhere, a target that is not an export column or a constant
that does not parse raises :class:`MappingError` with a one-line message.

Without a mapping (:func:`export_layout`) every target is read from the
source column of the same name, and all 39 must be in the header.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from payer_scoring import parsing
from payer_scoring.parsing import CellError, Parser

# The 39 columns of the payments export, in export order, with their type:
# text, date, timestamp, numeric(p,s) as ("numeric", p, s), boolean,
# epoch_date (epoch seconds -> date) and installment ("k/n").
PAYMENT_COLUMNS: dict[str, tuple] = {
    "company_id": ("text",),
    "company_name": ("text",),
    "company_document": ("text",),
    "company_trade_name": ("text",),
    "customer_id": ("text",),
    "customer_name": ("text",),
    "customer_trade_name": ("text",),
    "parent_type": ("text",),
    "parent_id": ("text",),
    "payment_number": ("text",),
    "issue_date_dte": ("date",),
    "original_due_date_dte": ("date",),
    "due_date_dte": ("date",),
    "paid_at_dte": ("date",),
    "issue_at_tsmp": ("timestamp",),
    "original_due_date_tsmp": ("timestamp",),
    "due_date_tsmp": ("timestamp",),
    "paid_at_tsmp": ("timestamp",),
    "payment_method": ("text",),
    "payment_status": ("text",),
    "paid_amount": ("numeric", 16, 2),
    "billing_amount": ("numeric", 16, 2),
    "payment_amount": ("numeric", 16, 2),
    "installment": ("installment",),
    "payment_provider": ("text",),
    "discount_before_payment": ("numeric", 16, 2),
    "discount_before_payment_due_date": ("epoch_date",),
    "description": ("text",),
    "qrcode_number": ("text",),
    "os_code": ("text",),
    "os_identifier": ("text",),
    "by_mail": ("boolean",),
    "by_whatsapp": ("boolean",),
    "fees": ("numeric", 12, 4),
    "fine": ("numeric", 16, 2),
    "paid_at": ("timestamp",),
    "paid_method": ("text",),
    "manual": ("text",),
    "billing_number": ("text",),
}
KEY_COLUMNS = ("company_id", "payment_number", "installment")
# Must have a value on every row (NOT NULL in the table); empty -> the row is rejected.
REQUIRED_COLUMNS = frozenset(KEY_COLUMNS) | {"customer_id", "issue_date_dte", "payment_status", "billing_amount"}
# Must be named by every mapping (installment and paid_amount have defaults).
MAPPING_REQUIRED = REQUIRED_COLUMNS - {"installment"}
# Used when a mapping does not name the target, and for paid_amount also when the cell is empty.
TARGET_DEFAULTS = {"installment": "1/1", "paid_amount": "0"}
_DATE_LIKE = frozenset({"date", "timestamp", "epoch_date"})

MAPPING_KEYS = ("version", "description", "base_date", "columns")
RULE_KEYS = ("column", "template", "constant", "if_present", "then", "else", "values", "default", "format", "relative_days", "add_days")
_SOURCE_KEYS = ("column", "template", "constant", "if_present")


class MappingError(Exception):
    """A mapping file that cannot be used; the message is one line naming the file and key."""


@dataclass(frozen=True)
class Rule:
    """How one target column is built from a source row (see the module docstring)."""

    target: str
    column: str | None = None
    template: str | None = None
    constant: str | None = None
    if_present: str | None = None
    then: str = ""
    otherwise: str = ""
    values: dict[str, str] | None = None
    default: str | None = None
    format: str | None = None
    relative_days: bool = False
    add_days: int = 0

    def source_columns(self) -> list[str]:
        """Source columns this rule reads."""
        if self.column is not None:
            return [self.column]
        if self.if_present is not None:
            return [self.if_present]
        if self.template is not None:
            return template_fields(self.template)
        return []

    @property
    def label(self) -> str:
        """What the rejects report names as the column: the source column, else the target."""
        return self.column or self.if_present or self.target


@dataclass(frozen=True)
class Layout:
    """A validated way to read payments: one :class:`Rule` per target column, in export order."""

    rules: tuple[Rule, ...]
    name: str = "payments export layout"
    base_date: date | None = None
    path: Path | None = None
    description: str = ""

    def source_columns(self) -> list[str]:
        """Every source column the layout reads, in first-use order."""
        seen: dict[str, None] = {}
        for rule in self.rules:
            for col in rule.source_columns():
                seen.setdefault(col, None)
        return list(seen)

    def bind(self, header: Sequence[str]) -> RowConverter:
        """Return a converter for rows under ``header``; raise ``KeyError`` listing missing columns."""
        index = {name: i for i, name in enumerate(header)}
        missing = [c for c in self.source_columns() if c not in index]
        if missing:
            raise KeyError(missing)
        converter = RowConverter(fixed=[None] * len(self.rules))
        for position, rule in enumerate(self.rules):
            cell = _compile(rule, index, self.base_date)
            if not rule.source_columns():  # constant or unmapped: the same value on every row
                try:
                    converter.fixed[position] = cell([])
                    continue
                except CellError:  # cannot happen for validated constants; report it on every row then
                    pass
            converter.cells.append((position, rule.label, cell))
        return converter


@dataclass
class RowConverter:
    """Turns one CSV record into the 39 typed values, or the list of problems found.

    ``fixed`` holds the value of every target that does not depend on the row
    (constants, unmapped = NULL), computed once; ``cells`` are the
    (position, label, function) of the targets read from the row.
    """

    fixed: list[Any] = field(default_factory=list)
    cells: list[tuple[int, str, Callable[[list[str]], Any]]] = field(default_factory=list)

    def convert(self, record: list[str]) -> tuple[list[Any], list[CellError]]:
        """Return (values in PAYMENT_COLUMNS order, problems); values are unusable when problems exist."""
        values = self.fixed.copy()
        problems: list[CellError] = []
        for position, label, cell in self.cells:
            try:
                values[position] = cell(record)
            except CellError as exc:
                if exc.column is None:
                    exc.column = label
                problems.append(exc)
        return values, problems


def export_layout() -> Layout:
    """The platform's payments export: every target read from the column of the same name."""
    return Layout(rules=tuple(Rule(target=name, column=name) for name in PAYMENT_COLUMNS))


def template_fields(template: str) -> list[str]:
    """Source column names used by a ``{name}`` template, in order (raises ValueError on bad syntax)."""
    names = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or spec or conversion:
            raise ValueError("fields must be plain {column_name}")
        names.append(name)
    return names


def load_mapping(path: Path) -> Layout:
    """Read and validate a mapping YAML file; raise :class:`MappingError` (one line) when invalid."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MappingError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_mapping(doc, path)


def parse_mapping(doc: Any, path: Path | str = "<mapping>") -> Layout:
    """Validate a parsed mapping document (see the module docstring) and return its :class:`Layout`."""

    def fail(msg: str) -> MappingError:
        return MappingError(f"{path}: {msg}")

    if not isinstance(doc, dict):
        raise fail("expected a mapping with a 'columns' key at the top")
    unknown = [k for k in doc if k not in MAPPING_KEYS]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(MAPPING_KEYS)})")
    if doc.get("version", 1) != 1:
        raise fail(f"version {doc['version']!r}: only version 1 exists")
    base_date = doc.get("base_date")
    if base_date is not None:
        if isinstance(base_date, datetime):
            base_date = base_date.date()
        elif isinstance(base_date, str):
            try:
                base_date = date.fromisoformat(base_date)
            except ValueError:
                raise fail(f"base_date {base_date!r}: expected a date YYYY-MM-DD") from None
        elif not isinstance(base_date, date):
            raise fail(f"base_date {base_date!r}: expected a date YYYY-MM-DD")
    columns = doc.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise fail("'columns' must map target columns to rules")

    rules: dict[str, Rule] = {}
    for target, spec in columns.items():
        if target not in PAYMENT_COLUMNS:
            raise fail(f"columns.{target}: not a payments export column")
        rules[target] = _parse_rule(target, spec, base_date, fail)
    missing = sorted(MAPPING_REQUIRED - rules.keys())
    if missing:
        raise fail(f"columns: missing required target(s) {', '.join(missing)}")
    for target, value in TARGET_DEFAULTS.items():
        rules.setdefault(target, Rule(target=target, constant=value))
    ordered = tuple(rules.get(name) or Rule(target=name) for name in PAYMENT_COLUMNS)
    return Layout(
        rules=ordered,
        name=f"mapping {path}",
        base_date=base_date,
        path=Path(path),
        description=str(doc.get("description") or ""),
    )


def _scalar_text(value: Any) -> str:
    """YAML scalar -> the text a CSV cell would hold (dates ISO, booleans true/false, None empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _parse_rule(target: str, spec: Any, base_date: date | None, fail) -> Rule:
    where = f"columns.{target}"
    if isinstance(spec, str):
        spec = {"column": spec}
    if not isinstance(spec, dict):
        raise fail(f"{where}: expected a source column name or a mapping of rule keys")
    unknown = [k for k in spec if k not in RULE_KEYS]
    if unknown:
        raise fail(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(RULE_KEYS)})")
    sources = [k for k in _SOURCE_KEYS if k in spec]
    if len(sources) != 1:
        raise fail(f"{where}: needs exactly one of {', '.join(_SOURCE_KEYS)} (found {', '.join(sources) or 'none'})")
    if ("then" in spec or "else" in spec) and "if_present" not in spec:
        raise fail(f"{where}: 'then'/'else' only go with 'if_present'")
    if "if_present" in spec and "then" not in spec:
        raise fail(f"{where}: 'if_present' needs 'then'")
    kind = PAYMENT_COLUMNS[target][0]
    for key in ("format", "relative_days", "add_days"):
        if key in spec and kind not in _DATE_LIKE:
            raise fail(f"{where}: '{key}' applies only to date and timestamp targets")
    if spec.get("format") is not None and spec.get("relative_days"):
        raise fail(f"{where}: use either 'format' or 'relative_days', not both")
    if spec.get("relative_days") and base_date is None:
        raise fail(f"{where}: 'relative_days' needs a top-level base_date")
    for key in ("column", "if_present", "template", "format"):
        if key in spec and not (isinstance(spec[key], str) and spec[key]):
            raise fail(f"{where}: '{key}' must be non-empty text")
    if "relative_days" in spec and not isinstance(spec["relative_days"], bool):
        raise fail(f"{where}: 'relative_days' must be true or false")
    add_days = spec.get("add_days", 0)
    if not isinstance(add_days, int) or isinstance(add_days, bool):
        raise fail(f"{where}: 'add_days' must be a whole number of days")
    values = spec.get("values")
    if values is not None:
        if not isinstance(values, dict) or not values:
            raise fail(f"{where}: 'values' must map source text to target text")
        if not all(isinstance(k, str) for k in values):
            raise fail(f"{where}: 'values' keys must be quoted text (YAML reads Yes/No/1 unquoted as other types)")
        values = {k: _scalar_text(v) for k, v in values.items()}
    if "template" in spec:
        try:
            template_fields(spec["template"])
        except ValueError as exc:
            raise fail(f"{where}: template {spec['template']!r}: {exc}") from None
    rule = Rule(
        target=target,
        column=spec.get("column"),
        template=spec.get("template"),
        constant=_scalar_text(spec["constant"]) if "constant" in spec else None,
        if_present=spec.get("if_present"),
        then=_scalar_text(spec.get("then")),
        otherwise=_scalar_text(spec.get("else")),
        values=values,
        default=_scalar_text(spec["default"]) if "default" in spec else None,
        format=spec.get("format"),
        relative_days=bool(spec.get("relative_days", False)),
        add_days=add_days,
    )
    # Fixed texts must parse as the target type now, not fail on every row later.
    parse = _value_parser(rule, base_date)
    fixed = [("constant", rule.constant), ("default", rule.default), ("then", rule.then), ("else", rule.otherwise)]
    fixed += [("values", v) for v in (values or {}).values()]
    for key, text in fixed:
        if text:
            try:
                parse(text)
            except CellError as exc:
                raise fail(f"{where}: {key} {text!r} is not a valid {exc.expected}") from None
    return rule


def _value_parser(rule: Rule, base_date: date | None) -> Parser:
    """Parser of the target type, honouring format / relative_days / add_days."""
    kind, *args = PAYMENT_COLUMNS[rule.target]
    if kind == "text":
        return parsing.text_parser()
    if kind == "numeric":
        return parsing.numeric_parser(*args)
    if kind == "boolean":
        return parsing.boolean_parser()
    if kind == "installment":
        return parsing.installment_parser()
    # date-like
    if rule.relative_days:
        parse = parsing.relative_days_parser(base_date, as_timestamp=(kind == "timestamp"))
    elif kind == "timestamp":
        parse = parsing.timestamp_parser(rule.format)
    elif kind == "date" or rule.format is not None:
        parse = parsing.date_parser(rule.format)
    else:
        parse = parsing.epoch_date_parser()
    if not rule.add_days:
        return parse
    shift = timedelta(days=rule.add_days)

    def shifted(value: str):
        day = parse(value)
        return None if day is None else day + shift

    return shifted


def _compile(rule: Rule, index: dict[str, int], base_date: date | None) -> Callable[[list[str]], Any]:
    """Return ``record -> typed value`` for one rule (raises CellError)."""
    # 1. the raw text
    if rule.column is not None:
        i = index[rule.column]

        def raw(record: list[str]) -> str:
            return record[i]

    elif rule.if_present is not None:
        i, then, otherwise = index[rule.if_present], rule.then, rule.otherwise

        def raw(record: list[str]) -> str:
            return then if record[i].strip() else otherwise

    elif rule.template is not None:
        parts = [
            (literal, index[name] if name is not None else None)
            for literal, name, _spec, _conv in string.Formatter().parse(rule.template)
        ]

        def raw(record: list[str]) -> str:
            return "".join(lit + (record[j] if j is not None else "") for lit, j in parts)

    else:
        constant = rule.constant or ""

        def raw(record: list[str]) -> str:
            return constant

    parse = _value_parser(rule, base_date)
    values = rule.values
    default = rule.default
    if default is None and rule.target == "paid_amount":
        default = TARGET_DEFAULTS["paid_amount"]  # 0 when unpaid, as the export writes it
    required = rule.target in REQUIRED_COLUMNS
    expected_missing = "a value (part of the bill key)" if rule.target in KEY_COLUMNS else "a value (required)"
    allowed = f"one of: {', '.join(values)}" if values else ""

    def cell(record: list[str]) -> Any:
        text = raw(record)
        if values is not None and text != "":
            if text not in values:
                raise CellError(text, allowed)
            text = values[text]
        if default is not None and not text.strip():
            text = default
        if not text.strip():  # empty (or blank) cell = NULL
            if required:
                raise CellError(text, expected_missing)
            return None
        return parse(text)

    return cell
