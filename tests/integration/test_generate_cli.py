"""`payer-scoring generate` through the installed console command, against the test database."""

from __future__ import annotations

import subprocess

import sqlalchemy as sa


def _run(cli, *args):
    return subprocess.run([*cli, "generate", *args], capture_output=True, text=True, timeout=300)


def test_generate_into_an_empty_database_then_refuse_a_second_run(cli, clean_db):
    first = _run(cli, "--customers", "300", "--seed", "4", "--start", "2024-01-01", "--months", "12", "--drift-at", "2024-09-01")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("generated 300 customers, 1 companies") and "drift at 2024-09-01" in first.stdout
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(DISTINCT customer_id) FROM payments")).scalar_one() == 300
        assert conn.execute(sa.text("SELECT drift_at FROM synthetic_runs")).scalar_one().isoformat() == "2024-09-01"
    second = _run(cli, "--customers", "10")
    assert second.returncode == 1
    assert second.stderr.strip().startswith("error: table(s) payments, companies, synthetic_truth already hold rows")
    assert len(second.stderr.strip().splitlines()) == 1


def test_generate_csv_and_a_bad_drift_date(cli, tmp_path):
    done = _run(cli, "--customers", "50", "--start", "2024-01-01", "--months", "6", "--csv", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["companies.csv", "payments.csv", "synthetic_truth.csv"]
    bad = _run(cli, "--customers", "50", "--start", "2024-01-01", "--months", "6", "--drift-at", "2025-01-01")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: --drift-at 2025-01-01: expected a date after the start 2024-01-01 and before the end 2024-07-01"
