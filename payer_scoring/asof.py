"""The one as-of rule of every command and flow (score, train, evaluate, retrain, demo).

* Default: today in ``settings.timezone``, capped at the data's last date (the
  latest issue or payment date in ``payments``), so a data set that ends
  yesterday is scored, trained and evaluated as of yesterday everywhere.
* An explicit as-of is refused (:class:`AsOfError`, one line) when it is later
  than tomorrow in ``settings.timezone`` or more than
  ``settings.as_of_max_days_after_data`` days after the data's last date:
  a run for such a date would write current categories that every later
  daily run keeps (newest wins), freezing what billing reads.  Backfills and
  tests pass ``allow_future=True`` (CLI ``--allow-future-as-of``).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

log = logging.getLogger(__name__)

# Default of settings.as_of_max_days_after_data: a month without a single new
# bill or payment means the data feed stopped, not that a month passed quietly.
DEFAULT_MAX_DAYS_AFTER_DATA = 31


class AsOfError(ValueError):
    """An as-of date that would make the run write categories for a date the data cannot support."""


def resolve_as_of(
    as_of: date | None,
    *,
    today: date,
    last_data_date: date,
    max_days_after_data: int = DEFAULT_MAX_DAYS_AFTER_DATA,
    allow_future: bool = False,
) -> date:
    """Return the as-of date of a run.

    ``as_of`` None -> ``min(today, last_data_date)``.  ``today``: today in the
    configured timezone; ``last_data_date``: the latest issue or payment date in
    ``payments``; ``max_days_after_data``: days (int >= 0).  Raises
    :class:`AsOfError` when an explicit ``as_of`` is after tomorrow or more than
    ``max_days_after_data`` days after ``last_data_date`` (unless
    ``allow_future``).
    """
    if as_of is None:
        if last_data_date < today:
            log.info("data ends %s, before today (%s): using it as the as-of date", last_data_date, today)
        return min(today, last_data_date)
    if allow_future:
        return as_of
    tomorrow = today + timedelta(days=1)
    if as_of > tomorrow:
        raise AsOfError(
            f"as-of {as_of} is after tomorrow ({tomorrow}, PAYER_SCORING_TIMEZONE); it would replace every current "
            f"category with one no later run replaces (use --allow-future-as-of only for a deliberate backfill)"
        )
    limit = last_data_date + timedelta(days=max_days_after_data)
    if as_of > limit:
        raise AsOfError(
            f"as-of {as_of} is {(as_of - last_data_date).days} days after the data's last date {last_data_date} "
            f"(at most {max_days_after_data}, PAYER_SCORING_AS_OF_MAX_DAYS_AFTER_DATA); load the missing data first "
            f"(or pass --allow-future-as-of)"
        )
    return as_of
