#!/usr/bin/env python3
"""Melt the UCI "default of credit card clients" file into one row per customer-month.

Why a script: UCI_Credit_Card.csv has one row per customer with six monthly
statements side by side (PAY_0, PAY_2..PAY_6 / BILL_AMT1..6 / PAY_AMT1..6) and
no dates at all.  A mapping file maps one source row to one bill, so it cannot
turn one row into six; this step does, and writes a plain layout that
examples/mappings/uci_credit_card_taiwan.yaml loads.

    python examples/convert_uci_credit_card.py \
        ../shared/data/real/uci_credit_card_taiwan/UCI_Credit_Card.csv uci_credit_card_months.csv
    payer-scoring load payments uci_credit_card_months.csv \
        --mapping examples/mappings/uci_credit_card_taiwan.yaml

Output columns (one row per customer and month, months in calendar order;
30,000 customers -> 180,000 rows):

    customer_id     the source ID
    month           YYYY-MM, 2005-04 .. 2005-09 (index 1 = Sep 2005, 6 = Apr 2005)
    statement_date  YYYY-MM-01 (invented: statements on the 1st)
    due_date        YYYY-MM-15 (invented: due on the 15th of the statement month)
    paid_date       due_date when PAY_n <= 0 (-2, -1, 0: paid duly / nothing due),
                    due_date + k months when PAY_n = k >= 1 (k months late)
    months_late     max(PAY_n, 0)
    pay_status      the source PAY_n code as is (-2 .. 8)
    bill_amount     BILL_AMTn (NT dollars; may be negative: a credit balance)
    paid_amount     PAY_AMTn
    credit_limit    LIMIT_BAL
    amount_due      max(BILL_AMTn, 0): what the statement asks the customer to
                    pay.  A negative balance (3,932 cells) is money the bank
                    owes the customer, not a bill; the scoring flow's payments
                    suite stops on negative billed amounts (more than 0.1%),
                    so the mapping bills amount_due and keeps bill_amount in
                    the description.

The calendar dates are invented (the source has none); only the order of the
months and the k-months-late rule come from the data.  With them, "paid after
the due date" is exactly PAY_n >= 1, the 13.9% of customer-months the data
set's README reports.  Every customer-month becomes a paid bill: the source
does not say which balances stayed unpaid.

Reads and writes one row at a time (memory does not grow with the file).
Exits with status 1 and a one-line message naming the line on bad input.
"""

from __future__ import annotations

import csv
import sys
from datetime import date
from pathlib import Path

# index n of BILL_AMTn / PAY_AMTn -> (status column, year, month)
MONTHS = {
    6: ("PAY_6", 2005, 4),
    5: ("PAY_5", 2005, 5),
    4: ("PAY_4", 2005, 6),
    3: ("PAY_3", 2005, 7),
    2: ("PAY_2", 2005, 8),
    1: ("PAY_0", 2005, 9),
}
STATEMENT_DAY = 1
DUE_DAY = 15
OUTPUT_COLUMNS = (
    "customer_id", "month", "statement_date", "due_date", "paid_date",
    "months_late", "pay_status", "bill_amount", "paid_amount", "credit_limit", "amount_due",
)


def add_months(day: date, months: int) -> date:
    """``day`` moved ``months`` calendar months later (the day of month is kept; 15 always exists)."""
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, day.day)


def melt_row(row: dict[str, str]) -> list[list[str]]:
    """The six customer-month output rows (OUTPUT_COLUMNS order) of one source row; ValueError on bad PAY_n."""
    out = []
    for n in sorted(MONTHS, reverse=True):  # Apr .. Sep
        status_col, year, month = MONTHS[n]
        try:
            status = int(row[status_col])
        except ValueError:
            raise ValueError(f"column {status_col}: {row[status_col]!r}: expected a whole number") from None
        late = max(status, 0)
        due = date(year, month, DUE_DAY)
        out.append([
            row["ID"],
            f"{year:04d}-{month:02d}",
            date(year, month, STATEMENT_DAY).isoformat(),
            due.isoformat(),
            add_months(due, late).isoformat(),
            str(late),
            str(status),
            row[f"BILL_AMT{n}"],
            row[f"PAY_AMT{n}"],
            row["LIMIT_BAL"],
            _amount_due(row[f"BILL_AMT{n}"], f"BILL_AMT{n}"),
        ])
    return out


def _amount_due(balance: str, column: str) -> str:
    """``balance`` when it is not negative, else "0" (a credit balance asks for no payment); ValueError on text."""
    try:
        return "0" if float(balance) < 0 else balance
    except ValueError:
        raise ValueError(f"column {column}: {balance!r}: expected a number") from None


def convert(source: Path, target: Path) -> int:
    """Write the melted file; return the number of rows written.  ValueError names the bad line."""
    needed = ["ID", "LIMIT_BAL"] + [MONTHS[n][0] for n in MONTHS]
    needed += [f"BILL_AMT{n}" for n in MONTHS] + [f"PAY_AMT{n}" for n in MONTHS]
    written = 0
    with open(source, encoding="utf-8-sig", newline="") as fin, open(target, "w", encoding="utf-8", newline="") as fout:
        reader = csv.DictReader(fin)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{source}: missing column(s) {', '.join(missing)}")
        writer = csv.writer(fout, lineterminator="\n")
        writer.writerow(OUTPUT_COLUMNS)
        for row in reader:
            try:
                rows = melt_row(row)
            except ValueError as exc:
                raise ValueError(f"{source} line {reader.line_num}: {exc}") from None
            writer.writerows(rows)
            written += len(rows)
    return written


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: convert_uci_credit_card.py UCI_Credit_Card.csv [OUTPUT.csv]", file=sys.stderr)
        return 2
    source = Path(argv[0])
    target = Path(argv[1]) if len(argv) == 2 else Path("uci_credit_card_months.csv")
    try:
        n = convert(source, target)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{target}: {n:,} customer-month rows written from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
