"""Pure helpers of benchmarks/run_benchmark.py: rates, floor ratios, the table, verdicts (no database, no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "run_benchmark.py"
_spec = importlib.util.spec_from_file_location("run_benchmark", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["run_benchmark"] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


def _floors():
    scan = bench.Stage("floor: scan", seconds=2.0, rows=4_000_000, unit="bills")
    copy = bench.Stage("floor: copy", seconds=1.0, rows=500_000, unit="customers")
    return {s.name: s for s in (scan, copy)}


def test_rate_and_missing_time():
    assert bench.rate(1_000, 4.0) == 250.0
    assert bench.rate(1_000, 0.0) is None


def test_floor_ratio_is_per_row():
    floors = _floors()
    # 2,000,000 rows/s floor; the stage reads 4M bills in 12 s = 333,333 rows/s -> 6x slower
    features = bench.Stage("features", seconds=12.0, rows=4_000_000, unit="bills", floor="floor: scan")
    assert bench.floor_ratio(features, floors) == pytest.approx(6.0)
    # a floor measured on another row count: 1M rows in 8 s vs 500k rows/s -> 4x
    write = bench.Stage("write", seconds=8.0, rows=1_000_000, unit="customers", floor="floor: copy")
    assert bench.floor_ratio(write, floors) == pytest.approx(4.0)
    assert bench.floor_ratio(bench.Stage("predict", 1.0, 10, "customers"), floors) is None
    assert bench.floor_ratio(bench.Stage("x", 1.0, 10, "rows", floor="no such floor"), floors) is None


def test_table_has_one_line_per_stage_and_the_ratio():
    floors = _floors()
    stages = [*floors.values(), bench.Stage("features", 12.0, 4_000_000, "bills", peak_rss_mb=1536.4, floor="floor: scan")]
    table = bench.format_table(stages, floors).splitlines()
    assert len(table) == 2 + len(stages)
    assert table[-1] == "| features | 12.00 | 4,000,000 bills | 333,333 | 6.0× | 1,536 |"
    assert table[2] == "| floor: scan | 2.00 | 4,000,000 bills | 2,000,000 | - | - |"


def test_daily_total_counts_only_the_daily_stages_and_speedup():
    stages = [bench.Stage("a", 1.5, 1, "x", part_of_daily_run=True), bench.Stage("b", 2.5, 1, "x", part_of_daily_run=True),
              bench.Stage("retrain", 100.0, 1, "x")]
    assert bench.daily_total(stages) == 4.0
    assert bench.speedup(120.0, 4.0) == 30.0
    assert bench.speedup(None, 4.0) is None


def test_verdicts_name_each_target_met_or_missed():
    # issue 14's targets: < 60 s and < 2 GB at 1M, validation and features <= 3x their floor,
    # write-back >= 300,000 rows/s, prediction >= 100,000 customers/s, retrain < 120 s, load >= 200,000 rows/s
    result = {
        "customers": 1_000_000,
        "daily_total_seconds": 55.0,
        "daily_peak_rss_mb": 2.5 * 1024.0,
        "validation_vs_scan_floor": 4.0,
        "features_vs_scan_floor": 2.5,
        "stages": [{"name": "write-back", "rows_per_s": 100_000.0}, {"name": "prediction", "rows_per_s": 150_000.0},
                   {"name": "retrain (models.training.train)", "seconds": 130.0},
                   {"name": "load payments (CLI, export CSV)", "rows_per_s": 210_000.0}],
    }
    lines = bench.verdicts(result)
    assert lines[0].startswith("met: daily run 55 s")
    assert lines[1].startswith("MISSED: daily run peak RSS 2.50 GB")
    assert lines[2].startswith("MISSED: payments validation 4.0×")
    assert lines[3].startswith("met: feature query 2.5×")
    assert lines[4].startswith("MISSED: write-back 100,000 rows/s")
    assert lines[5].startswith("met: prediction 150,000 customers/s")
    assert lines[6].startswith("MISSED: retrain 130 s")
    assert lines[7].startswith("met: load payments 210,000 rows/s")
    assert bench.verdicts({**result, "daily_total_seconds": 61.0})[0].startswith("MISSED: daily run 61 s")
    small = bench.verdicts({**result, "customers": 100_000, "daily_total_seconds": 10.0, "speedup_vs_naive": 25.0})
    assert small[0] == "info: daily run 10.0 s (≈ 100 s if linear to 1M)"
    assert small[-1].startswith("met: 25× faster than naive")


def test_linearity_is_the_spread_of_seconds_per_customer():
    sizes = [
        {"customers": 100_000, "stages": [{"name": "floor: scan", "seconds": 1.0}, {"name": "a", "seconds": 1.0},
                                          {"name": "b", "seconds": 2.0}, {"name": "only here", "seconds": 1.0}]},
        {"customers": 1_000_000, "stages": [{"name": "floor: scan", "seconds": 9.0}, {"name": "a", "seconds": 10.5},
                                            {"name": "b", "seconds": 26.0}]},
    ]
    rows = bench.linearity(sizes)
    # a: 10 us then 10.5 us per customer (5 % spread); b: 20 then 26 (30 %); floors and one-size stages left out
    assert rows == [
        {"stage": "a", "us_per_customer": {100_000: 10.0, 1_000_000: 10.5}, "spread": 0.05, "ok": True},
        {"stage": "b", "us_per_customer": {100_000: 20.0, 1_000_000: 26.0}, "spread": 0.3, "ok": False},
    ]
    table = bench.format_linearity(rows).splitlines()
    assert table[-1] == "| b | 20.0 | 26.0 | 30% | MISSED |"
    assert bench.linearity(sizes[:1]) == []


def test_runner_env():
    assert bench.runner_env("in-process") == {"PAYER_SCORING_TASK_RUNNER": "in-process"}
    # one partition per worker, so dask:1 and dask:2 each score every partition at once
    assert bench.runner_env("dask:2") == {
        "PAYER_SCORING_TASK_RUNNER": "dask", "PAYER_SCORING_DASK_WORKERS": "2", "PAYER_SCORING_DASK_PARTITIONS": "2"
    }
    with pytest.raises(SystemExit):
        bench.runner_env("ray:2")


def test_database_names():
    assert bench.database_name(100_000) == "payer_scoring_bench_100k"
    assert bench.database_name(1_000_000) == "payer_scoring_bench_1m"
    assert bench.database_name(1_234) == "payer_scoring_bench_1234"
