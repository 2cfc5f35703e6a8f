"""The one as-of rule (payer_scoring/asof.py): default, and the dates it refuses."""

from __future__ import annotations

from datetime import date

import pytest

from payer_scoring.asof import AsOfError, resolve_as_of

TODAY = date(2026, 12, 1)


@pytest.mark.parametrize(
    ("as_of", "last", "expected"),
    [
        (None, date(2026, 11, 30), date(2026, 11, 30)),  # data end yesterday: their last date (the demo case)
        (None, date(2026, 12, 5), TODAY),  # bills due later than today: today
        (date(2026, 12, 2), date(2026, 12, 1), date(2026, 12, 2)),  # tomorrow is fine
        (date(2026, 6, 1), date(2026, 11, 30), date(2026, 6, 1)),  # a backfill
        (date(2026, 11, 30), date(2026, 10, 30), date(2026, 11, 30)),  # exactly 31 days after the data
    ],
)
def test_accepted(as_of, last, expected):
    assert resolve_as_of(as_of, today=TODAY, last_data_date=last, max_days_after_data=31) == expected


@pytest.mark.parametrize(
    ("as_of", "last", "message"),
    [
        (date(2999, 1, 1), date(2026, 11, 30), r"^as-of 2999-01-01 is after tomorrow \(2026-12-02, PAYER_SCORING_TIMEZONE\)"),
        (date(2026, 12, 3), date(2026, 12, 1), r"after tomorrow"),
        (date(2026, 12, 1), date(2026, 10, 30), r"^as-of 2026-12-01 is 32 days after the data's last date 2026-10-30 \(at most 31"),
    ],
)
def test_refused_in_one_line(as_of, last, message):
    with pytest.raises(AsOfError, match=message) as err:
        resolve_as_of(as_of, today=TODAY, last_data_date=last, max_days_after_data=31)
    assert "\n" not in str(err.value)


def test_override_accepts_any_date():
    assert resolve_as_of(date(2999, 1, 1), today=TODAY, last_data_date=date(2020, 1, 1), allow_future=True) == date(2999, 1, 1)
