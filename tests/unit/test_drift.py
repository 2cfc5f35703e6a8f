"""PSI, KS, category-share shift, triggers and the promotion rule, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from payer_scoring import drift

LN2, LN1_5 = math.log(2), math.log(1.5)
# PSI of shares (0.5, 0.5) -> (0.25, 0.75): 0.25*ln2 + 0.25*ln1.5
PSI_HALF_TO_QUARTER = 0.25 * LN2 + 0.25 * LN1_5  # 0.274653


def test_psi_of_two_known_histograms():
    assert drift.psi_from_shares([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert drift.psi_from_shares([0.5, 0.5], [0.25, 0.75]) == pytest.approx(PSI_HALF_TO_QUARTER)
    assert drift.psi_from_shares([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_empty_bin_uses_epsilon():
    # (1e-4 - 0.5) * ln(1e-4 / 0.5) + (1 - 0.5) * ln(1 / 0.5) = 4.257745 + 0.346574
    assert drift.psi_from_shares([0.5, 0.5], [0.0, 1.0]) == pytest.approx(4.604319, abs=1e-6)


def test_psi_rejects_histograms_of_different_lengths():
    with pytest.raises(ValueError, match="same non-zero length"):
        drift.psi_from_shares([0.5, 0.5], [1.0])


def test_psi_bins_come_from_reference_deciles():
    reference = np.arange(100.0)  # deciles 9.9, 19.8, ... -> ten bins of 10 values each
    assert drift.quantile_cut_points(reference).tolist() == pytest.approx([9.9 * k for k in range(1, 10)])
    assert drift.psi(reference, reference) == 0.0
    # every current value in the first bin: 0.9*ln(10) + 9*(1e-4-0.1)*ln(1e-4/0.1) = 2.072327 + 6.210763
    assert drift.psi(reference, np.full(100, 5.0)) == pytest.approx(8.283090, abs=1e-5)


def test_psi_with_ties_collapses_bins():
    # a 0/1 feature: cut points {0, 0.5, 1}; shares (0.5, 0, 0.5, 0) -> (0.25, 0, 0.75, 0)
    reference = np.array([0.0] * 50 + [1.0] * 50)
    current = np.array([0.0] * 25 + [1.0] * 75)
    assert drift.quantile_cut_points(reference).tolist() == [0.0, 0.5, 1.0]
    assert drift.psi(reference, current) == pytest.approx(PSI_HALF_TO_QUARTER)


def test_psi_of_a_constant_reference_sees_any_move():
    reference = np.full(100, 3.0)  # bins (-inf, 3] and (3, inf)
    assert drift.psi(reference, np.full(10, 3.0)) == 0.0
    current = np.array([3.0] * 50 + [4.0] * 50)
    assert drift.psi(reference, current) == pytest.approx(4.604319, abs=1e-6)


def test_psi_missing_values_are_a_bin_of_their_own():
    reference = np.array([0.0] * 50 + [np.nan] * 50)
    assert drift.psi(reference, np.zeros(100)) == pytest.approx(4.604319, abs=1e-6)
    assert math.isnan(drift.psi(reference, np.array([])))


def test_categorical_psi():
    assert drift.categorical_psi(["a", "b"], ["a", "b", "b", "b"]) == pytest.approx(PSI_HALF_TO_QUARTER)


def test_ks_against_the_exact_distribution():
    # ECDFs of {1,2,3,4} and {3,4,5,6} differ most on [2,3): 0.5 - 0 = 0.5.
    # Exact two-sided p for n = m = 4, D >= 2/4 (reflection formula):
    # 2 * (C(8,2) - C(8,0)) / C(8,4) = 2 * 27 / 70
    stat, p = drift.ks_test([1, 2, 3, 4], [3, 4, 5, 6])
    assert stat == pytest.approx(0.5)
    assert p == pytest.approx(54 / 70)
    assert drift.ks_test([1, 2, 3], [1, 2, 3]) == (0.0, 1.0)
    assert all(math.isnan(v) for v in drift.ks_test([np.nan], [1.0]))


@pytest.mark.parametrize("value, level", [(0.0, "stable"), (0.0999, "stable"), (0.10, "moderate"), (0.2499, "moderate"), (0.25, "major"), (math.nan, "unknown")])
def test_psi_levels_follow_the_scorecard_convention(value, level):
    assert drift.psi_level(value) == level


def test_feature_drift_table_flags_only_the_shifted_feature():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"late_share": rng.uniform(0, 0.2, 2000), "n_matured": rng.integers(3, 20, 2000)})
    current = pd.DataFrame({"late_share": rng.uniform(0.3, 0.6, 2000), "n_matured": rng.integers(3, 20, 2000)})
    table = drift.feature_drift(reference, current, ["late_share", "n_matured"]).set_index("feature")
    assert table.loc["late_share", "level"] == "major" and table.loc["late_share", "ks_pvalue"] < 1e-10
    assert table.loc["n_matured", "level"] == "stable" and table.loc["n_matured", "psi"] < 0.02
    with pytest.raises(ValueError, match="'pix_share' missing"):
        drift.feature_drift(reference, current, ["pix_share"])


def test_a_large_psi_on_a_handful_of_customers_is_not_drift():
    # 12 customers drawn from the reference range: PSI 0.88 ("major") from empty bins alone, KS p = 0.83
    reference = pd.DataFrame({"x": np.linspace(0, 1, 1001)})
    current = pd.DataFrame({"x": [0.02, 0.05, 0.08, 0.25, 0.35, 0.45, 0.52, 0.58, 0.65, 0.72, 0.85, 0.95]})
    row = drift.feature_drift(reference, current, ["x"]).iloc[0]
    assert row["level"] == "major" and row["ks_pvalue"] > 0.5
    assert not row["drifted"]
    assert drift.feature_drift(reference, current, ["x"], ks_alpha=0.9).iloc[0]["drifted"]


def test_exempt_features_do_not_trigger():
    table = pd.DataFrame({"feature": ["tenure_days", "a", "b"], "psi": [0.9, 0.0, 0.0], "drifted": [True, False, False]})
    policy = drift.RetrainPolicy(drifted_share_max=0.30, key_features=("tenure_days",), exempt_features=("tenure_days",))
    decision = drift.decide_retrain(has_champion=True, force=False, drift=table, decay=None, champion_age_days=1, policy=policy)
    assert not decision.retrain and "0 of 2 features" in decision.reason


def test_category_share_shift():
    shift = drift.category_share_shift({"good": 0.5, "bad": 0.5}, drift.category_shares(["good", "bad", "bad", "bad", "new"]))
    assert shift["current"] == {"good": 0.25, "doubtful": 0.0, "forgetful": 0.0, "bad": 0.75}
    assert shift["change"]["bad"] == pytest.approx(0.25)
    assert shift["psi"] == pytest.approx(PSI_HALF_TO_QUARTER)


def test_macro_f1_by_hand():
    # good: P=1, R=1/2 -> 2/3; bad: P=2/3, R=1 -> 4/5; macro = (2/3 + 4/5) / 2
    assert drift.macro_f1(["good", "good", "bad", "bad"], ["good", "bad", "bad", "bad"]) == pytest.approx(11 / 15)


def _table(psis: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"feature": list(psis), "psi": list(psis.values())})


POLICY = drift.RetrainPolicy(drifted_share_max=0.30, key_features=("late_share",), key_feature_psi=0.25, f1_drop=0.05, max_champion_age_days=90)


def test_no_trigger_says_why():
    decay = drift.PerformanceDecay(predictions_as_of="2025-01-01", n=500, realized_macro_f1=0.58, expected_macro_f1=0.60)
    decision = drift.decide_retrain(
        has_champion=True, force=False, drift=_table({"late_share": 0.05, "a": 0.12, "b": 0.0, "c": 0.0}),
        decay=decay, champion_age_days=30, policy=POLICY,
    )
    assert not decision.retrain and decision.triggers == []
    assert "1 of 4 features (25%)" in decision.reason and "drop 0.020 < 0.05" in decision.reason and "30 days" in decision.reason


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"has_champion": False}, ["no_champion"]),
        ({"force": True}, ["force"]),
        ({"drift": _table({"late_share": 0.05, "a": 0.12, "b": 0.11, "c": 0.0})}, ["drifted_share"]),  # 50% > 30%
        ({"drift": _table({"late_share": 0.25, "a": 0.0, "b": 0.0, "c": 0.0})}, ["key_feature_psi"]),
        ({"decay": drift.PerformanceDecay(n=500, realized_macro_f1=0.55, expected_macro_f1=0.60)}, ["performance_decay"]),
        ({"champion_age_days": 91}, ["champion_age"]),
    ],
)
def test_each_trigger_fires_alone(kwargs, expected):
    args = {"has_champion": True, "force": False, "drift": _table({"late_share": 0.0}), "decay": None, "champion_age_days": 90, "policy": POLICY}
    decision = drift.decide_retrain(**(args | kwargs))
    assert decision.retrain and decision.triggers == expected and len(decision.reasons) == 1


RULE = drift.PromotionRule(max_f1_drop=0.01, max_log_loss_increase=0.02)
CHAMPION = {"macro_f1": 0.60, "log_loss": 0.90}


@pytest.mark.parametrize(
    "challenger, promote",
    [
        ({"macro_f1": 0.62, "log_loss": 0.85}, True),  # better on both
        ({"macro_f1": 0.59, "log_loss": 0.92}, True),  # exactly at both margins
        ({"macro_f1": 0.5899, "log_loss": 0.85}, False),  # F1 drop 0.0101
        ({"macro_f1": 0.65, "log_loss": 0.9201}, False),  # log-loss up 0.0201
    ],
)
def test_promotion_rule_margins(challenger, promote):
    decided, reason = drift.promotion_decision(CHAMPION, challenger, RULE)
    assert decided is promote
    assert reason.startswith("challenger promoted" if promote else "challenger rejected")


def test_first_model_is_promoted_without_a_champion():
    assert drift.promotion_decision(None, {"macro_f1": 0.1, "log_loss": 3.0}, RULE)[0] is True
