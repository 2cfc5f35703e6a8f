"""The project's own log lines in a flow run's logs (Prefect UI), not only on the worker's terminal.

``PREFECT_LOGGING_EXTRA_LOGGERS`` (set for deployed runs in ``prefect.yaml``
job variables) gives these loggers Prefect's API handler; Prefect leaves their
level unset, so under its logging configuration (root at WARNING) their INFO
lines would be dropped.  :func:`project_loggers_at_info` sets INFO on those
still unset; a flow calls it first.
"""

from __future__ import annotations

import logging

PROJECT_LOGGERS = ("payer_scoring", "models", "tasks", "flows")


def project_loggers_at_info() -> None:
    """Set INFO on the project's top-level loggers whose level is unset (an explicit level, e.g. -v's DEBUG, is kept)."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def rename_flow_run(name: str) -> None:
    """Rename the current flow run (e.g. once its as-of date is resolved), so its name and its artifacts agree.

    Outside a flow run (no run id) it does nothing.
    """
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.id is None or flow_run.name == name:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=name)
