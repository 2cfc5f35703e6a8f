"""The whole pipeline on real public data: load with the shipped mapping ->
weekly retrain flow (forced: trains the first champion) -> daily scoring flow,
on real PostgreSQL and a real Prefect API.

The expected figures are worked out here from the CSV files with the ``csv``
module, never read back from the database:

* one ``customer_categories`` row per distinct customer of the file;
* every category one of the five codes, p_good + p_doubtful + p_forgetful +
  p_bad = 1 on every row;
* the observed category of every customer: DESIGN.md's rules applied by hand
  to the bills matured at the as-of date (due date < T; late = paid after the
  due date or not paid by T; fewer than 3 matured -> ``new``), and the final
  category is ``new`` exactly for those customers.

IBM (100 customers, 2,466 invoices) runs in every test run (about a minute on
a busy 2-core machine); the Nigerian lender's test file (1,442 customers,
5,907 loans) is marked slow.  The same steps as shell commands:
``examples/run_public_data.sh ibm`` (README "Results on public data").
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import REPO_ROOT, SHARED_DATA

from payer_scoring.loading import load_payments_file

REAL = SHARED_DATA / "real"
MAPPINGS = REPO_ROOT / "examples" / "mappings"
CATEGORIES = {"good", "doubtful", "forgetful", "bad", "new"}
pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real data sets not present at {REAL} (they live outside the repository)"
)


def _ibm_bills(path: Path) -> list[tuple[str, date, date | None]]:
    """(customer, due date, settled date) per invoice; dates are M/D/YYYY."""
    day = lambda s: datetime.strptime(s, "%m/%d/%Y").date() if s else None  # noqa: E731
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [(r["customerID"], day(r["DueDate"]), day(r["SettledDate"])) for r in csv.DictReader(fh)]


def _nigeria_bills(path: Path) -> list[tuple[str, date, date | None]]:
    """(customer, first due date, first repaid date) per loan; timestamps with microseconds."""
    day = lambda s: datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").date() if s else None  # noqa: E731
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [(r["customerid"], day(r["firstduedate"]), day(r["firstrepaiddate"])) for r in csv.DictReader(fh)]


def _observed_categories(bills, as_of: date) -> dict[str, str]:
    """DESIGN.md's default rules (grace 0, min 3 matured, late-share bounds 0/0.30/0.70) by hand."""
    matured: dict[str, list[bool]] = defaultdict(list)
    customers = set()
    for customer, due, paid in bills:
        customers.add(customer)
        if due < as_of:
            matured[customer].append(paid is None or paid > as_of or paid > due)
    out = {}
    for customer in customers:
        lates = matured.get(customer, [])
        if len(lates) < 3:
            out[customer] = "new"
            continue
        share = sum(lates) / len(lates)
        out[customer] = "good" if share == 0 else "doubtful" if share <= 0.30 else "forgetful" if share <= 0.70 else "bad"
    return out


def _run_pipeline(engine, source: Path, mapping: str, as_of: date, tmp_path: Path) -> None:
    from flows.daily_scoring import score_customers
    from flows.weekly_retrain import retrain_on_drift

    report = load_payments_file(engine, source, mapping_path=MAPPINGS / f"{mapping}.yaml",
                                rejects_path=tmp_path / "rejects.csv")
    assert (report.rejected, report.inserted) == (0, report.rows_read)
    retrain = retrain_on_drift(force=True, as_of=as_of)
    assert retrain["decision"] == "promoted", retrain["reason"]
    summary = score_customers(as_of=as_of)
    assert summary["model_version"] == retrain["challenger_version"]


def _check_results(engine, expected: dict[str, str], as_of: date) -> None:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT customer_id, category, observed_category, as_of_date, "
            "p_good + p_doubtful + p_forgetful + p_bad AS p_sum FROM customer_categories"
        )).all()
    assert len(rows) == len(expected)
    assert {r.customer_id for r in rows} == set(expected)
    assert {r.category for r in rows} <= CATEGORIES
    assert all(abs(r.p_sum - 1.0) < 1e-9 for r in rows)
    assert all(r.as_of_date == as_of for r in rows)
    assert {r.customer_id: r.observed_category for r in rows} == expected
    assert {r.customer_id for r in rows if r.category == "new"} == {c for c, k in expected.items() if k == "new"}


def test_ibm_accounts_receivable_load_retrain_score(clean_db, prefect_harness, tmp_path):
    source = REAL / "ibm_accounts_receivable" / "WA_Fn-UseC_-Accounts-Receivable.csv"
    as_of = date(2014, 1, 10)  # the day after the last settlement (2014-01-09)
    bills = _ibm_bills(source)
    expected = _observed_categories(bills, as_of)
    assert len(expected) == 100 and len(bills) == 2_466  # the data set's README

    _run_pipeline(clean_db, source, "ibm_accounts_receivable", as_of, tmp_path)
    _check_results(clean_db, expected, as_of)
    counts = defaultdict(int)
    for category in expected.values():
        counts[category] += 1
    assert dict(counts) == {"good": 17, "doubtful": 37, "forgetful": 23, "bad": 23}  # the data set's README


