"""The one retry policy of the database-touching tasks of both flows.

Retries come from the settings (``PAYER_SCORING_DB_RETRIES``, first delay
``PAYER_SCORING_DB_RETRY_DELAY_SECONDS``, doubling) and happen only when the
task failed on a transient database error as judged by
:func:`payer_scoring.db.is_transient_error`; a changed migration, an embedded
server that cannot start, a busy write lock or a failed expectation fail at
once.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from payer_scoring.db import is_transient_error
from payer_scoring.settings import Settings

log = logging.getLogger(__name__)


def retry_on_transient_db_error(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: True when the failed state's exception is a transient database error."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable state is not worth a retry
            return False
    retry = is_transient_error(exc if isinstance(exc, BaseException) else None)
    if retry:
        log.warning("task %s: transient database error, retrying: %s", getattr(task, "name", task), str(exc).splitlines()[0])
    return retry


def db_retry_options(settings: Settings) -> dict[str, Any]:
    """``Task.with_options`` arguments: ``settings.db_retries`` retries on transient errors only, delays doubling, no cache."""
    return {
        "retries": settings.db_retries,
        "retry_delay_seconds": exponential_backoff(settings.db_retry_delay_seconds)(settings.db_retries)
        if settings.db_retries
        else 0,
        "retry_jitter_factor": 0.2 if settings.db_retry_delay_seconds else None,
        "retry_condition_fn": retry_on_transient_db_error,
        "cache_policy": NO_CACHE,
    }
