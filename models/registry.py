"""Model registry: artifacts in the model store, their records in ``model_registry``.

An artifact is the fitted scikit-learn pipeline saved with joblib
(``<version>.joblib``) plus a metadata JSON beside it (``<version>.json``:
feature list, rules version, training window, metrics, library versions and
the artifact's sha256).  The registry row records the same sha256; every load
reads the file's bytes, checks their sha256 against the registry BEFORE
unpickling, and unpickles those same bytes (no second read), so an unknown or
altered file is never unpickled.

Statuses: the first model registered becomes ``champion``, later ones
``challenger``; :func:`promote` makes a challenger the champion and archives
the old champion in one transaction.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

REFERENCE_SAMPLE_ROWS = 5_000
NO_CHAMPION_MESSAGE = "no champion model in model_registry: run `payer-scoring train` first"


class RegistryError(RuntimeError):
    """A registry or model-store problem explained in one line."""


class NoChampionError(RegistryError):
    """``model_registry`` holds no champion."""

    def __init__(self, message: str = NO_CHAMPION_MESSAGE) -> None:
        super().__init__(message)


class ArtifactIntegrityError(RegistryError):
    """The artifact file's sha256 differs from the one recorded in the registry (not loaded)."""


@dataclass(frozen=True)
class Champion:
    """A loaded model: registry version, fitted pipeline, metadata dict and its input columns (in order)."""

    version: str
    model: Any
    metadata: dict
    feature_columns: list[str]
    status: str = "champion"
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryEntry:
    """What :func:`register_model` recorded."""

    version: str
    status: str
    artifact_path: Path
    sha256: str


def find_champion(engine: Engine, *, store: Path | str) -> "Champion | None":
    """The champion (sha256-checked like :func:`load_champion`), or None when the registry has none."""
    try:
        return load_champion(engine, store=store)
    except NoChampionError:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(obj: Any) -> str:
    """JSON text of ``obj`` (dates as ISO strings, numpy scalars as numbers)."""
    return json.dumps(obj, default=_json_default, sort_keys=True)


def save_artifact(model: Any, metadata: dict, version: str, store: Path | str) -> tuple[Path, str]:
    """Write ``<version>.joblib`` and ``<version>.json`` into the store; return (artifact path, sha256).

    The file is written to a temporary name and renamed, so a crash never
    leaves a half-written artifact under the final name.
    """
    folder = Path(store)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    data = buffer.getvalue()
    digest = _sha256(data)
    path = folder / f"{version}.joblib"
    if path.exists():
        raise RegistryError(f"{path} already exists: model versions are never overwritten")
    for target, payload in ((path, data), (folder / f"{version}.json", to_json({**metadata, "version": version, "sha256": digest}).encode())):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{version}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)
    return path, digest


def new_version(now: datetime | None = None) -> str:
    """A new model version name: ``m<UTC yyyymmddThhmmss><6 random hex>`` (sorts by creation time)."""
    now = now or datetime.now(timezone.utc)
    return f"m{now:%Y%m%dT%H%M%S}{os.urandom(3).hex()}"


