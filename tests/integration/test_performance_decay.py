"""Realized vs holdout macro-F1 of matured predictions, on hand-made bills and scoring history."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from payer_scoring.rules import load_rules
from payer_scoring.settings import get_settings
from payer_scoring import drift
from models.monitoring import measure_performance_decay
from billing_fixtures import bill, insert_bills

T0 = date(2026, 1, 1)  # the scoring run whose window (T0, T0 + 90 days] has matured by AS_OF
AS_OF = date(2026, 4, 1)


def _history(engine, as_of: date, rows: list[tuple[str, str]], version: str = "vtest") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customer_category_history (company_id, customer_id, category, p_good, p_doubtful,"
                " p_forgetful, p_bad, observed_category, as_of_date, model_version, scored_at, flow_run_id)"
                " VALUES ('C1', :customer, :category, 0.25, 0.25, 0.25, 0.25, NULL, :as_of, :version, now(), 'test')"
            ),
            [{"customer": c, "category": k, "as_of": as_of, "version": version} for c, k in rows],
        )


def _register(engine, version: str, holdout_macro_f1: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO model_registry (version, status, metrics, artifact_path, sha256, rules_version,"
                " feature_columns, horizon_days, training_start, training_end, metadata)"
                " VALUES (:v, 'champion', CAST(:m AS jsonb), 'x.joblib', repeat('0', 64), 'r', '[]', 90,"
                " '2025-01-01', '2025-06-01', '{}')"
            ),
            {"v": version, "m": f'{{"model": {{"macro_f1": {holdout_macro_f1}}}}}'},
        )


@pytest.fixture
def scored(clean_db):
    """Bills maturing in (T0, T0+90] for A (on time: good), B (unpaid: bad), C (1 of 3 late: forgetful)."""
    insert_bills(
        clean_db,
        [
            bill("A", "2025-12-20", "2026-01-10", paid="2026-01-05"),
            bill("A", "2026-01-20", "2026-02-10", paid="2026-02-10"),
            bill("B", "2025-12-20", "2026-01-10"),
            bill("C", "2025-12-30", "2026-01-20", paid="2026-01-25"),
            bill("C", "2026-01-30", "2026-02-20", paid="2026-02-19"),
            bill("C", "2026-02-28", "2026-03-20", paid="2026-03-20"),
            bill("E", "2025-06-01", "2025-07-01", paid="2025-07-01"),  # nothing in the window: no label
        ],
    )
    # Predictions at T0: A right, B wrong (forgetful for bad), C right; D is `new` (left out); E has no label.
    _history(clean_db, T0, [("A", "good"), ("B", "forgetful"), ("C", "forgetful"), ("D", "new"), ("E", "good")])
    _history(clean_db, date(2025, 12, 18), [("A", "bad"), ("B", "bad"), ("C", "bad")])  # older: ignored
    _history(clean_db, date(2026, 2, 1), [("A", "bad"), ("B", "good"), ("C", "bad")])  # window not matured: ignored
    _register(clean_db, "vtest", 0.62)
    return clean_db


def test_realized_macro_f1_of_the_latest_matured_predictions(scored):
    settings = get_settings().model_copy(update={"decay_min_predictions": 3})
    decay = measure_performance_decay(scored, AS_OF, settings, load_rules())
    # good: F1 1; bad: 0 (missed); forgetful: P 1/2, R 1 -> 2/3.  Macro = (1 + 0 + 2/3) / 3 = 5/9
    assert decay.predictions_as_of == "2026-01-01" and decay.n == 3 and decay.model_version == "vtest"
    assert decay.realized_macro_f1 == pytest.approx(5 / 9)
    assert decay.expected_macro_f1 == 0.62 and decay.drop == pytest.approx(0.62 - 5 / 9)
    decision = drift.decide_retrain(
        has_champion=True, force=False, drift=None, decay=decay, champion_age_days=10,
        policy=drift.RetrainPolicy(f1_drop=0.05),
    )
    assert decision.triggers == ["performance_decay"] and "0.556" in decision.reason


def test_too_few_matured_predictions_are_not_judged(scored):
    settings = get_settings().model_copy(update={"decay_min_predictions": 4})
    decay = measure_performance_decay(scored, AS_OF, settings, load_rules())
    assert decay.realized_macro_f1 is None and decay.drop is None
    assert decay.note == "3 matured predictions from 2026-01-01, fewer than 4 (PAYER_SCORING_DECAY_MIN_PREDICTIONS)"


def test_no_scoring_run_old_enough(scored):
    decay = measure_performance_decay(scored, date(2026, 3, 17), get_settings(), load_rules())
    assert decay.note == "no scoring run on or before 2025-12-17 (as-of minus 90 days)"
