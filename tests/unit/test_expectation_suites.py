"""The GX suites as files: metadata, coverage of the feature columns, SQL translation, pandas validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from payer_scoring.rules import CATEGORIES, KNOWN_STATUSES, load_rules
from payer_scoring.features import FEATURE_COLUMNS
from payer_scoring.validation import EXPECTATIONS_DIR, ValidationFailed, failing_rows_predicate, load_suite, validate_frame

SUITES = ("payments", "customer_features", "customer_scores")


def _raw(name: str) -> dict:
    return json.loads((EXPECTATIONS_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("name", SUITES)
def test_every_expectation_says_name_severity_and_risk_and_the_suite_loads(name):
    raw = _raw(name)
    names = [e["meta"]["name"] for e in raw["expectations"]]
    assert len(names) == len(set(names)), "expectation names must be unique (they are quarantine reasons)"
    for e in raw["expectations"]:
        assert e["meta"]["severity"] in ("critical", "warning"), e
        assert len(e["meta"]["risk"]) > 20, e
    suite = load_suite(name)
    assert len(suite.expectations) == len(raw["expectations"])


def test_a_suite_without_severity_is_refused(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"name": "x", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "a"}, "meta": {"name": "a", "risk": "r"}}]}))
    with pytest.raises(ValueError, match="x.json: expectation #0"):
        load_suite("x", tmp_path)


def test_payments_suite_statuses_agree_with_the_rules():
    by_name = {e["meta"]["name"]: e for e in _raw("payments")["expectations"]}
    assert set(by_name["status_known"]["kwargs"]["value_set"]) == KNOWN_STATUSES
    paid = set(load_rules().paid_statuses)
    assert set(by_name["paid_bill_has_paid_date"]["kwargs"]["row_condition"]["parameter"]) == paid
    assert set(by_name["unpaid_bill_has_no_paid_date"]["kwargs"]["row_condition"]["parameter"]) == paid


def test_every_quarantine_expectation_translates_to_sql():
    columns = {"billing_amount", "paid_amount", "due_date_dte", "issue_date_dte", "paid_at_dte", "payment_status"}
    quarantining = [e for e in _raw("payments")["expectations"] if e["meta"].get("quarantine")]
    assert {e["meta"]["name"] for e in quarantining} >= {"billing_amount_not_negative", "due_date_present", "paid_bill_has_paid_date"}
    for e in quarantining:
        where, params = failing_rows_predicate(e["type"], e["kwargs"], columns, {"latest_plausible_date": "2026-01-02"})
        assert where.count("\"") >= 2  # names a real column
        assert all(v is not None for v in params.values())


@pytest.mark.parametrize(
    ("type_", "kwargs", "where", "params"),
    [
        ("expect_column_values_to_be_between", {"column": "billing_amount", "min_value": 0}, '("billing_amount" < :q0)', {"q0": 0}),
        ("expect_column_values_to_be_between", {"column": "paid_at_dte", "min_value": "2000-01-01", "max_value": {"$PARAMETER": "d"}},
         '("paid_at_dte" < :q0 OR "paid_at_dte" > :q1)', {"q0": "2000-01-01", "q1": "2026-01-02"}),
        ("expect_column_values_to_not_be_null", {"column": "paid_at_dte", "row_condition": {"type": "comparison", "column": {"name": "payment_status"}, "operator": "IN", "parameter": ["paid"]}},
         '"paid_at_dte" IS NULL AND ("payment_status" = ANY(:q0)) AND "payment_status" IS NOT NULL', {"q0": ["paid"]}),
        ("expect_column_pair_values_a_to_be_greater_than_b", {"column_A": "due_date_dte", "column_B": "issue_date_dte", "or_equal": True},
         '("due_date_dte" IS NOT NULL AND "issue_date_dte" IS NOT NULL AND "due_date_dte" < "issue_date_dte")', {}),
    ],
)
def test_failing_rows_predicate(type_, kwargs, where, params):
    columns = {"billing_amount", "paid_at_dte", "payment_status", "due_date_dte", "issue_date_dte"}
    assert failing_rows_predicate(type_, kwargs, columns, {"d": "2026-01-02"}) == (where, params)


def test_failing_rows_predicate_refuses_unknown_columns_and_types():
    with pytest.raises(ValueError, match="not a column of payments"):
        failing_rows_predicate("expect_column_values_to_not_be_null", {"column": "x; DROP TABLE payments"}, {"a"})
    with pytest.raises(ValueError, match="cannot find failing rows"):
        failing_rows_predicate("expect_column_values_to_match_regex", {"column": "a", "regex": "x"}, {"a"})


def test_features_suite_checks_every_feature_column_by_its_unit():
    checks: dict[str, set[str]] = {}
    for e in _raw("customer_features")["expectations"]:
        if "column" in e["kwargs"]:
            checks.setdefault(e["kwargs"]["column"], set()).add(e["type"])
    for column in FEATURE_COLUMNS:
        assert "expect_column_values_to_not_be_null" in checks.get(column, set()), column
        if column.endswith("_share") or column.startswith("n_") or column.endswith("_brl"):
            assert "expect_column_values_to_be_between" in checks[column], column


def _scores(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1, 1], size=n)
    return pd.DataFrame({
        "company_id": ["c"] * n,
        "customer_id": [f"u{i}" for i in range(n)],
        "category": (list(CATEGORIES) * n)[:n],
        "p_good": p[:, 0], "p_doubtful": p[:, 1], "p_forgetful": p[:, 2], "p_bad": p[:, 3],
        "observed_category": ["good"] * n,
        "n_matured": [5] * n,
        "risk_score": 1 - p[:, 0],  # issue 11: every scored row carries a risk score
    })


def test_valid_scores_pass():
    report = validate_frame(_scores(), "customer_scores", {"features_row_count": 6})
    assert report.success and not report.critical_failures


@pytest.mark.parametrize(
    ("change", "expectation"),
    [
        (lambda f: f.assign(p_bad=f.p_bad + 1e-4), "probabilities_sum_to_one"),
        (lambda f: f.assign(category=["unknown"] + list(f.category[1:])), "category_known"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "one_row_per_customer"),
        (lambda f: f.assign(p_good=np.where(f.index == 0, -0.1, f.p_good)), "p_good_is_probability"),
    ],
)
def test_broken_scores_fail_naming_the_expectation(change, expectation):
    with pytest.raises(ValidationFailed) as err:
        validate_frame(change(_scores()), "customer_scores", {"features_row_count": 6})
    assert expectation in str(err.value)
    assert expectation in err.value.report.markdown()


def test_a_lost_row_fails_the_row_count_check():
    with pytest.raises(ValidationFailed, match="one_score_per_feature_row"):
        validate_frame(_scores(), "customer_scores", {"features_row_count": 7})


@pytest.mark.parametrize("value", [None, 1.2, -0.1])
def test_missing_or_out_of_range_risk_score_fails(value):
    frame = _scores()
    frame["risk_score"] = frame["risk_score"].astype(object)
    frame.loc[0, "risk_score"] = value
    with pytest.raises(ValidationFailed, match="risk_score"):
        validate_frame(frame, "customer_scores", {"features_row_count": len(frame)}).raise_on_critical()