def register_model(
    engine: Engine,
    model: Any,
    metadata: dict,
    reference_sample: pd.DataFrame | None = None,
    *,
    store: Path | str,
    version: str | None = None,
) -> RegistryEntry:
    """Save the artifact and record it: ``champion`` when there is none, else ``challenger``.

    ``metadata`` must hold feature_columns, rules_version, horizon_days,
    training_start, training_end and metrics (holdout_as_of optional).
    ``reference_sample``: features of the drift population at the training
    as-of date (the customers active then, see
    ``models.training.reference_population``; ``REFERENCE_SAMPLE_ROWS`` rows
    at most are kept) for drift checks.  ``store``: the model store folder
    (``settings.model_store``).  Raises :class:`RegistryError` when a key is missing.
    """
    required = ("feature_columns", "rules_version", "horizon_days", "training_start", "training_end", "metrics")
    missing = [k for k in required if k not in metadata]
    if missing:
        raise RegistryError(f"model metadata lacks {', '.join(missing)}")
    version = version or new_version()
    path, digest = save_artifact(model, metadata, version, store)
    features = list(metadata["feature_columns"])
    rows: list[dict] = []
    if reference_sample is not None and len(reference_sample):
        sample = reference_sample[features]
        if len(sample) > REFERENCE_SAMPLE_ROWS:
            sample = sample.sample(n=REFERENCE_SAMPLE_ROWS, random_state=0)
        rows = [
            {"v": version, "n": i, "f": to_json(dict(zip(features, map(float, values))))}
            for i, values in enumerate(sample.itertuples(index=False, name=None))
        ]
    with engine.begin() as conn:
        # Serialise concurrent registrations so two first models cannot both become champion.
        conn.execute(sa.text("LOCK TABLE model_registry IN SHARE ROW EXCLUSIVE MODE"))
        has_champion = conn.execute(sa.text("SELECT 1 FROM model_registry WHERE status = 'champion'")).first()
        status = "challenger" if has_champion else "champion"
        conn.execute(
            sa.text(
                "INSERT INTO model_registry (version, status, metrics, artifact_path, sha256, rules_version,"
                " feature_columns, horizon_days, training_start, training_end, holdout_as_of, metadata)"
                " VALUES (:version, :status, CAST(:metrics AS jsonb), :artifact_path, :sha256, :rules_version,"
                " CAST(:feature_columns AS jsonb), :horizon_days, :training_start, :training_end, :holdout_as_of,"
                " CAST(:metadata AS jsonb))"
            ),
            {
                "version": version,
                "status": status,
                "metrics": to_json(metadata["metrics"]),
                "artifact_path": path.name,
                "sha256": digest,
                "rules_version": metadata["rules_version"],
                "feature_columns": to_json(features),
                "horizon_days": int(metadata["horizon_days"]),
                "training_start": metadata["training_start"],
                "training_end": metadata["training_end"],
                "holdout_as_of": metadata.get("holdout_as_of"),
                "metadata": to_json({**metadata, "sha256": digest}),
            },
        )
        if rows:
            conn.execute(
                sa.text(
                    "INSERT INTO model_reference_sample (model_version, row_number, features)"
                    " VALUES (:v, :n, CAST(:f AS jsonb))"
                ),
                rows,
            )
    log.info("registered model %s as %s (%s)", version, status, path)
    return RegistryEntry(version=version, status=status, artifact_path=path, sha256=digest)


def promote(engine: Engine, version: str) -> None:
    """Make ``version`` the champion and archive the current one, in one transaction.

    Raises :class:`RegistryError` when the version is unknown or archived.
    """
    with engine.begin() as conn:
        conn.execute(sa.text("LOCK TABLE model_registry IN SHARE ROW EXCLUSIVE MODE"))
        status = conn.execute(sa.text("SELECT status FROM model_registry WHERE version = :v"), {"v": version}).scalar()
        if status is None:
            raise RegistryError(f"model {version!r} is not in model_registry")
        if status == "champion":
            return
        if status == "archived":
            raise RegistryError(f"model {version!r} is archived; only a challenger can be promoted")
        conn.execute(
            sa.text("UPDATE model_registry SET status = 'archived', status_changed_at = now() WHERE status = 'champion'")
        )
        conn.execute(
            sa.text("UPDATE model_registry SET status = 'champion', status_changed_at = now() WHERE version = :v"),
            {"v": version},
        )
    log.info("promoted model %s to champion", version)


def archive(engine: Engine, version: str) -> None:
    """Mark a challenger ``archived`` (e.g. rejected by the promotion rule); a champion is never archived alone."""
    with engine.begin() as conn:
        updated = conn.execute(
            sa.text(
                "UPDATE model_registry SET status = 'archived', status_changed_at = now()"
                " WHERE version = :v AND status = 'challenger'"
            ),
            {"v": version},
        ).rowcount
    if not updated:
        raise RegistryError(f"model {version!r} is not a challenger in model_registry")


_SELECT_MODEL = (
    "SELECT version, status, artifact_path, sha256, metadata, feature_columns, metrics FROM model_registry"
)


