"""The rules file: defaults exactly as DESIGN.md, validation, and the category rule."""

from __future__ import annotations

import pytest

from payer_scoring.rules import KNOWN_STATUSES, Rules, RulesError, category_for, load_rules
from payer_scoring.settings import PROJECT_ROOT

RULES_FILE = PROJECT_ROOT / "config" / "rules.toml"


def test_default_rules_are_the_design_defaults():
    rules = load_rules(RULES_FILE)
    assert isinstance(rules, Rules)
    assert rules.grace_days == 0 and rules.due_date_column == "due_date_dte" and rules.min_matured_bills == 3
    assert rules.thresholds == (0.0, 0.30, 0.70)
    assert {"cancelled", "error", "derrogatory_cancelled", "protest_cancelled"} == set(rules.excluded_statuses)
    assert "paid" in rules.paid_statuses and "pending" in rules.open_statuses and "overdue" in rules.open_statuses
    # every status of the export is classified exactly once
    listed = set(rules.paid_statuses) | set(rules.open_statuses) | set(rules.excluded_statuses)
    assert listed == KNOWN_STATUSES
    assert len(rules.version) == 12 and rules.version == load_rules(RULES_FILE).version
    assert rules.unknown_status == "open"


def test_version_changes_with_the_file(tmp_path):
    other = tmp_path / "rules.toml"
    other.write_text(RULES_FILE.read_text().replace("grace_days = 0", "grace_days = 2"))
    assert load_rules(other).version != load_rules(RULES_FILE).version
    assert load_rules(other).grace_days == 2


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("grace_days = 0", "grace_days = -1", "[maturity.grace_days] expected an integer >= 0"),
        ('due_date_column = "due_date_dte"', 'due_date_column = "paid_at_dte"', "[maturity.due_date_column]"),
        ("doubtful_max = 0.30", "doubtful_max = 0.80", "good_max <= doubtful_max <= forgetful_max"),
        ("forgetful_max = 0.70", "forgetful_max = 1.5", "[thresholds.forgetful_max] expected a share"),
        ("min_matured_bills = 3", "min_matured_bills = 0", "[maturity.min_matured_bills]"),
        ('excluded = ["cancelled"', 'excluded = ["pending", "cancelled"', "'pending' is in both statuses.open and statuses.excluded"),
        ("grace_days = 0", "grace_days = 0\ngrace_dayz = 1", "unknown key(s) in [maturity]: grace_dayz"),
        ("min_matured_bills = 3", "", "missing key(s) in [maturity]: min_matured_bills"),
        ('unknown_status = "open"', 'unknown_status = "paid"', "[statuses.unknown_status]"),
        ("[thresholds]", "[thresholds", "not valid TOML"),
    ],
)
def test_bad_rules_files_fail_with_one_line_naming_the_key(tmp_path, old, new, message):
    bad = tmp_path / "bad.toml"
    body = RULES_FILE.read_text()
    assert old in body
    bad.write_text(body.replace(old, new, 1))
    with pytest.raises(RulesError) as info:
        load_rules(bad)
    assert message in str(info.value) and str(bad) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_rules_file(tmp_path):
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("n_matured", "n_late", "expected"),
    [
        (2, 0, "new"), (2, 2, "new"), (3, 0, "good"), (3, 3, "bad"), (0, 0, "new"),
        (10, 3, "doubtful"),   # exactly 0.30
        (13, 4, "forgetful"),  # 0.3077
        (10, 7, "forgetful"),  # exactly 0.70
        (7, 5, "bad"),         # 0.714
        (10, 1, "doubtful"),
    ],
)
def test_category_rule_boundaries(n_matured, n_late, expected):
    assert category_for(n_matured, n_late, load_rules(RULES_FILE)) == expected