def test_backtest_command_on_the_ibm_file(clean_db, prefect_harness, tmp_path, cli):
    """Issue 11: score the IBM book as of 2013-10-12, then backtest that run with what happened by 2014-01-10."""
    import json
    import subprocess

    source = REAL / "ibm_accounts_receivable" / "WA_Fn-UseC_-Accounts-Receivable.csv"
    scored_on = date(2013, 10, 12)  # 2014-01-10 minus H = 90 days: its window has just matured
    _run_pipeline(clean_db, source, "ibm_accounts_receivable", scored_on, tmp_path)
    done = subprocess.run([*cli, "backtest", "--as-of", "2014-01-10"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["horizon_days"] == 90 and [r["as_of"] for r in out["runs"]] == ["2013-10-12"]
    run = out["runs"][0]
    # every one of the 94 customers with an invoice due in (2013-10-12, 2014-01-10] (README "Results on public data")
    assert run["with outcome"] == 94
    assert 0.5 < run["risk AUC"] <= 1 and 0.5 < run["observed AUC"] <= 1
    assert 0 <= run["risk ECE"] <= 1 and 0 <= run["risk Brier"] <= 1
    with clean_db.connect() as conn:
        row = conn.execute(sa.text("SELECT as_of_date, n_with_outcome, risk_auc FROM backtest_reports")).one()
    assert (row.as_of_date, row.n_with_outcome) == (scored_on, 94) and row.risk_auc == pytest.approx(run["risk AUC"], abs=5e-4)
    # nothing matured yet for a later window: one line, exit code 1
    early = subprocess.run([*cli, "backtest", "--as-of", "2013-12-01"], cwd=tmp_path, capture_output=True, text=True)
    assert early.returncode == 1 and early.stderr.strip().startswith("error: no scoring run to backtest")


@pytest.mark.slow
def test_nigeria_test_file_load_retrain_score(clean_db, prefect_harness, tmp_path):
    source = REAL / "nigeria_superlender_loans" / "testprevloans.csv"
    as_of = date(2017, 7, 31)  # the day after the last repayment (2017-07-30)
    bills = _nigeria_bills(source)
    expected = _observed_categories(bills, as_of)
    assert len(expected) == 1_442 and len(bills) == 5_907  # the data set's README

    _run_pipeline(clean_db, source, "nigeria_superlender_loans", as_of, tmp_path)
    _check_results(clean_db, expected, as_of)


def test_real_file_with_another_date_format_fails_with_one_line_naming_line_column_and_format(clean_db, tmp_path, cli):
    """The IBM file re-saved with ISO dates (as a spreadsheet might) against the M/D/YYYY mapping."""
    import subprocess

    source = REAL / "ibm_accounts_receivable" / "WA_Fn-UseC_-Accounts-Receivable.csv"
    resaved = tmp_path / "ibm_iso_dates.csv"
    with open(source, newline="", encoding="utf-8-sig") as fh, open(resaved, "w", newline="", encoding="utf-8") as out:
        reader, writer = csv.DictReader(fh), None
        for r in reader:
            for col in ("PaperlessDate", "InvoiceDate", "DueDate", "SettledDate"):
                r[col] = datetime.strptime(r[col], "%m/%d/%Y").date().isoformat()
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
                writer.writeheader()
            writer.writerow(r)
            if reader.line_num == 2:
                first_invoice_date = r["InvoiceDate"]

    done = subprocess.run([*cli, "load", "payments", resaved.name, "--mapping", str(MAPPINGS / "ibm_accounts_receivable.yaml")],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {resaved.name}: 2,466 of 2,466 rows rejected (100.0%) > 1.0% allowed; "
        f"first: line 2, column InvoiceDate '{first_invoice_date}', expected date %m/%d/%Y; "
        f"see {tmp_path / (resaved.name + '.rejects.csv')}"
    ]
    assert not [line for line in done.stderr.splitlines() if line.startswith("Traceback")]
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one() == 0


def test_retrain_on_too_short_a_history_ends_with_one_error_line_and_no_traceback(clean_db, prefect_harness, tmp_path, cli):
    """Real data with too little history for the horizon (as UCI with H = 90): the
    command names the as-of date and what is needed; Prefect's engine frames are
    left out of the log (they are kept with --verbose)."""
    import os
    import subprocess

    from prefect.settings import PREFECT_API_URL

    source = REAL / "ibm_accounts_receivable" / "WA_Fn-UseC_-Accounts-Receivable.csv"
    load_payments_file(clean_db, source, mapping_path=MAPPINGS / "ibm_accounts_receivable.yaml",
                       rejects_path=tmp_path / "rejects.csv")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the harness's API: no temporary server per command
    done = subprocess.run([*cli, "retrain", "--force", "--as-of", "2012-06-01"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: as of 2012-06-01: no training snapshot fits "
        "(needs 90 days of history plus 2 x 90 days of matured performance windows)"
    ]