def _row(engine: Engine, version: str | None) -> sa.Row | None:
    """The registry row of ``version``, or of the champion when ``version`` is None."""
    with engine.connect() as conn:
        if version is None:
            return conn.execute(sa.text(_SELECT_MODEL + " WHERE status = 'champion'")).first()
        return conn.execute(sa.text(_SELECT_MODEL + " WHERE version = :v"), {"v": version}).first()


def _load(row: sa.Row, store: Path | str) -> Champion:
    path = Path(row.artifact_path)
    if not path.is_absolute():
        path = Path(store) / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"model {row.version}: cannot read artifact {path} ({exc.strerror or exc})") from exc
    digest = _sha256(data)
    if digest != row.sha256:
        raise ArtifactIntegrityError(
            f"model {row.version}: artifact {path} has sha256 {digest[:16]}..., model_registry records "
            f"{row.sha256[:16]}...; refusing to load it"
        )
    model = joblib.load(io.BytesIO(data))  # the bytes just verified, not a second read of the file
    return Champion(
        version=row.version,
        model=model,
        metadata=dict(row.metadata),
        feature_columns=list(row.feature_columns),
        status=row.status,
        metrics=dict(row.metrics),
    )


def load_champion(engine: Engine, *, store: Path | str) -> Champion:
    """Load the champion after checking its sha256; raises :class:`NoChampionError` or :class:`ArtifactIntegrityError`."""
    row = _row(engine, None)
    if row is None:
        raise NoChampionError()
    return _load(row, store)


def load_model(engine: Engine, version: str, *, store: Path | str) -> Champion:
    """Load any registered model by version (same sha256 check); :class:`RegistryError` when unknown."""
    row = _row(engine, version)
    if row is None:
        raise RegistryError(f"model {version!r} is not in model_registry")
    return _load(row, store)


class IncompatibleChampionError(RegistryError):
    """The settings' horizon or rules differ from the ones the champion was trained with."""


def check_compatible(model: Champion, *, horizon_days: int, rules_version: str) -> None:
    """Refuse to use ``model`` with a horizon (days) or rules version other than its own.

    The champion's features (the horizon-bounded ones) and its labels were
    computed with its registry metadata ``horizon_days`` and ``rules_version``
    (sha256 of the rules file, first 12 hex digits); scoring or evaluating with
    others gives categories that look valid and are not.  Raises
    :class:`IncompatibleChampionError` with one line saying which differs.
    """
    differences = []
    trained_h = model.metadata.get("horizon_days")
    if trained_h is not None and int(trained_h) != int(horizon_days):
        differences.append(
            f"horizon_days {horizon_days} (PAYER_SCORING_HORIZON_DAYS) differs from the champion's {int(trained_h)}"
        )
    trained_rules = model.metadata.get("rules_version")
    if trained_rules is not None and trained_rules != rules_version:
        differences.append(
            f"rules version {rules_version} (PAYER_SCORING_RULES_FILE) differs from the champion's {trained_rules}"
        )
    if differences:
        raise IncompatibleChampionError(
            f"model {model.version}: " + "; ".join(differences)
            + " - use the champion's settings, or train and promote a model with the new ones"
        )


def champion_version(engine: Engine) -> str | None:
    """Version of the current champion, or None (one cheap query: how a long-running reader sees a promotion)."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version FROM model_registry WHERE status = 'champion'")).scalar()


def load_reference_sample(engine: Engine, version: str) -> pd.DataFrame:
    """The drift reference sample of ``version`` (features of the customers active at its training as-of date).

    One row per sampled customer, one float64 column per feature of the model.
    Raises :class:`RegistryError` when the version is unknown.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT features FROM model_reference_sample WHERE model_version = :v ORDER BY row_number"
            ),
            {"v": version},
        ).scalars().all()
        columns = conn.execute(
            sa.text("SELECT feature_columns FROM model_registry WHERE version = :v"), {"v": version}
        ).scalar()
    if columns is None:
        raise RegistryError(f"model {version!r} is not in model_registry")
    return pd.DataFrame(list(rows), columns=list(columns)).astype("float64")
