"""Cell parsers of the loader: accepted texts and the 'expected' wording of rejects."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal

import pytest

from payer_scoring import parsing
from payer_scoring.parsing import CellError


@pytest.mark.parametrize(
    "text, value",
    [("2025-01-10", date(2025, 1, 10)), (" 2024-02-29 ", date(2024, 2, 29))],
)
def test_iso_date_is_parsed(text, value):
    assert parsing.date_parser()(text) == value


@pytest.mark.parametrize("text", ["2025-13-01", "2023-02-29", "10/01/2025", "2025-01-10 00:00:00", "20250110", "x"])
def test_bad_iso_date_is_refused_with_the_format(text):
    with pytest.raises(CellError) as err:
        parsing.date_parser()(text)
    assert err.value.expected == "date YYYY-MM-DD" and err.value.value == text


def test_strptime_date_format_and_its_expected_text():
    parse = parsing.date_parser("%m/%d/%Y")
    assert parse("1/2/2013") == date(2013, 1, 2)
    assert parsing.date_parser("%Y-%m-%d %H:%M:%S.%f")("2016-06-16 15:44:08.000000") == date(2016, 6, 16)
    with pytest.raises(CellError) as err:
        parse("2013-01-02")
    assert err.value.expected == "date %m/%d/%Y"


@pytest.mark.parametrize(
    "text, value",
    [
        ("2025-01-10 23:59:59.000", datetime(2025, 1, 10, 23, 59, 59)),
        ("2024-12-30 03:04:27.125", datetime(2024, 12, 30, 3, 4, 27, 125000)),
        ("2016-05-17 10:37:00.123456", datetime(2016, 5, 17, 10, 37, 0, 123456)),
        ("2025-01-10 08:00", datetime(2025, 1, 10, 8, 0)),
        ("2025-01-10", datetime(2025, 1, 10)),
    ],
)
def test_timestamps_with_and_without_fractions(text, value):
    assert parsing.timestamp_parser()(text) == value


@pytest.mark.parametrize("text", ["2025-01-10 25:00:00", "2025-01-10 10:00:00+03:00", "10/01/2025 10:00", "now"])
def test_bad_timestamp_is_refused(text):
    with pytest.raises(CellError) as err:
        parsing.timestamp_parser()(text)
    assert err.value.expected == "timestamp YYYY-MM-DD HH:MM:SS.mmm"


@pytest.mark.parametrize(
    "text, value",
    [("99.5", Decimal("99.5")), ("0", Decimal(0)), ("-12", Decimal(-12)), ("1e7", Decimal("1e7")), (".5", Decimal("0.5"))],
)
def test_numbers(text, value):
    assert parsing.numeric_parser(16, 2)(text) == value


@pytest.mark.parametrize("text", ["abc", "1,5", "1_000", "NaN", "inf", "12 BRL", "--1"])
def test_text_in_an_amount_is_refused(text):
    with pytest.raises(CellError) as err:
        parsing.numeric_parser(16, 2)(text)
    assert err.value.expected == "number"


def test_amount_too_large_for_the_column_is_refused():
    parse = parsing.numeric_parser(16, 2)
    assert parse("99999999999999.99") == Decimal("99999999999999.99")
    for text in ("100000000000000", "99999999999999.999", "1e400"):
        with pytest.raises(CellError) as err:
            parse(text)
        assert err.value.expected == "number below 1e14"


@pytest.mark.parametrize(
    "text, value",
    [("true", True), ("false", False), ("True", True), ("False", False), ("t", True), ("f", False),
     ("1", True), ("0", False), ("TRUE", True), ("yes", True), ("No", False)],
)
def test_booleans_as_text(text, value):
    assert parsing.boolean_parser()(text) is value


@pytest.mark.parametrize("text", ["maybe", "2", "verdadeiro", "-"])
def test_unknown_boolean_is_refused(text):
    with pytest.raises(CellError) as err:
        parsing.boolean_parser()(text)
    assert err.value.expected == "boolean true/false"


@pytest.mark.parametrize(
    "text, value",
    [("0", None), ("1735689600", date(2025, 1, 1)), ("1735700400", date(2025, 1, 1)),  # midnight UTC / midnight UTC-3
     ("1790000000", date(2026, 9, 21)), ("1735689600.0", date(2025, 1, 1))],
)
def test_epoch_seconds_become_a_date_and_zero_means_none(text, value):
    assert parsing.epoch_date_parser()(text) == value


@pytest.mark.parametrize("text", ["soon", "2025-01-01", "1.5", "99999999999999999999"])
def test_bad_epoch_is_refused(text):
    with pytest.raises(CellError) as err:
        parsing.epoch_date_parser()(text)
    assert err.value.expected == "epoch seconds (whole number, 0 = none)"


def test_installment_k_of_n():
    parse = parsing.installment_parser()
    assert parse("1/1") == "1/1" and parse("12/24") == "12/24"
    for text in ("1-3", "1/", "a/b", "1/1/1", "1234567/1"):
        with pytest.raises(CellError) as err:
            parse(text)
        assert err.value.expected == "installment k/n (e.g. 1/3)"


def test_relative_days_from_a_base_date():
    parse = parsing.relative_days_parser(date(2018, 1, 1), as_timestamp=False)
    assert parse("-65") == date(2017, 10, 28)
    assert parse("0") == date(2018, 1, 1)
    assert parse("31.0") == date(2018, 2, 1)
    assert parsing.relative_days_parser(date(2018, 1, 1), as_timestamp=True)("-1") == datetime(2017, 12, 31)
    with pytest.raises(CellError) as err:
        parse("-6.5")
    assert err.value.expected == "whole number of days"


def test_company_floats_keep_infinity_and_read_nan_as_null():
    parse = parsing.float_parser()
    assert parse("inf") == math.inf and parse("Infinity") == math.inf and parse("-inf") == -math.inf
    assert parse("nan") is None and parse("-100") == -100.0 and parse("0.02") == 0.02
    with pytest.raises(CellError):
        parse("ten")


def test_text_with_nul_is_refused():
    with pytest.raises(CellError):
        parsing.text_parser()("a\x00b")


def test_iso_shaped_strptime_formats_take_the_fast_path_with_the_same_wording():
    parse = parsing.timestamp_parser("%Y-%m-%d %H:%M:%S.%f")
    assert parse("2016-05-17 10:37:00.000000") == datetime(2016, 5, 17, 10, 37)
    with pytest.raises(CellError) as err:
        parse("17/05/2016 10:37")
    assert err.value.expected == "timestamp %Y-%m-%d %H:%M:%S.%f"
    with pytest.raises(CellError) as err:
        parsing.date_parser("%Y-%m-%d %H:%M:%S.%f")("2016-02-30 00:00:00.000000")
    assert err.value.expected == "date %Y-%m-%d %H:%M:%S.%f"
