"""Unit tests of the risk model's pure parts: chain arithmetic, decision rule, hysteresis, ECE, reason codes, constraints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.risk_backtest import ece, flip_rates, one_more_late_bill
from models.risk_decision import apply_hysteresis, decide, tune_decision_rule
from models.risk_model import (
    EXCLUDED_FEATURES,
    MONOTONE,
    RISK_FEATURES,
    BoundedLogistic,
    cumulative_to_classes,
    link_targets,
    monotone_cumulative,
)
from models.risk_reasons import REASONS, contributions, top_reasons
from payer_scoring.features import FEATURE_COLUMNS


def test_model_inputs_are_the_feature_query_minus_the_trend():
    assert set(RISK_FEATURES) | set(EXCLUDED_FEATURES) == set(FEATURE_COLUMNS)
    assert [c for c in FEATURE_COLUMNS if c in RISK_FEATURES] == RISK_FEATURES  # query order kept
    assert set(MONOTONE.values()) <= {-1, 0, 1}
    # every lateness feature is constrained the bad way
    for name in ("n_late", "n_unpaid_overdue", "late_share", "dpd_mean_days", "dpd_max_days", "dpd_p90_days",
                 "recent3_late_share", "recent3_dpd_mean_days", "late_share_90d", "overdue_brl", "n_protest_events"):
        assert MONOTONE[name] == 1, name
    assert MONOTONE["since_last_late_days"] == -1


def test_reason_groups_cover_every_model_input_once():
    grouped = [c for cols, _, _ in REASONS.values() for c in cols]
    assert sorted(grouped) == sorted(RISK_FEATURES)
    assert all(pt and en and pt != en for _, pt, en in REASONS.values())


def test_link_targets_follow_the_class_order():
    got = link_targets(pd.Series(["good", "doubtful", "forgetful", "bad"]))
    assert got.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_cumulative_probabilities_become_non_negative_classes_summing_to_one():
    q = np.array([[0.5, 0.7, 0.1], [0.9, 0.6, 0.3], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    p = cumulative_to_classes(q)
    assert (p >= 0).all() and np.allclose(p.sum(axis=1), 1.0)
    # crossing links: q2 > q1 is cut to q1, so the doubtful class gets 0 (not negative)
    assert p[0].tolist() == pytest.approx([0.5, 0.0, 0.4, 0.1])
    assert p[1].tolist() == pytest.approx([0.1, 0.3, 0.3, 0.3])
    m = monotone_cumulative(q)
    assert (np.diff(m, axis=1) <= 0).all()


def test_decision_rule_is_a_threshold_chain():
    q = np.array([[0.2, 0.1, 0.05], [0.6, 0.1, 0.05], [0.6, 0.5, 0.05], [0.9, 0.8, 0.7], [0.9, 0.1, 0.7]])
    assert decide(q, (0.5, 0.4, 0.6)).tolist() == ["good", "doubtful", "forgetful", "bad", "bad"]
    # monotone: raising every q never moves a customer towards good
    order = {"good": 0, "doubtful": 1, "forgetful": 2, "bad": 3}
    rng = np.random.default_rng(0)
    base = np.sort(rng.uniform(size=(500, 3)), axis=1)[:, ::-1]
    up = np.minimum(1, base + rng.uniform(0, 0.2, size=(500, 1)))
    a = [order[c] for c in decide(base, (0.5, 0.4, 0.3))]
    b = [order[c] for c in decide(up, (0.5, 0.4, 0.3))]
    assert all(y >= x for x, y in zip(a, b))


def test_tuned_rule_recovers_separable_classes():
    # q1 alone says who is late; q3 alone who is bad: cut-offs between the groups give F1 = 1
    q = np.array([[0.1, 0.05, 0.01]] * 40 + [[0.8, 0.1, 0.02]] * 20 + [[0.9, 0.7, 0.1]] * 20 + [[0.95, 0.9, 0.8]] * 20)
    labels = ["good"] * 40 + ["doubtful"] * 20 + ["forgetful"] * 20 + ["bad"] * 20
    rule = tune_decision_rule(q, labels)
    assert rule.validation_macro_f1 == pytest.approx(1.0)
    assert decide(q, rule.cutoffs).tolist() == labels


def _today(rows):
    return pd.DataFrame(rows, columns=["company_id", "customer_id", "category", "q1", "q2", "q3", "bill_event"])


def test_hysteresis_holds_without_event_and_moves_with_one():
    cut = (0.5, 0.4, 0.3)
    previous = pd.DataFrame(
        [("C", "a", "good"), ("C", "b", "good"), ("C", "c", "good"), ("C", "d", "doubtful"), ("C", "e", "new"), ("C", "f", "bad")],
        columns=["company_id", "customer_id", "category"],
    )
    today = _today([
        ("C", "a", "doubtful", 0.52, 0.1, 0.05, False),   # q1 clears 0.50 by 0.02 < margin 0.05: held at good
        ("C", "b", "doubtful", 0.52, 0.1, 0.05, True),    # same evidence, a bill event: moves
        ("C", "c", "doubtful", 0.56, 0.1, 0.05, False),   # clears the cut-off by 0.06 >= margin: moves
        ("C", "d", "good", 0.47, 0.1, 0.05, False),       # 0.03 below: still within the band, held at doubtful
        ("C", "e", "good", 0.10, 0.1, 0.05, False),       # was new: takes today's
        ("C", "g", "bad", 0.90, 0.9, 0.90, False),        # first scoring: takes today's
        ("C", "f", "new", 0.90, 0.9, 0.90, False),        # new today: never held
    ])
    out = apply_hysteresis(previous, today, cut, 0.05)
    assert out["category"].tolist() == ["good", "doubtful", "doubtful", "doubtful", "good", "bad", "new"]
    assert out["held"].tolist() == [True, False, False, True, False, False, False]
    assert out["category_raw"].tolist() == today["category"].tolist()


def test_hysteresis_moves_only_as_far_as_the_margin_allows():
    previous = pd.DataFrame([("C", "a", "good")], columns=["company_id", "customer_id", "category"])
    # raw rule says bad (q3 0.32 >= 0.30) but only forgetful clears its cut-off by the margin (q2 0.50 >= 0.45)
    today = _today([("C", "a", "bad", 0.9, 0.50, 0.32, False)])
    out = apply_hysteresis(previous, today, (0.5, 0.4, 0.3), 0.05)
    assert out["category"].tolist() == ["forgetful"]


def test_flip_rates_count_changes_without_events():
    def day(cats, events):
        return pd.DataFrame({
            "company_id": "C", "customer_id": list("abcd"), "category": cats,
            "q1": [0.52] * 4, "q2": [0.1] * 4, "q3": [0.05] * 4, "bill_event": events,
        })

    days = [day(["good"] * 4, [False] * 4), day(["doubtful", "good", "good", "doubtful"], [False, False, False, True])]
    out = flip_rates(days, (0.5, 0.4, 0.3), 0.05)
    assert out["raw_mean"] == pytest.approx(0.5) and out["raw_no_event_mean"] == pytest.approx(0.25)
    assert out["hysteresis_mean"] == pytest.approx(0.25) and out["hysteresis_no_event_mean"] == 0.0


@pytest.mark.parametrize(
    "y, p, bins, strategy, expected",
    [
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 10, "width", 0.0),
        ([1, 1, 1, 1], [0.5, 0.5, 0.5, 0.5], 10, "width", 0.5),
        # two bins: 0.1 (outcome 0) and 0.9 (outcome 1) -> each off by 0.1
        ([0, 0, 1, 1], [0.1, 0.1, 0.9, 0.9], 10, "width", 0.1),
        ([0, 0, 1, 1], [0.1, 0.1, 0.9, 0.9], 2, "count", 0.1),
    ],
)
def test_ece_worked_examples(y, p, bins, strategy, expected):
    assert ece(np.array(y), np.array(p), bins, strategy) == pytest.approx(expected)


def test_bounded_logistic_keeps_the_constraint_signs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 3))
    # the truth says feature 0 lowers the risk, but its constraint is +1: the fit pins it at 0
    y = (rng.uniform(size=2000) < 1 / (1 + np.exp(x[:, 0] - 2 * x[:, 1]))).astype(int)
    model = BoundedLogistic(constraints=np.array([1, 1, -1])).fit(x, y)
    assert model.coef_[0] == pytest.approx(0.0, abs=1e-8)
    assert model.coef_[1] > 0.5 and model.coef_[2] <= 0


def test_contributions_and_top_reasons_of_a_known_score():
    # risk = 0.1 + 0.5 * late_share + 0.01 * n_unpaid_overdue; reference: the good payer (0, 0)
    features = pd.DataFrame({c: [0.0, 0.0] for c in RISK_FEATURES})
    features.loc[0, "late_share"] = 0.6
    features.loc[0, "n_unpaid_overdue"] = 2.0

    def risk(frame):
        return 0.1 + 0.5 * frame["late_share"].to_numpy() + 0.01 * frame["n_unpaid_overdue"].to_numpy()

    reference = pd.Series(0.0, index=RISK_FEATURES)
    contrib = contributions(risk, features, reference)
    assert contrib.loc[0, "LATE_SHARE_HIGH"] == pytest.approx(0.3)
    assert contrib.loc[0, "UNPAID_OVERDUE_BILLS"] == pytest.approx(0.02)
    assert top_reasons(contrib) == [["LATE_SHARE_HIGH", "UNPAID_OVERDUE_BILLS"], []]


def test_one_more_late_bill_moves_the_lateness_features_consistently():
    row = {c: 0.0 for c in FEATURE_COLUMNS}
    row.update(n_matured_bills=4, n_late=1, late_share=0.25, n_paid_early=2, recent3_late_share=1 / 3,
               n_matured_90d=2, late_share_90d=0.5, since_last_late_days=40, late_share_prev90d=0.0)
    moved = one_more_late_bill(pd.DataFrame([row]))
    assert moved.loc[0, "n_late"] == 2 and moved.loc[0, "late_share"] == pytest.approx(0.5)
    assert moved.loc[0, "n_paid_early"] == 1 and moved.loc[0, "late_share_90d"] == pytest.approx(1.0)
    assert moved.loc[0, "recent3_late_share"] == pytest.approx(2 / 3) and moved.loc[0, "since_last_late_days"] == 0
    assert moved.loc[0, "late_share_trend"] == pytest.approx(1.0)
