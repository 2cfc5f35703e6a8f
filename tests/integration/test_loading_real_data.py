"""Every real public data set loads with its shipped mapping through the CLI: all rows,
no rejects, and a second load leaves the same bills.

The row, customer and late-share figures are the ones measured independently in
../shared/data/real/README.md; matching them checks the mappings' date handling.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import REPO_ROOT, SHARED_DATA

from payer_scoring.loading import load_payments_file

REAL = SHARED_DATA / "real"
MAPPINGS = REPO_ROOT / "examples" / "mappings"
pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real data sets not present at {REAL} (they live outside the repository)"
)

# file under REAL (None = the UCI file after conversion), mapping, rows, customers, late share % (README)
DATASETS = {
    "ibm_accounts_receivable": ("ibm_accounts_receivable/WA_Fn-UseC_-Accounts-Receivable.csv", "ibm_accounts_receivable", 2_466, 100, 35.6),
    "nigeria_train": ("nigeria_superlender_loans/trainprevloans.csv", "nigeria_superlender_loans", 18_183, 4_359, 17.4),
    "nigeria_test": ("nigeria_superlender_loans/testprevloans.csv", "nigeria_superlender_loans", 5_907, 1_442, 18.8),
    "home_credit": ("home_credit_installments_sample/installments_payments.csv", "home_credit_installments", 7_347, 887, 9.1),
    "uci_credit_card": (None, "uci_credit_card_taiwan", 180_000, 30_000, 13.9),
}


def _uci_months(tmp_path: Path) -> Path:
    target = tmp_path / "uci_credit_card_months.csv"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "convert_uci_credit_card.py"),
         str(REAL / "uci_credit_card_taiwan" / "UCI_Credit_Card.csv"), str(target)],
        capture_output=True, text=True, check=True,
    )
    assert done.stdout.startswith(f"{target}: 180,000 customer-month rows written")
    return target


@pytest.mark.parametrize(
    "name",
    # UCI: 180,000 rows loaded twice, 20-40 s on a busy 2-core machine.
    [pytest.param(n, marks=pytest.mark.slow) if n == "uci_credit_card" else n for n in DATASETS],
)
def test_real_dataset_loads_every_row_and_reloads_idempotently(name, clean_db, tmp_path, cli):
    relative, mapping, rows, customers, late_pct = DATASETS[name]
    source = _uci_months(tmp_path) if relative is None else REAL / relative

    done = subprocess.run(
        [*cli, "load", "payments", str(source), "--mapping", str(MAPPINGS / f"{mapping}.yaml")],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"{source}: {rows:,} rows read, {rows:,} loaded into payments ({rows:,} inserted, 0 updated), "
        "0 rejected, 0 duplicates superseded"
    ), done.stdout
    report_path = tmp_path / f"{source.name}.rejects.csv"  # default: current folder
    assert report_path.read_text().splitlines() == ["file,line,column,value,expected,kind"]

    again = load_payments_file(clean_db, source, mapping_path=MAPPINGS / f"{mapping}.yaml", rejects_path=report_path)
    assert (again.rows_read, again.inserted, again.updated, again.rejected, again.duplicates) == (rows, 0, rows, 0, 0)

    with clean_db.connect() as conn:
        stats = conn.execute(sa.text(
            "SELECT count(*) AS bills, count(DISTINCT customer_id) AS customers, "
            "round(100.0 * avg((paid_at_dte > due_date_dte)::int), 1) AS late_pct, "
            "count(*) FILTER (WHERE payment_status = 'paid') AS paid, "
            "count(DISTINCT source_line) AS lines "
            "FROM payments"
        )).one()
    assert (stats.bills, stats.customers, float(stats.late_pct), stats.paid, stats.lines) == (rows, customers, late_pct, rows, rows)


def test_both_nigerian_files_share_one_database(clean_db, tmp_path):
    mapping = MAPPINGS / "nigeria_superlender_loans.yaml"
    for part in ("trainprevloans.csv", "testprevloans.csv"):
        load_payments_file(clean_db, REAL / "nigeria_superlender_loans" / part, mapping_path=mapping,
                           rejects_path=tmp_path / f"{part}.rejects.csv")
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one() == 18_183 + 5_907


def test_ibm_invoice_numbers_keep_their_leading_zeros(clean_db, tmp_path):
    load_payments_file(clean_db, REAL / DATASETS["ibm_accounts_receivable"][0],
                       mapping_path=MAPPINGS / "ibm_accounts_receivable.yaml", rejects_path=tmp_path / "r.csv")
    with clean_db.connect() as conn:
        first = conn.execute(sa.text(
            "SELECT customer_id, payment_number, issue_date_dte::text, due_date_dte::text, paid_at_dte::text, "
            "billing_amount::text, by_mail FROM payments WHERE source_line = 2"
        )).one()
        zeros = conn.execute(sa.text("SELECT count(*) FROM payments WHERE payment_number LIKE '0%'")).scalar_one()
    # line 2: 391,0379-NEVHP,4/6/2013,0000611365,1/2/2013,2/1/2013,55.94,No,1/15/2013,Paper,13,0
    assert tuple(first) == ("0379-NEVHP", "0000611365", "2013-01-02", "2013-02-01", "2013-01-15", "55.94", False)
    assert zeros == 266  # README: "invoiceNumber has leading zeros in 266 rows"
