"""The model on generated data: beats persistence on the time holdout, and behaves sensibly.

One module-scoped data set: 8,000 generated customers (seed 11, 24 months to
2026-01-01) trained once through ``payer-scoring train``-equivalent code.  The
generator's hidden truth (synthetic_truth) is never read.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from models.registry import load_champion
from models.training import plan_snapshots, train
from payer_scoring.generator import GeneratorConfig, generate_to_database
from payer_scoring.rules import CLASSES, load_rules
from payer_scoring.settings import get_settings
from payer_scoring.features import FEATURE_COLUMNS, extract_features
from models.predict import PREDICTION_COLUMNS, predict_categories

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(engine):
    with engine.begin() as conn:
        tables = conn.execute(
            sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        ).scalars().all()
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    generate_to_database(engine, GeneratorConfig(customers=8_000, seed=11, start=date(2024, 1, 1), months=24))
    result = train(engine, settings=get_settings())
    return engine, result


def test_model_beats_persistence_on_the_time_holdout(trained):
    _, result = trained
    report = result.report
    assert result.entry.status == "champion"
    assert result.n_holdout > 200 and result.n_train > 2_000
    assert report["model"]["macro_f1"] > report["persistence"]["macro_f1"] + 0.02
    assert report["model"]["log_loss"] < report["persistence"]["log_loss"] - 0.1
    assert report["model"]["macro_f1"] > report["majority"]["macro_f1"]
    assert report["model"]["log_loss"] < report["majority"]["log_loss"]
    assert np.array(report["model"]["confusion_matrix"]).sum() == result.n_holdout


def test_time_split_has_an_embargo_of_one_horizon():
    plan = plan_snapshots(date(2025, 12, 31), date(2024, 1, 1), 90, 14, 365, 90, 1)
    assert plan.holdout == [date(2025, 10, 2)]
    assert plan.train[-1] == date(2025, 7, 4)  # holdout - 90 days: its labels end on the holdout date
    assert all((b - a).days == 14 for a, b in zip(plan.train, plan.train[1:]))
    assert plan.train[0] >= date(2024, 3, 31)


def test_predictions_new_below_minimum_and_probabilities_sum_to_one(trained):
    engine, _ = trained
    rules = load_rules()
    champion = load_champion(engine, store=get_settings().model_store)
    features = extract_features(engine, date(2025, 12, 31), rules, horizon_days=90)
    out = predict_categories(champion, features, rules)
    assert list(out.columns) == PREDICTION_COLUMNS and len(out) == len(features)
    probs = out[[f"p_{c}" for c in CLASSES]]
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all().all()
    new = out["n_matured"] < rules.min_matured_bills
    assert (out.loc[new, "category"] == "new").all()
    assert set(out.loc[~new, "category"]) <= set(CLASSES)
    # issue 11: the category is the champion's decision rule on its calibrated cumulative
    # probabilities (models/risk_decision.py), no longer the argmax of the class probabilities
    q = out[["q1", "q2", "q3"]].to_numpy()
    assert np.allclose(1 - q[:, 0], out["p_good"]) and np.allclose(q[:, 2], out["p_bad"])
    rule = champion.model.rule.decide(q)
    assert (out.loc[~new, "category"].to_numpy() == rule[~new.to_numpy()]).all()
    assert out["risk_score"].between(0, 1).all()
    assert (out["observed_category"] == features["observed_category"]).all()


def test_worse_payment_history_moves_probability_towards_bad(trained):
    """Behavioural check: the same customers with every recent matured bill late look worse."""
    engine, _ = trained
    rules = load_rules()
    champion = load_champion(engine, store=get_settings().model_store)
    features = extract_features(engine, date(2025, 10, 2), rules, horizon_days=90)
    good = features[(features["observed_category"] == "good") & (features["n_matured"] >= 5)].head(300).copy()
    assert len(good) >= 50
    worse = good.copy()
    n = worse["n_matured_bills"]
    worse["n_late"] = n
    worse["n_unpaid_overdue"] = np.minimum(n, 3)
    worse["late_share"] = 1.0
    worse["recent3_late_share"] = 1.0
    worse["late_share_90d"] = 1.0
    worse["late_share_trend"] = 1.0 - worse["late_share_prev90d"]
    worse["dpd_mean_days"] = 30.0
    worse["dpd_p90_days"] = 45.0
    worse["dpd_max_days"] = 60.0
    worse["recent3_dpd_mean_days"] = 40.0
    worse["since_last_late_days"] = 1.0
    worse["observed_category"] = "bad"
    before = predict_categories(champion, good, rules)
    after = predict_categories(champion, worse, rules)
    assert after["p_bad"].mean() > before["p_bad"].mean() + 0.2
    assert after["p_good"].mean() < before["p_good"].mean() - 0.2
    assert (after["p_bad"].to_numpy() > before["p_bad"].to_numpy()).mean() > 0.9


def test_missing_or_nan_features_are_refused(trained):
    engine, _ = trained
    champion = load_champion(engine, store=get_settings().model_store)
    rules = load_rules()
    features = extract_features(engine, date(2025, 10, 2), rules, horizon_days=90).head(5)
    with pytest.raises(ValueError, match="late_share"):
        predict_categories(champion, features.drop(columns=["late_share"]), rules)
    broken = features.copy()
    broken.loc[broken.index[0], "tenure_days"] = np.nan
    with pytest.raises(ValueError, match="NaN in \\['tenure_days'\\]"):
        predict_categories(champion, broken, rules)
    empty = predict_categories(champion, features.iloc[0:0], rules)
    assert empty.empty and list(empty.columns) == PREDICTION_COLUMNS


def test_cli_evaluate_writes_the_report(trained, cli, tmp_path):
    report_path = tmp_path / "report.json"
    done = subprocess.run([*cli, "evaluate", "--report-json", str(report_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    for name in ("model", "persistence", "majority"):
        assert {"macro_f1", "log_loss", "balanced_accuracy", "recall", "confusion_matrix"} <= set(report[name])
    assert report["holdout_as_of"] == ["2025-10-02"] and report["holdout_after_training"] is True
    assert report["model"]["macro_f1"] > report["persistence"]["macro_f1"]
    summary = json.loads(done.stdout)
    assert summary["beats_persistence"] is True


def test_cli_train_registers_a_challenger_and_bad_date_fails_in_one_line(trained, cli):
    done = subprocess.run([*cli, "train", "--as-of", "2025-12-31"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "challenger"
    bad = subprocess.run([*cli, "train", "--as-of", "2025-13-01"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: --as-of")
    early = subprocess.run([*cli, "train", "--as-of", "2024-03-01"], capture_output=True, text=True, timeout=120)
    assert early.returncode == 1 and "no training snapshot fits" in early.stderr
