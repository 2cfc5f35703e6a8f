"""Cell parsers: one text value read from a CSV file -> a typed Python value.

Each ``*_parser`` factory returns a function ``str -> value`` that raises
:class:`CellError` (value + what was expected, worded for the rejects report)
when the text does not fit.  The empty string is handled by the caller (it
means NULL), so parsers only ever see non-empty text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

Parser = Callable[[str], Any]

_DATE_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WHOLE = re.compile(r"[+-]?\d+(?:\.0*)?")
_INSTALLMENT = re.compile(r"\d{1,6}/\d{1,6}")

# strptime formats that read the same texts as the ISO parsers (which are ~10x faster than strptime).
_ISO_DATE_FORMATS = frozenset({"%Y-%m-%d"})
_ISO_TIMESTAMP_FORMATS = frozenset({"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"})

TRUE_TEXTS = frozenset({"true", "t", "1", "yes", "y"})
FALSE_TEXTS = frozenset({"false", "f", "0", "no", "n"})

EXPECT_DATE = "date YYYY-MM-DD"
EXPECT_TIMESTAMP = "timestamp YYYY-MM-DD HH:MM:SS.mmm"
EXPECT_NUMBER = "number"
EXPECT_BOOLEAN = "boolean true/false"
EXPECT_EPOCH = "epoch seconds (whole number, 0 = none)"
EXPECT_INSTALLMENT = "installment k/n (e.g. 1/3)"
EXPECT_DAYS = "whole number of days"


class CellError(ValueError):
    """A value that does not fit its column; ``expected`` says what would have."""

    def __init__(self, value: str, expected: str, column: str | None = None) -> None:
        super().__init__(f"{value!r}: expected {expected}")
        self.value = value
        self.expected = expected
        self.column = column


def text_parser() -> Parser:
    """Text as is (PostgreSQL text cannot hold NUL characters, so those are refused)."""

    def parse(value: str) -> str:
        if "\x00" in value:
            raise CellError(value, "text without NUL characters")
        return value

    return parse


def date_parser(fmt: str | None = None) -> Parser:
    """``datetime.date`` from ``YYYY-MM-DD`` (or from ``fmt``, a strptime format; time parts dropped)."""
    if fmt is None or fmt in _ISO_DATE_FORMATS:

        def parse(value: str) -> date:
            value = value.strip()
            if _DATE_ISO.fullmatch(value):
                try:
                    return date.fromisoformat(value)
                except ValueError:
                    pass
            raise CellError(value, EXPECT_DATE if fmt is None else f"date {fmt}")

        return parse

    expected = f"date {fmt}"
    if fmt in _ISO_TIMESTAMP_FORMATS:  # a timestamp read into a date target: keep the date
        iso = timestamp_parser()

        def parse_iso(value: str) -> date:
            try:
                return iso(value).date()
            except CellError:
                raise CellError(value, expected) from None

        return parse_iso

    def parse_fmt(value: str) -> date:
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            raise CellError(value, expected) from None

    return parse_fmt


def timestamp_parser(fmt: str | None = None) -> Parser:
    """Naive ``datetime`` from ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (date alone = midnight), or from ``fmt``."""
    if fmt is None or fmt in _ISO_TIMESTAMP_FORMATS:
        iso_expected = EXPECT_TIMESTAMP if fmt is None else f"timestamp {fmt}"

        def parse(value: str) -> datetime:
            value = value.strip()
            if _TIMESTAMP_ISO.fullmatch(value):
                try:
                    return datetime.fromisoformat(value)
                except ValueError:
                    pass
            raise CellError(value, iso_expected)

        return parse

    expected = f"timestamp {fmt}"

    def parse_fmt(value: str) -> datetime:
        try:
            return datetime.strptime(value.strip(), fmt)
        except ValueError:
            raise CellError(value, expected) from None

    return parse_fmt


def numeric_parser(precision: int, scale: int) -> Parser:
    """``Decimal`` that fits ``numeric(precision, scale)``: finite, below 10^(precision-scale)."""
    limit = Decimal(10) ** (precision - scale)
    quantum = Decimal(1).scaleb(-scale)
    too_big = f"number below {limit:.0e}".replace("+", "")

    def parse(value: str) -> Decimal:
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise CellError(value, EXPECT_NUMBER)
        try:
            number = Decimal(text)
            rounded = number.quantize(quantum)
        except InvalidOperation:
            raise CellError(value, too_big) from None
        if abs(rounded) >= limit:
            raise CellError(value, too_big)
        return number

    return parse


def float_parser() -> Parser:
    """``float`` (double precision); ``inf``/``Infinity`` (any sign, any case) kept, ``nan`` = NULL."""

    def parse(value: str) -> float | None:
        text = value.strip()
        bare = text.lstrip("+-").lower()
        if bare in ("inf", "infinity"):
            return float(text.lower().replace("infinity", "inf"))
        if bare == "nan":
            return None
        if not _NUMBER.fullmatch(text):
            raise CellError(value, "number (inf allowed)")
        return float(text)

    return parse


def boolean_parser() -> Parser:
    """``bool`` from true/false, t/f, 1/0, yes/no, y/n in any case."""

    def parse(value: str) -> bool:
        text = value.strip().lower()
        if text in TRUE_TEXTS:
            return True
        if text in FALSE_TEXTS:
            return False
        raise CellError(value, EXPECT_BOOLEAN)

    return parse


def epoch_date_parser() -> Parser:
    """``date`` (UTC) from epoch seconds; ``0`` means no date and gives ``None``.

    UTC is used because a date stored as midnight (UTC or Brazil time, UTC-3)
    gives the same calendar date in UTC either way.
    """

    def parse(value: str) -> date | None:
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            raise CellError(value, EXPECT_EPOCH)
        seconds = int(Decimal(text))
        if seconds == 0:
            return None
        try:
            return datetime.fromtimestamp(seconds, UTC).date()
        except (OverflowError, OSError, ValueError):
            raise CellError(value, EXPECT_EPOCH) from None

    return parse


def installment_parser() -> Parser:
    """The instalment text ``k/n`` as is (the table splits it into two integers)."""

    def parse(value: str) -> str:
        text = value.strip()
        if not _INSTALLMENT.fullmatch(text):
            raise CellError(value, EXPECT_INSTALLMENT)
        return text

    return parse


def relative_days_parser(base: date, as_timestamp: bool) -> Parser:
    """``base + N days`` from a whole number N (``-65`` -> 65 days before ``base``); midnight for timestamps."""

    def parse(value: str) -> date | datetime:
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            raise CellError(value, EXPECT_DAYS)
        try:
            day = base + timedelta(days=int(Decimal(text)))
        except OverflowError:
            raise CellError(value, EXPECT_DAYS + " within years 1-9999") from None
        return datetime(day.year, day.month, day.day) if as_timestamp else day

    return parse
