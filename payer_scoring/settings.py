"""The one settings object: environment variables prefixed ``PAYER_SCORING_``.

``DATABASE_URL`` is read without the prefix because that is the name every
PostgreSQL tool and container platform already uses.  Build the object with
:func:`get_settings` when a command or flow starts, never at import time.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as ``PAYER_SCORING_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="PAYER_SCORING_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "PAYER_SCORING_DATABASE_URL"),
        description="SQLAlchemy/libpq URL of a PostgreSQL server. Unset: the embedded server.",
    )
    pgdata: Path = Field(
        default=PROJECT_ROOT / ".pgdata",
        description="Data folder of the embedded PostgreSQL (used only when DATABASE_URL is unset).",
    )
    database_name: str = Field(default="payer_scoring", description="Database created on the embedded server.")
    timezone: str = Field(default="America/Sao_Paulo", description="Timezone that defines 'today' for the default as-of date.")
    rules_file: Path = Field(default=PROJECT_ROOT / "config" / "rules.toml", description="Category rules (TOML).")
    model_store: Path = Field(default=PROJECT_ROOT / "var" / "model-store", description="Folder holding model artifacts (runtime data, outside the code folders).")
    reject_share_max: float = Field(default=0.01, ge=0, le=1, description="Load fails when rejected rows exceed this share (0-1).")
    load_chunk_rows: int = Field(default=50_000, gt=0, description="Rows per COPY chunk when loading CSV files.")
    horizon_days: int = Field(default=90, gt=0, description="Performance window H in days (scoring and evaluate refuse a value other than the champion's).")
    as_of_max_days_after_data: int = Field(default=31, ge=0, description="An explicit as-of more than this many days after the data's last issue/payment date is refused.")
    allow_future_as_of: bool = Field(default=False, description="Accept an as-of after tomorrow or far beyond the data (deliberate backfills and tests only; CLI --allow-future-as-of).")
    companies_shrink_share_max: float = Field(default=0.5, ge=0, le=1, description="load companies refuses a snapshot with this share (0-1) fewer rows than the previous one, unless --allow-shrink.")
    snapshot_every_days: int = Field(default=14, gt=0, description="Days S between training snapshots.")
    # Training set and time split (models/training.py explains the split).
    training_window_days: int = Field(default=365, gt=0, description="Days of training snapshots before the holdout's embargo.")
    min_history_days: int = Field(default=90, ge=0, description="First training snapshot at least this many days after the first bill.")
    holdout_snapshots: int = Field(default=1, ge=1, description="Latest matured snapshots kept as the time holdout.")
    training_max_rows: int = Field(default=600_000, gt=0, description="Training rows above this are sampled down (memory and time bound).")
    model_threads: int = Field(default=1, gt=0, description="OpenMP threads for model fit/predict (more only on idle cores).")
    db_retries: int = Field(default=3, ge=0, description="Retries of the scoring tasks that touch the database, on transient errors.")
    db_retry_delay_seconds: float = Field(default=10.0, ge=0, description="First retry delay (s); doubles on each retry.")
    write_lock_wait_seconds: float = Field(default=300.0, ge=0, description="How long a scoring write waits for another run's write before giving up (s).")
    # Task runner of the daily scoring (flows/daily_scoring.py; README "Scaling out").
    task_runner: Literal["in-process", "dask"] = Field(
        default="in-process",
        description="in-process: one process scores every customer (default). dask: customers split into dask_partitions partitions scored on a Dask cluster (prefect-dask), swapped into place in one transaction.",
    )
    dask_partitions: int = Field(default=2, ge=1, description="Partitions of the customers with task_runner=dask (whole companies: hash of the company id modulo this; SQL payer_company_partition).")
    dask_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (e.g. tcp://scheduler:8786) for a real cluster. Unset: a temporary LocalCluster of dask_workers workers on this machine.",
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the temporary LocalCluster (ignored with dask_address).")
    dask_threads_per_worker: int = Field(default=1, ge=1, description="Threads per LocalCluster worker.")
    dask_processes: bool = Field(
        default=False,
        description="LocalCluster workers as separate processes (true) or threads of this process (false: no pickling; the database does most of the work).",
    )
    # Weekly retrain on drift (flows/weekly_retrain.py; the thresholds are explained in payer_scoring/drift.py).
    drift_bins: int = Field(default=10, ge=2, description="PSI bins: quantiles of the champion's reference sample.")
    drift_drifted_share_max: float = Field(default=0.30, ge=0, le=1, description="Retrain when the share of drifted features (PSI >= 0.10 and KS significant) exceeds this.")
    drift_ks_alpha: float = Field(default=0.01, gt=0, lt=1, description="A feature counts as drifted only when its KS p-value is below this (and PSI >= 0.10).")
    drift_key_features: str = Field(
        default="late_share,late_share_90d,recent3_late_share,dpd_mean_days,dpd_p90_days",
        description="Comma-separated key features: any of them with PSI >= drift_key_feature_psi triggers a retrain.",
    )
    drift_key_feature_psi: float = Field(default=0.25, gt=0, description="PSI of a key feature that triggers a retrain (0.25 = 'major').")
    drift_exempt_features: str = Field(
        default="tenure_days,company_n_customers",
        description="Comma-separated features whose PSI is reported but not counted by the triggers (they grow with calendar time).",
    )
    drift_active_days: int = Field(default=60, gt=0, description="Drift compares customers with a bill issued in the last N days (or one falling due within the horizon).")
    retrain_f1_drop: float = Field(default=0.05, gt=0, le=1, description="Retrain when realized macro-F1 is this much below the holdout macro-F1.")
    retrain_auc_drop: float = Field(default=0.03, gt=0, le=1, description="Retrain when the published risk score's realized AUC is this much below its holdout AUC.")
    retrain_brier_increase: float = Field(default=0.02, gt=0, le=1, description="Retrain when the published risk score's realized Brier score is this much above its holdout Brier.")
    retrain_max_champion_age_days: int = Field(default=90, gt=0, description="Retrain when the champion was trained more than this many days before the as-of date.")
    decay_min_predictions: int = Field(default=200, gt=0, description="Fewest matured predictions needed to measure realized macro-F1.")
    promote_max_f1_drop: float = Field(default=0.01, ge=0, le=1, description="Challenger promoted only if its macro-F1 is at most this much below the champion's.")
    promote_max_log_loss_increase: float = Field(default=0.02, ge=0, description="... and its log-loss at most this much above the champion's.")
    promote_max_auc_drop: float = Field(default=0.005, ge=0, le=1, description="... and its risk-score AUC at most this much below the champion's.")
    promote_max_brier_increase: float = Field(default=0.002, ge=0, le=1, description="... and its risk-score Brier score at most this much above the champion's.")

    # HTTP service (entrypoints/api.py; README "HTTP service").
    api_database_url: str | None = Field(
        default=None,
        description="URL the HTTP service connects with (the read-only api_reader role). Unset: DATABASE_URL's server as role api_reader (the embedded server trusts local roles).",
    )
    api_keys_sha256: str = Field(
        default="",
        description="Comma-separated sha256 hex digests of the accepted X-API-Key values; the service refuses to start without one.",
    )
    api_max_body_bytes: int = Field(default=16_384, gt=0, description="Largest request body the HTTP service accepts (bytes); larger gets 413.")
    api_champion_check_seconds: float = Field(
        default=30.0, ge=0, description="The HTTP service checks the registry's champion version at most this often (s) and reloads a newly promoted one.",
    )

    # Operations (README "Operations"): alerts and zombie-run detection, created by `payer-scoring prefect setup`.
    alert_webhook_url: str | None = Field(
        default=None,
        description="URL that receives a JSON POST ({subject, body}) for a Failed, Crashed, Late or not-completed-by-deadline run. Unset: the automations are created without the notification.",
    )
    zombie_after_seconds: int = Field(
        default=300, ge=30,
        description="A Running run with no heartbeat for this long is marked Crashed (at least 2x PREFECT_FLOWS_HEARTBEAT_FREQUENCY, 60 s in the worker).",
    )
    daily_deadline_minutes: int = Field(
        default=60, gt=0,
        description="The daily run must reach Completed within this many minutes of its start (06:00 + 60 = 07:00 America/Sao_Paulo), else an alert.",
    )

    def key_features(self) -> tuple[str, ...]:
        """``drift_key_features`` as a tuple of names."""
        return tuple(name.strip() for name in self.drift_key_features.split(",") if name.strip())

    def exempt_features(self) -> tuple[str, ...]:
        """``drift_exempt_features`` as a tuple of names."""
        return tuple(name.strip() for name in self.drift_exempt_features.split(",") if name.strip())

    def api_key_hashes(self) -> frozenset[str]:
        """``api_keys_sha256`` as a set of lower-case hex digests."""
        return frozenset(h.strip().lower() for h in self.api_keys_sha256.split(",") if h.strip())

    @field_validator("api_keys_sha256")
    @classmethod
    def _sha256_hex(cls, value: str) -> str:
        """Refuse anything but comma-separated 64-digit hex digests (a raw key pasted here would never match)."""
        for digest in (h.strip() for h in value.split(",") if h.strip()):
            if len(digest) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in digest):
                raise ValueError("expected comma-separated sha256 hex digests (64 hex digits each), e.g. from `printf %s KEY | sha256sum`")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        """Refuse a timezone name the IANA database does not know (e.g. a typo)."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA timezone name (e.g. America/Sao_Paulo)") from None
        return value

    def today(self) -> date:
        """Today's date in the configured timezone (the default as-of date)."""
        return datetime.now(ZoneInfo(self.timezone)).date()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build (once per process) and return the settings from the environment."""
    return Settings()
