"""One owner per rule: SQL files and suites agree with the one Python definition of the categories."""

from __future__ import annotations

import json
import re
from pathlib import Path

from payer_scoring.loading import STAGE_COLUMNS
from payer_scoring.results import BILLING_VIEW_COLUMNS, RESULT_COLUMNS, results_sql
from payer_scoring.rules import CATEGORIES, CATEGORY_LABELS, CLASSES, PROBABILITY_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SQL = REPO / "sql"


def _suite(name: str) -> dict[str, dict]:
    raw = json.loads((REPO / "expectations" / f"{name}.json").read_text())
    return {e["meta"]["name"]: e for e in raw["expectations"]}


def test_category_definitions_agree():
    assert CATEGORIES == ("new", *CLASSES)
    assert tuple(CATEGORY_LABELS) == CATEGORIES
    assert PROBABILITY_COLUMNS == tuple(f"p_{c}" for c in CLASSES)


def test_suites_value_sets_and_probability_columns_come_from_the_categories():
    features = _suite("customer_features")
    assert features["observed_category_known"]["kwargs"]["value_set"] == list(CATEGORIES)
    scores = _suite("customer_scores")
    assert scores["category_known"]["kwargs"]["value_set"] == list(CATEGORIES)
    assert scores["observed_category_known"]["kwargs"]["value_set"] == list(CATEGORIES)
    # the most-common-value check may name any category but "bad"
    assert set(scores["bad_not_the_most_common"]["kwargs"]["value_set"]) == set(CATEGORIES) - {"bad"}
    probability_checks = {e["kwargs"]["column"] for e in scores.values() if str(e["kwargs"].get("column", "")).startswith("p_")}
    assert probability_checks == set(PROBABILITY_COLUMNS)


def test_feature_and_label_queries_use_the_rule_functions_and_spell_no_rule_out():
    for name in ("customer_features", "performance_labels"):
        text = (SQL / f"{name}.sql").read_text()
        body = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert "payer_category(" in body and "payer_bill_counts(" in body and "payer_bill_late(" in body, name
        assert not re.search(r"'(good|doubtful|forgetful|bad|new)'", body), f"{name}.sql spells a category out"
        assert ":excluded_statuses AS text[])))" not in body.replace(" ", "")
    migration = (SQL / "migrations" / "0007_category_rule.sql").read_text()
    for category in CATEGORIES:
        assert f"'{category}'" in migration


def _column_list(text: str) -> list[str]:
    return [c.strip() for c in text.replace("\n", " ").split(",") if c.strip()]


def test_load_sql_column_lists_are_the_stage_columns():
    stage = (SQL / "load_payments_stage.sql").read_text()
    select = re.search(r"SELECT(.*?)FROM payments", stage, re.S).group(1)
    assert _column_list(select) == list(STAGE_COLUMNS)
    upsert = (SQL / "load_payments_upsert.sql").read_text()
    insert = re.search(r"INSERT INTO payments \((.*?)\)", upsert, re.S).group(1)
    assert _column_list(insert) == list(STAGE_COLUMNS)
    distinct = re.search(r"SELECT DISTINCT ON \([^)]*\)(.*?)FROM payments_stage", upsert, re.S).group(1)
    assert _column_list(distinct) == list(STAGE_COLUMNS)


def test_results_sql_is_built_from_the_declared_columns():
    for name in ("current_build", "history_old_rows", "history_carry_over", "rebuild_current_build"):
        text = results_sql(name)
        assert "{" not in text, name
        for column in RESULT_COLUMNS:
            assert column in text, (name, column)
    assert BILLING_VIEW_COLUMNS[:3] == ("company_id", "customer_id", "category")
