"""Loading CSV files into a real PostgreSQL: export quirks, the exact rejects report,
the reject-share threshold, upsert on reload, chunking, and the companies snapshot."""

from __future__ import annotations

import csv
import math
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from payer_scoring.loading import COMPANY_COLUMNS, LoadError, load_companies_file, load_payments_file
from payer_scoring.mapping import PAYMENT_COLUMNS

C1 = "83 0b f4 f3 45 67 54 39 74 c5 43 31 ae 73 a3 09 23 3e b4 47 5b 47 9d 11 e5 1d e8 c7 90 cb 92 fd"
C2 = "11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 00"
# One real-shaped row of the export (../shared/data/examples/payment.json, hashes shortened).
BASE = {
    "company_id": C1, "company_name": "40 f9 0d a5", "company_document": "37 2a 52 fa",
    "company_trade_name": "40 f9 0d a5", "customer_id": "02 60 80 35", "customer_name": "c4 52 91 30",
    "customer_trade_name": "c4 52 91 30", "parent_type": "billing", "parent_id": "f02f0294-ce57-431c-b008-483d92dce72a",
    "payment_number": "e5 fa 90 b0", "issue_date_dte": "2024-12-30", "original_due_date_dte": "2025-01-10",
    "due_date_dte": "2025-01-10", "paid_at_dte": "2025-01-05", "issue_at_tsmp": "2024-12-30 03:04:27.000",
    "original_due_date_tsmp": "2025-01-10 23:59:59.000", "due_date_tsmp": "2025-01-10 23:59:59.000",
    "paid_at_tsmp": "2025-01-05 15:04:28.000", "payment_method": "generic", "payment_status": "paid",
    "paid_amount": "99.5", "billing_amount": "99.5", "payment_amount": "99.5", "installment": "1/1",
    "payment_provider": "", "discount_before_payment": "0.0", "discount_before_payment_due_date": "0",
    "description": "22 d0 50 cc", "qrcode_number": "", "os_code": "e3 b0 c4 42", "os_identifier": "e3 b0 c4 42",
    "by_mail": "true", "by_whatsapp": "true", "fees": "0", "fine": "0", "paid_at": "2025-01-05 15:04:28.000",
    "paid_method": "generic", "manual": "", "billing_number": "44 b5 2b 63",
}
assert list(BASE) == list(PAYMENT_COLUMNS)
NO_DUE = {"original_due_date_dte": "", "due_date_dte": "", "original_due_date_tsmp": "", "due_date_tsmp": ""}
UNPAID = {"paid_at_dte": "", "paid_at_tsmp": "", "paid_at": "", "paid_amount": "0", "payment_status": "pending", "paid_method": ""}


def row(**changes) -> list[str]:
    return list({**BASE, **changes}.values())


