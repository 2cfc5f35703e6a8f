"""`payer-scoring load payments` reports progress per COPY chunk (rows read, rows staged, rows/s)."""

from __future__ import annotations

import re
import subprocess

from test_loading import row, write_csv  # noqa: E402 - tests/integration is on sys.path

from payer_scoring.loading import load_payments_file


def test_progress_callback_once_per_chunk_with_cumulative_rows(clean_db, tmp_path):
    # 7 good rows + 1 row with a wrong field count, chunks of 3: copies after rows 3, 6 (+ the bad row read) and the rest
    rows = [row(payment_number=f"p{i}") for i in range(7)]
    rows.insert(4, ["too", "few"])
    path = write_csv(tmp_path / "bills.csv", rows)
    calls = []
    report = load_payments_file(clean_db, path, rejects_path=tmp_path / "r.csv", reject_share_max=0.5, chunk_rows=3,
                                progress=lambda read, copied, seconds: calls.append((read, copied, seconds)))
    assert [(r, c) for r, c, _ in calls] == [(3, 3), (7, 6), (8, 7)]
    assert all(s >= 0 for _, _, s in calls) and [s for *_, s in calls] == sorted(s for *_, s in calls)
    assert report.inserted == 7 and report.rejected == 1


def test_load_command_prints_one_progress_line_per_chunk(clean_db, tmp_path, cli):
    path = write_csv(tmp_path / "bills.csv", [row(payment_number=f"p{i}") for i in range(5)])
    done = subprocess.run([*cli, "load", "payments", str(path), "--rejects", str(tmp_path / "r.csv")],
                          capture_output=True, text=True, env={**__import__("os").environ, "PAYER_SCORING_LOAD_CHUNK_ROWS": "2"})
    assert done.returncode == 0, done.stderr
    lines = re.findall(r"bills\.csv: ([\d,]+) rows read, ([\d,]+) staged, [\d,]+ rows/s", done.stderr)
    assert lines == [("2", "2"), ("4", "4"), ("5", "5")], done.stderr
