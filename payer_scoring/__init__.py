"""payer-scoring: daily payer categories for a billing platform's customers."""

import os

# Nothing reaches the internet at run time: switch off every telemetry channel
# before Prefect or Great Expectations is imported anywhere in the process.
for _name, _value in {
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
