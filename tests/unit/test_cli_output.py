"""What `payer-scoring retrain` prints after a promotion (issue 12: the first promotion printed champion_version null)."""

from __future__ import annotations

from entrypoints.cli import retrain_output


def test_first_promotion_prints_the_new_champion():
    report = {"id": 1, "as_of_date": "2026-11-30", "decision": "promoted", "reason": "first model", "triggers": [],
              "champion_version": None, "challenger_version": "20261130T101010"}
    out = retrain_output(report)
    assert out["champion_version"] == "20261130T101010" and out["previous_champion_version"] is None


def test_no_retrain_keeps_the_champion():
    report = {"decision": "skipped", "champion_version": "v1", "challenger_version": None}
    out = retrain_output(report)
    assert out["champion_version"] == "v1" and "previous_champion_version" not in out
