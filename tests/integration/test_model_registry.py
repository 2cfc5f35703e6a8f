"""The model registry on a real PostgreSQL and a temporary model store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.dummy import DummyClassifier

from models import registry
from payer_scoring.features import FEATURE_COLUMNS


def _metadata(**extra) -> dict:
    return {
        "feature_columns": FEATURE_COLUMNS,
        "rules_version": "abc123def456",
        "horizon_days": 90,
        "training_start": date(2025, 1, 1),
        "training_end": date(2025, 6, 1),
        "holdout_as_of": date(2025, 9, 1),
        "metrics": {"model": {"macro_f1": 0.5, "log_loss": 0.9}},
        **extra,
    }


def _model():
    x = np.zeros((8, len(FEATURE_COLUMNS)))
    return DummyClassifier(strategy="prior").fit(x, ["good"] * 5 + ["bad"] * 3)


def test_no_champion_message(clean_db):
    with pytest.raises(registry.NoChampionError) as info:
        registry.load_champion(clean_db, store=Path("unused"))
    assert str(info.value) == "no champion model in model_registry: run `payer-scoring train` first"


def test_first_model_is_champion_then_challengers_and_promotion(clean_db, tmp_path):
    reference = pd.DataFrame(np.arange(30 * len(FEATURE_COLUMNS), dtype=float).reshape(30, -1), columns=FEATURE_COLUMNS)
    first = registry.register_model(clean_db, _model(), _metadata(), reference, store=tmp_path)
    second = registry.register_model(clean_db, _model(), _metadata(), None, store=tmp_path)
    assert (first.status, second.status) == ("champion", "challenger")
    assert first.artifact_path.exists() and (tmp_path / f"{first.version}.json").exists()
    champion = registry.load_champion(clean_db, store=tmp_path)
    assert champion.version == first.version and champion.feature_columns == FEATURE_COLUMNS
    assert champion.metadata["rules_version"] == "abc123def456" and champion.metadata["sha256"] == first.sha256
    assert list(champion.model.predict(np.zeros((1, len(FEATURE_COLUMNS))))) == ["good"]
    pd.testing.assert_frame_equal(registry.load_reference_sample(clean_db, first.version), reference)

    registry.promote(clean_db, second.version)
    with clean_db.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT version, status FROM model_registry")).all())
    assert statuses == {first.version: "archived", second.version: "champion"}
    assert registry.champion_version(clean_db) == second.version
    with pytest.raises(registry.RegistryError, match="archived"):
        registry.promote(clean_db, first.version)
    third = registry.register_model(clean_db, _model(), _metadata(), store=tmp_path)
    registry.archive(clean_db, third.version)
    assert _status(clean_db, third.version) == "archived"


def test_a_second_champion_is_refused_by_the_database(clean_db, tmp_path):
    registry.register_model(clean_db, _model(), _metadata(), store=tmp_path)
    with pytest.raises(sa.exc.IntegrityError):
        with clean_db.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO model_registry (version, status, metrics, artifact_path, sha256, rules_version,"
                    " feature_columns, horizon_days, training_start, training_end, metadata) VALUES"
                    " ('x', 'champion', '{}', 'x.joblib', repeat('0', 64), 'r', '[]', 90, '2025-01-01', '2025-01-02', '{}')"
                )
            )


class _Trap:
    """Unpickling this object writes a marker file: proves whether a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_tampered_artifact_is_refused_before_unpickling(clean_db, tmp_path):
    import joblib

    entry = registry.register_model(clean_db, _model(), _metadata(), store=tmp_path)
    marker = tmp_path / "marker.txt"
    joblib.dump(_Trap(marker), entry.artifact_path)  # an attacker's file under the champion's name
    with pytest.raises(registry.ArtifactIntegrityError) as info:
        registry.load_champion(clean_db, store=tmp_path)
    assert entry.version in str(info.value) and "refusing to load" in str(info.value)
    assert not marker.exists()  # never unpickled
    entry.artifact_path.unlink()
    with pytest.raises(registry.RegistryError, match="cannot read artifact"):
        registry.load_model(clean_db, entry.version, store=tmp_path)


def test_metadata_must_name_the_training_window(clean_db, tmp_path):
    meta = _metadata()
    del meta["training_end"]
    with pytest.raises(registry.RegistryError, match="training_end"):
        registry.register_model(clean_db, _model(), meta, store=tmp_path)


def _status(engine, version: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM model_registry WHERE version = :v"), {"v": version}).scalar_one()