def write_csv(path: Path, rows: list[list[str]], header=tuple(PAYMENT_COLUMNS), bom=False, crlf=False) -> Path:
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def table(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def count(engine, name: str = "payments") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()


# ---------------------------------------------------------------- every quirk + malformed rows

QUIRK_ROWS = [
    # line 2: the real-shaped row; discount date 0 (= none), manual empty
    row(payment_number="P1"),
    # line 3: discount date as epoch seconds; booleans as Python-style text
    row(payment_number="P2", discount_before_payment_due_date="1735689600", by_mail="True", by_whatsapp="False"),
    # line 4, 5: the two bills without a due date; booleans t/f and 1/0
    row(payment_number="P3", **NO_DUE, by_mail="t", by_whatsapp="f"),
    row(payment_number="P4", **NO_DUE, **UNPAID, by_mail="1", by_whatsapp="0"),
    # line 6, 7: duplicated payment_number P1, but another instalment / another company -> other bills
    row(payment_number="P1", installment="2/3"),
    row(payment_number="P1", company_id=C2),
    # line 8..14: malformed rows
    row(payment_number="P5", issue_date_dte="2025-13-01"),
    row(payment_number="P6", billing_amount="abc"),
    row(payment_number=""),
    row(payment_number="P7", installment="1-3"),
    row(payment_number="P8", by_mail="maybe"),
    row(payment_number="P9", paid_at_tsmp="05/01/2025 10:00", discount_before_payment_due_date="soon"),
    row(payment_number="P10")[:-1],  # 38 fields
    # line 15: bill key repeated at line 18 -> superseded
    row(payment_number="P11", billing_amount="10"),
    # line 16-17: a quoted description spanning two physical lines
    row(payment_number="P12", description="first line\r\nsecond line"),
    # line 18: the later P11 wins
    row(payment_number="P11", billing_amount="20"),
    # line 19: customer missing
    row(payment_number="P13", customer_id=""),
]

EXPECTED_REJECTS = [  # line, column, value, expected, kind -- worked out by hand from QUIRK_ROWS
    ["8", "issue_date_dte", "2025-13-01", "date YYYY-MM-DD", "reject"],
    ["9", "billing_amount", "abc", "number", "reject"],
    ["10", "payment_number", "", "a value (part of the bill key)", "reject"],
    ["11", "installment", "1-3", "installment k/n (e.g. 1/3)", "reject"],
    ["12", "by_mail", "maybe", "boolean true/false", "reject"],
    ["13", "paid_at_tsmp", "05/01/2025 10:00", "timestamp YYYY-MM-DD HH:MM:SS.mmm", "reject"],
    ["13", "discount_before_payment_due_date", "soon", "epoch seconds (whole number, 0 = none)", "reject"],
    ["14", "(row)", "38 fields", "39 fields as in the header", "reject"],
    ["15", "company_id|payment_number|installment", f"{C1}|P11|1/1",
     "a bill key not repeated later in the file (line 18 supersedes it)", "duplicate"],
    ["19", "customer_id", "", "a value (required)", "reject"],
]


def test_every_export_quirk_loads_and_the_rejects_report_is_exact(clean_db, tmp_path):
    source = write_csv(tmp_path / "payments_quirks.csv", QUIRK_ROWS, bom=True, crlf=True)
    report_path = tmp_path / "rejects.csv"

    report = load_payments_file(clean_db, source, rejects_path=report_path, reject_share_max=0.5)

    assert (report.rows_read, report.inserted, report.updated, report.rejected, report.duplicates) == (17, 8, 0, 8, 1)
    lines = read_report(report_path)
    assert lines[0] == ["file", "line", "column", "value", "expected", "kind"]
    assert {r[0] for r in lines[1:]} == {str(source)}
    assert [r[1:] for r in lines[1:]] == EXPECTED_REJECTS
    assert report.summary() == (
        f"{source}: 17 rows read, 8 loaded into payments (8 inserted, 0 updated), 8 rejected, "
        f"1 duplicates superseded; rejects report: {report_path}"
    )

    bills = {
        (r["company_id"] == C1, r["payment_number"], r["installment"]): r
        for r in table(clean_db, "SELECT * FROM payments")
    }
    assert sorted(bills) == sorted([
        (True, "P1", "1/1"), (True, "P2", "1/1"), (True, "P3", "1/1"), (True, "P4", "1/1"),
        (True, "P1", "2/3"), (False, "P1", "1/1"), (True, "P11", "1/1"), (True, "P12", "1/1"),
    ])
    p1, p2, p3, p4 = (bills[(True, f"P{i}", "1/1")] for i in (1, 2, 3, 4))
    # The real-shaped row, typed.
    assert p1["issue_date_dte"] == date(2024, 12, 30) and p1["due_date_tsmp"] == datetime(2025, 1, 10, 23, 59, 59)
    assert p1["paid_at_tsmp"] == datetime(2025, 1, 5, 15, 4, 28) and p1["billing_amount"] == Decimal("99.50")
    assert p1["payment_provider"] is None and p1["qrcode_number"] is None  # empty string = NULL
    assert p1["discount_before_payment_due_date"] is None  # 0 = no date
    assert p1["installment_number"] == 1 and p1["installment_count"] == 1
    assert (p1["source_file"], p1["source_line"]) == ("payments_quirks.csv", 2)
    assert p2["discount_before_payment_due_date"] == date(2025, 1, 1)  # 1735689600 s
    assert (p2["by_mail"], p2["by_whatsapp"]) == (True, False)
    assert (p3["by_mail"], p3["by_whatsapp"], p4["by_mail"], p4["by_whatsapp"]) == (True, False, True, False)
    assert p3["due_date_dte"] is None and p4["original_due_date_tsmp"] is None
    assert p4["paid_amount"] == Decimal(0) and p4["paid_at"] is None
    assert all(b["manual"] is None for b in bills.values())
    assert bills[(True, "P1", "2/3")]["installment_count"] == 3
    assert bills[(True, "P11", "1/1")]["billing_amount"] == Decimal(20)  # later line wins
    assert bills[(True, "P11", "1/1")]["source_line"] == 18
    assert bills[(True, "P12", "1/1")]["description"] == "first line\r\nsecond line"
    assert bills[(True, "P12", "1/1")]["source_line"] == 16


def test_loading_the_same_file_twice_updates_instead_of_duplicating(clean_db, tmp_path):
    source = write_csv(tmp_path / "p.csv", [row(payment_number=f"N{i}") for i in range(5)])
    first = load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv")
    second = load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv")
    assert (first.inserted, first.updated) == (5, 0)
    assert (second.inserted, second.updated) == (0, 5)
    assert count(clean_db) == 5
    # A changed row of a later export replaces the stored bill.
    write_csv(source, [row(payment_number="N0", payment_status="cancelled")])
    load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv")
    assert table(clean_db, "SELECT payment_status FROM payments WHERE payment_number = 'N0'") == [{"payment_status": "cancelled"}]
    assert count(clean_db) == 5


def test_duplicates_across_chunks_keep_the_last_line(clean_db, tmp_path):
    rows = [row(payment_number="D", billing_amount=str(i)) if i % 3 == 0 else row(payment_number=f"U{i}") for i in range(10)]
    source = write_csv(tmp_path / "chunks.csv", rows)  # "D" on lines 2, 5, 8, 11
    report = load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv", chunk_rows=2)
    assert (report.rows_read, report.inserted, report.duplicates, report.rejected) == (10, 7, 3, 0)
    assert table(clean_db, "SELECT billing_amount, source_line FROM payments WHERE payment_number = 'D'") == [
        {"billing_amount": Decimal(9), "source_line": 11}
    ]
    assert [(r[1], r[4], r[5]) for r in read_report(tmp_path / "r.csv")[1:]] == [
        ("2", "a bill key not repeated later in the file (line 11 supersedes it)", "duplicate"),
        ("5", "a bill key not repeated later in the file (line 11 supersedes it)", "duplicate"),
        ("8", "a bill key not repeated later in the file (line 11 supersedes it)", "duplicate"),
    ]


def test_memory_does_not_grow_with_the_file(clean_db, tmp_path):
    import tracemalloc

    peaks = {}
    for n in (1_000, 4_000):
        source = write_csv(tmp_path / f"rows_{n}.csv", [row(payment_number=f"M{n}-{i}") for i in range(n)])
        tracemalloc.start()
        report = load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv", chunk_rows=250)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.inserted == n
    # 4x the rows, same chunk size: the peak is about one chunk (~0.8 MB), not the file
    # (holding 4,000 parsed rows would take ~5.5 MB).
    assert peaks[4_000] < peaks[1_000] * 1.3 + 200_000, peaks


# ---------------------------------------------------------------- threshold


def test_too_many_rejects_fail_in_one_line_and_write_nothing(clean_db, tmp_path):
    before = write_csv(tmp_path / "before.csv", [row(payment_number="K1"), row(payment_number="K2")])
    load_payments_file(clean_db, before, rejects_path=tmp_path / "before.rejects.csv")
    snapshot = table(clean_db, "SELECT * FROM payments ORDER BY payment_number")

    # 100 rows, 2 bad (2.0% > 1.0%); the good ones would update K1 and add 97 new bills.
    rows = [row(payment_number="K1", billing_amount="1")] + [row(payment_number=f"G{i}") for i in range(97)]
    rows += [row(payment_number="B1", due_date_dte="31/01/2025"), row(payment_number="B2", fine="two")]
    source = write_csv(tmp_path / "bad.csv", rows)
    report_path = tmp_path / "bad.rejects.csv"
    with pytest.raises(LoadError) as err:
        load_payments_file(clean_db, source, rejects_path=report_path)  # default share: settings, 0.01

    assert str(err.value) == (
        f"{source}: 2 of 100 rows rejected (2.0%) > 1.0% allowed; "
        f"first: line 100, column due_date_dte '31/01/2025', expected date YYYY-MM-DD; see {report_path}"
    )
    assert table(clean_db, "SELECT * FROM payments ORDER BY payment_number") == snapshot
    assert [r[1:] for r in read_report(report_path)[1:]] == [
        ["100", "due_date_dte", "31/01/2025", "date YYYY-MM-DD", "reject"],
        ["101", "fine", "two", "number", "reject"],
    ]


def test_rejects_up_to_the_share_load_the_good_rows(clean_db, tmp_path):
    rows = [row(payment_number=f"G{i}") for i in range(99)] + [row(payment_number="B", billing_amount="n/a")]
    source = write_csv(tmp_path / "ok.csv", rows)  # 1 of 100 = 1.0%, not above 1.0%
    report = load_payments_file(clean_db, source, rejects_path=tmp_path / "ok.rejects.csv")
    assert (report.rows_read, report.inserted, report.rejected) == (100, 99, 1)
    assert count(clean_db) == 99


def test_cli_prints_the_threshold_failure_as_one_line(clean_db, tmp_path, cli):
    rows = [row(payment_number="G")] + [row(payment_number="B", billing_amount="x")]
    write_csv(tmp_path / "bad.csv", rows)
    done = subprocess.run([*cli, "load", "payments", "bad.csv"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: bad.csv: 1 of 2 rows rejected (50.0%) > 1.0% allowed; "
        f"first: line 3, column billing_amount 'x', expected number; see {tmp_path / 'bad.csv.rejects.csv'}"
    ]
    assert (tmp_path / "bad.csv.rejects.csv").exists()  # default: <file name>.rejects.csv in the current folder
    assert count(clean_db) == 0


# ---------------------------------------------------------------- header and mapping errors


def test_missing_export_columns_are_named(clean_db, tmp_path):
    header = [c for c in PAYMENT_COLUMNS if c not in ("fees", "billing_number")]
    source = write_csv(tmp_path / "short.csv", [], header=header)
    with pytest.raises(LoadError) as err:
        load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv")
    assert str(err.value) == (
        f"{source}: missing column(s) of the payments export layout: fees, billing_number "
        "(another layout needs --mapping)"
    )


def test_mapping_with_unknown_key_fails_in_one_line_on_the_cli(clean_db, tmp_path, cli):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns:\n  customer_id: {column: c, colum: d}\n")
    write_csv(tmp_path / "x.csv", [], header=["c"])
    done = subprocess.run([*cli, "load", "payments", "x.csv", "--mapping", str(mapping)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {mapping}: columns.customer_id: unknown key 'colum' (allowed: column, template, constant, "
        "if_present, then, else, values, default, format, relative_days, add_days)"
    ]


def test_mapping_source_column_missing_from_the_file(clean_db, tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "columns:\n  company_id: {constant: a}\n  customer_id: cust\n  payment_number: num\n"
        "  issue_date_dte: issued\n  payment_status: {constant: paid}\n  billing_amount: amount\n"
    )
    source = write_csv(tmp_path / "x.csv", [], header=["cust", "amount"])
    with pytest.raises(LoadError) as err:
        load_payments_file(clean_db, source, mapping_path=mapping, rejects_path=tmp_path / "r.csv")
    assert str(err.value) == f"{source}: missing column(s) named in {mapping}: num, issued"


def test_broken_quoting_and_non_utf8_fail_with_the_line(clean_db, tmp_path):
    source = write_csv(tmp_path / "q.csv", [row(payment_number="A")])
    with open(source, "a") as fh:
        fh.write('x,"unterminated\n')
    with pytest.raises(LoadError, match=r"q\.csv line 3: malformed CSV"):
        load_payments_file(clean_db, source, rejects_path=tmp_path / "r.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(PAYMENT_COLUMNS).encode() + b"\nS\xe3o Paulo\n")
    # issue 12: the line of the first undecodable byte (was "after line 0"), and the --encoding hint
    with pytest.raises(LoadError, match=r"latin\.csv line 2: not utf-8 text \(bytes e3: .*--encoding latin-1"):
        load_payments_file(clean_db, latin, rejects_path=tmp_path / "r.csv")
    assert count(clean_db) == 0


# ---------------------------------------------------------------- companies

COMPANY_HEADER = [export for _col, export, _kind in COMPANY_COLUMNS]


def company(**changes) -> list[str]:
    base = {export: "" for export in COMPANY_HEADER}
    base.update({
        "company_id": C1, "consider_for_revenue": "True", "first_active_date": "2023-05-02 10:11:12.000",
        "last_active_date": "", "is_considered_for_recovery": "False", "is_cosidered_for_subscription": "True",
        "is_considered_for_wapp_messages_sent": "", "recovery_tax": "0.02", "whatsapp_tax": "0.35",
        "monthly_fee_tax": "1500", "has_fit_bank": "False", "is_using_kobana": "True", "bank_account_type": "pj",
        "company_size": "small", "has_no_issues": "True", "is_dropout": "False", "is_churn": "False",
        "is_preactive": "False", "is_trial_m_1": "False", "is_trial_m_2": "False", "payments_issued_m-1": "12.0",
        "payments_issued_with_due_date_same_month_m-1": "3.0", "median_of_issued_payments": "",
        "growth_rate": "", "is_growing": "True", "is_shrinking": "False", "is_churn_risk": "False",
        "is_key_account": "True", "is_key_onboarding": "False",
    })
    base.update({k.replace("_m_1", "_m-1") if k.startswith("payments_issued") else k: v for k, v in changes.items()})
    return list(base.values())


def test_companies_quirks_load_and_each_load_replaces_the_snapshot(clean_db, tmp_path):
    rows = [
        company(growth_rate="inf"),                                  # line 2
        company(company_id="", growth_rate="Infinity", consider_for_revenue="",  # line 3: null id, empty bool
                is_considered_for_wapp_messages_sent="true"),
        company(growth_rate="-100", company_size=""),               # line 4: repeated id
        company(company_id="C3", recovery_tax="abc"),                # line 5: bad number
        company(company_id="C4", is_churn="sometimes", last_active_date="yesterday"),  # line 6
    ]
    source = write_csv(tmp_path / "company_profiling.csv", rows, header=COMPANY_HEADER, bom=True, crlf=True)
    report = load_companies_file(clean_db, source, rejects_path=tmp_path / "c.rejects.csv", reject_share_max=0.5)

    assert (report.rows_read, report.inserted, report.rejected, report.replaced_rows) == (5, 3, 2, 0)
    assert [r[1:] for r in read_report(tmp_path / "c.rejects.csv")[1:]] == [
        ["5", "recovery_tax", "abc", "number (inf allowed)", "reject"],
        ["6", "last_active_date", "yesterday", "timestamp YYYY-MM-DD HH:MM:SS.mmm", "reject"],
        ["6", "is_churn", "sometimes", "boolean true/false", "reject"],
    ]
    stored = table(clean_db, "SELECT * FROM companies ORDER BY source_line")
    assert [r["source_line"] for r in stored] == [2, 3, 4]
    assert [r["company_id"] for r in stored] == [C1, None, C1]
    assert [r["growth_rate"] for r in stored] == [math.inf, math.inf, -100.0]
    assert [r["consider_for_revenue"] for r in stored] == [True, None, True]
    assert [r["is_considered_for_wapp_messages_sent"] for r in stored] == [None, True, None]
    assert all(r["median_of_issued_payments"] is None for r in stored)  # the 100%-null column
    assert stored[0]["payments_issued_m_1"] == 12.0 and stored[0]["payments_issued_with_due_date_same_month_m_1"] == 3.0
    assert stored[0]["first_active_date"] == datetime(2023, 5, 2, 10, 11, 12) and stored[0]["last_active_date"] is None
    assert stored[2]["company_size"] is None

    smaller = write_csv(tmp_path / "company_profiling_2.csv", [company(company_id="C9")], header=COMPANY_HEADER)
    # issue 12: 3 -> 1 rows is more than the default 50 % shrink: refused unless allowed (--allow-shrink)
    with pytest.raises(LoadError, match=r"1 rows would replace a snapshot of 3 .*--allow-shrink"):
        load_companies_file(clean_db, smaller, rejects_path=tmp_path / "c2.rejects.csv")
    assert len(table(clean_db, "SELECT company_id FROM companies")) == 3
    again = load_companies_file(clean_db, smaller, rejects_path=tmp_path / "c2.rejects.csv", shrink_share_max=None)
    assert (again.inserted, again.replaced_rows) == (1, 3)
    assert [r["company_id"] for r in table(clean_db, "SELECT company_id FROM companies")] == ["C9"]
    assert "previous snapshot of 3 rows replaced" in again.summary()


def test_companies_over_the_reject_share_keep_the_previous_snapshot(clean_db, tmp_path):
    good = write_csv(tmp_path / "good.csv", [company(company_id="KEEP")], header=COMPANY_HEADER)
    load_companies_file(clean_db, good, rejects_path=tmp_path / "g.csv")
    bad = write_csv(tmp_path / "bad.csv", [company(company_id="NEW"), company(growth_rate="fast")], header=COMPANY_HEADER)
    with pytest.raises(LoadError) as err:
        load_companies_file(clean_db, bad, rejects_path=tmp_path / "b.csv")
    assert str(err.value) == (
        f"{bad}: 1 of 2 rows rejected (50.0%) > 1.0% allowed; "
        f"first: line 3, column growth_rate 'fast', expected number (inf allowed); see {tmp_path / 'b.csv'}"
    )
    assert [r["company_id"] for r in table(clean_db, "SELECT company_id FROM companies")] == ["KEEP"]


def test_companies_missing_columns_are_named(clean_db, tmp_path):
    header = [h for h in COMPANY_HEADER if h not in ("growth_rate", "payments_issued_m-1")]
    source = write_csv(tmp_path / "c.csv", [], header=header)
    with pytest.raises(LoadError) as err:
        load_companies_file(clean_db, source, rejects_path=tmp_path / "r.csv")
    assert str(err.value) == f"{source}: missing column(s) of the company profiling export: payments_issued_m-1, growth_rate"
