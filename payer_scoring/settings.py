"""The one settings object: environment variables prefixed ``PAYER_SCORING_``.

``DATABASE_URL`` is read without the prefix because that is the name every
PostgreSQL tool and container platform already uses.  Build the object with
:func:`get_settings` when a command or flow starts, never at import time.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field
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
    model_store: Path = Field(default=PROJECT_ROOT / "models" / "store", description="Folder holding model artifacts.")
    reject_share_max: float = Field(default=0.01, ge=0, le=1, description="Load fails when rejected rows exceed this share (0-1).")
    load_chunk_rows: int = Field(default=50_000, gt=0, description="Rows per COPY chunk when loading CSV files.")
    horizon_days: int = Field(default=90, gt=0, description="Performance window H in days.")
    snapshot_every_days: int = Field(default=14, gt=0, description="Days S between training snapshots.")

    def today(self) -> date:
        """Today's date in the configured timezone (the default as-of date)."""
        return datetime.now(ZoneInfo(self.timezone)).date()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build (once per process) and return the settings from the environment."""
    return Settings()
