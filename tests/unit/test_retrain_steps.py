"""The weekly retrain's glue without a database: retry condition, settings -> policy, report and artifact rows."""

from __future__ import annotations

import math

import pandas as pd
import sqlalchemy as sa
from prefect.states import Failed

from payer_scoring.db import DatabaseError
from payer_scoring.settings import Settings
from models import monitoring as retrain
from tasks.retries import retry_on_transient_db_error


def test_only_transient_database_errors_are_retried():
    connection_lost = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    assert retry_on_transient_db_error(None, None, Failed(data=connection_lost))
    # get_engine raises DatabaseError *from* the connection error; a DatabaseError
    # with no transient cause (e.g. the embedded server cannot start) is not retried
    # (issue 10: one retry policy, transient errors only).
    cannot_connect = DatabaseError("cannot connect to PostgreSQL")
    cannot_connect.__cause__ = connection_lost
    assert retry_on_transient_db_error(None, None, Failed(data=cannot_connect))
    wrapped = RuntimeError("training failed")
    wrapped.__cause__ = connection_lost
    assert retry_on_transient_db_error(None, None, Failed(data=wrapped))
    assert not retry_on_transient_db_error(None, None, Failed(data=ValueError("no training snapshot fits")))
    assert not retry_on_transient_db_error(None, None, Failed(data=sa.exc.ProgrammingError("x", {}, Exception("syntax"))))


def test_policy_and_rule_come_from_settings():
    settings = Settings(
        drift_key_features=" late_share , pix_share,", drift_drifted_share_max=0.5, drift_exempt_features="tenure_days",
        retrain_max_champion_age_days=30, promote_max_f1_drop=0.0, promote_max_log_loss_increase=0.1,
    )
    policy = retrain.retrain_policy(settings)
    assert policy.key_features == ("late_share", "pix_share") and policy.drifted_share_max == 0.5
    assert policy.exempt_features == ("tenure_days",) and policy.max_champion_age_days == 30
    rule = retrain.promotion_rule(settings)
    assert (rule.max_f1_drop, rule.max_log_loss_increase) == (0.0, 0.1)


def test_drift_rows_sort_worst_first_and_mark_noise():
    table = pd.DataFrame(
        [
            {"feature": "a", "psi": 0.12, "ks_statistic": 0.1, "ks_pvalue": 0.3, "level": "moderate", "drifted": False},
            {"feature": "b", "psi": 0.31, "ks_statistic": 0.2, "ks_pvalue": 1e-9, "level": "major", "drifted": True},
            {"feature": "c", "psi": math.nan, "ks_statistic": math.nan, "ks_pvalue": math.nan, "level": "unknown", "drifted": False},
        ]
    )
    rows = retrain.drift_table_rows(table)
    assert [r["feature"] for r in rows] == ["b", "a", "c"]
    assert rows[0]["flag"] == "major" and rows[1]["flag"] == "moderate (KS not significant: noise)"
    assert rows[2]["psi"] is None


def test_report_json_has_no_nan():
    measured = retrain.DriftMeasurement(
        table=pd.DataFrame([{"feature": "c", "psi": math.nan, "ks_statistic": math.nan, "ks_pvalue": math.nan, "level": "unknown", "drifted": False}]),
        category_shift=None, n_reference=1, n_current=0,
    )
    assert measured.feature_json() == {"c": {"psi": None, "ks_statistic": None, "ks_pvalue": None, "level": "unknown", "drifted": False}}
    assert retrain._clean_json({"x": (1.0, float("inf")), "y": {"z": float("nan")}}) == {"x": [1.0, None], "y": {"z": None}}


def test_metrics_rows_put_both_models_side_by_side():
    rows = retrain.metrics_table_rows({"version": "m1", "macro_f1": 0.51234, "log_loss": 1.2, "n": 300}, {"version": "m2", "macro_f1": 0.6, "log_loss": 1.1, "n": 300})
    assert rows[0] == {"metric": "version", "champion": "m1", "challenger": "m2"}
    assert rows[1] == {"metric": "macro_f1", "champion": 0.5123, "challenger": 0.6}
    assert rows[-1] == {"metric": "n", "champion": 300, "challenger": 300}
