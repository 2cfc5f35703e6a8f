"""Mapping files: validation (one-line errors), row conversion rules, shipped mappings, UCI melt."""

from __future__ import annotations

import csv
import importlib.util
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from payer_scoring.mapping import PAYMENT_COLUMNS, MappingError, export_layout, load_mapping, parse_mapping

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "examples" / "mappings"
MINIMAL = {
    "company_id": {"constant": "acme"},
    "customer_id": "cust",
    "payment_number": "num",
    "issue_date_dte": "issued",
    "payment_status": {"constant": "paid"},
    "billing_amount": "amount",
}


def layout_of(extra: dict | None = None, **top):
    return parse_mapping({"columns": {**MINIMAL, **(extra or {})}, **top}, "m.yaml")


def convert(layout, header: list[str], record: list[str]) -> tuple[dict, list[tuple[str, str, str]]]:
    values, problems = layout.bind(header).convert(record)
    return dict(zip(PAYMENT_COLUMNS, values)), [(p.column, p.value, p.expected) for p in problems]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"columns": MINIMAL, "colums": {}}, "m.yaml: unknown key 'colums' (allowed: version, description, base_date, columns)"),
        ({"columns": {**MINIMAL, "due_date_dte": {"column": "d", "fromat": "%d"}}},
         "m.yaml: columns.due_date_dte: unknown key 'fromat' (allowed: column, template, constant, if_present, then, else, values, default, format, relative_days, add_days)"),
        ({"columns": {**MINIMAL, "due_date": "d"}}, "m.yaml: columns.due_date: not a payments export column"),
        ({"columns": {k: v for k, v in MINIMAL.items() if k != "billing_amount"}},
         "m.yaml: columns: missing required target(s) billing_amount"),
        ({"columns": {**MINIMAL, "customer_id": {"column": "a", "constant": "b"}}},
         "m.yaml: columns.customer_id: needs exactly one of column, template, constant, if_present (found column, constant)"),
        ({"columns": {**MINIMAL, "due_date_dte": {"column": "d", "relative_days": True}}},
         "m.yaml: columns.due_date_dte: 'relative_days' needs a top-level base_date"),
        ({"columns": {**MINIMAL, "issue_date_dte": {"constant": "2025-02-30"}}},
         "m.yaml: columns.issue_date_dte: constant '2025-02-30' is not a valid date YYYY-MM-DD"),
        ({"columns": {**MINIMAL, "by_mail": {"column": "p", "values": {True: "true"}}}},
         "m.yaml: columns.by_mail: 'values' keys must be quoted text (YAML reads Yes/No/1 unquoted as other types)"),
        ({"columns": {**MINIMAL, "customer_id": {"column": "c", "format": "%d"}}},
         "m.yaml: columns.customer_id: 'format' applies only to date and timestamp targets"),
        ({"columns": {**MINIMAL, "payment_status": {"then": "paid"}}},
         "m.yaml: columns.payment_status: needs exactly one of column, template, constant, if_present (found none)"),
        ({"columns": {**MINIMAL, "payment_number": {"template": "{a!r}"}}},
         "m.yaml: columns.payment_number: template '{a!r}': fields must be plain {column_name}"),
        ({"columns": MINIMAL, "version": 2}, "m.yaml: version 2: only version 1 exists"),
        (["columns"], "m.yaml: expected a mapping with a 'columns' key at the top"),
    ],
)
def test_invalid_mapping_gives_a_one_line_error(doc, message):
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, "m.yaml")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_and_missing_file_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns:\n  a: [1,\n")
    with pytest.raises(MappingError, match=r"^.*bad\.yaml: not valid YAML at line \d+: .*$"):
        load_mapping(bad)
    with pytest.raises(MappingError, match="mapping file not found"):
        load_mapping(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- conversion rules


def test_minimal_mapping_defaults_installment_and_paid_amount_and_nulls_the_rest():
    row, problems = convert(layout_of(), ["cust", "num", "issued", "amount"], ["c1", "0042", "2025-01-10", "10.50"])
    assert problems == []
    assert row["company_id"] == "acme" and row["payment_number"] == "0042"  # leading zeros kept
    assert row["installment"] == "1/1" and row["paid_amount"] == Decimal(0)
    assert row["billing_amount"] == Decimal("10.50") and row["issue_date_dte"] == date(2025, 1, 10)
    assert row["due_date_dte"] is None and row["manual"] is None


def test_template_if_present_values_default_format_and_relative_days():
    layout = layout_of(
        {
            "payment_number": {"template": "{prev}-{k}-{day}"},
            "installment": {"template": "{k}/{n}"},
            "payment_status": {"if_present": "day", "then": "paid", "else": "pending"},
            "by_mail": {"column": "paper", "values": {"Electronic": "true", "Paper": "false"}},
            "paid_amount": {"column": "paid", "default": "0"},
            "issue_date_dte": {"column": "due", "relative_days": True, "add_days": -30},
            "due_date_dte": {"column": "due", "relative_days": True},
            "paid_at_dte": {"column": "day", "relative_days": True},
            "paid_at_tsmp": {"column": "stamp", "format": "%d/%m/%Y %H:%M"},
        },
        base_date="2018-01-01",
    )
    header = ["cust", "prev", "k", "n", "day", "paper", "paid", "due", "stamp", "amount"]
    row, problems = convert(layout, header, ["c", "77", "2", "6", "-80", "Electronic", "", "-65", "02/03/2017 14:30", "9"])
    assert problems == []
    assert row["payment_number"] == "77-2--80" and row["installment"] == "2/6"
    assert row["payment_status"] == "paid" and row["by_mail"] is True and row["paid_amount"] == Decimal(0)
    assert row["due_date_dte"] == date(2017, 10, 28) and row["issue_date_dte"] == date(2017, 9, 28)
    assert row["paid_at_dte"] == date(2017, 10, 13) and row["paid_at_tsmp"] == datetime(2017, 3, 2, 14, 30)

    row, problems = convert(layout, header, ["c", "77", "2", "6", "", "Paperless", "", "x", "2017-03-02", "9"])
    assert row["payment_status"] == "pending"
    assert problems == [  # in target-column order: issue, due, paid_at_tsmp, by_mail
        ("due", "x", "whole number of days"),
        ("due", "x", "whole number of days"),
        ("stamp", "2017-03-02", "timestamp %d/%m/%Y %H:%M"),
        ("paper", "Paperless", "one of: Electronic, Paper"),
    ]


def test_missing_key_and_required_values_are_named_by_source_column():
    layout = layout_of({"installment": "inst"})
    row, problems = convert(layout, ["cust", "num", "issued", "amount", "inst"], ["", " ", "2025-01-10", "", ""])
    assert problems == [
        ("cust", "", "a value (required)"),
        ("num", " ", "a value (part of the bill key)"),
        ("amount", "", "a value (required)"),
        ("inst", "", "a value (part of the bill key)"),
    ]


def test_bind_reports_every_missing_source_column():
    with pytest.raises(KeyError) as err:
        layout_of().bind(["cust", "amount"])
    assert err.value.args[0] == ["num", "issued"]
    with pytest.raises(KeyError) as err:
        export_layout().bind([c for c in PAYMENT_COLUMNS if c not in ("fees", "manual")])
    assert err.value.args[0] == ["fees", "manual"]


# ---------------------------------------------------------------- shipped mappings


SHIPPED = ["ibm_accounts_receivable", "nigeria_superlender_loans", "home_credit_installments", "uci_credit_card_taiwan"]


def test_every_shipped_mapping_is_valid_and_documents_the_format():
    assert sorted(p.stem for p in MAPPINGS.glob("*.yaml")) == sorted(SHIPPED)
    for name in SHIPPED:
        path = MAPPINGS / f"{name}.yaml"
        text = path.read_text()
        assert text.startswith("# Mapping:"), path
        assert "# Mapping format (version 1" in text, path
        layout = load_mapping(path)
        assert layout.path == path
        assert yaml.safe_load(text)["version"] == 1


def test_home_credit_mapping_documents_base_date_and_key():
    layout = load_mapping(MAPPINGS / "home_credit_installments.yaml")
    assert layout.base_date == date(2018, 1, 1)
    rule = {r.target: r for r in layout.rules}["payment_number"]
    assert rule.template == "{SK_ID_PREV}-{NUM_INSTALMENT_NUMBER}-{NUM_INSTALMENT_VERSION}-{DAYS_ENTRY_PAYMENT}"


# ---------------------------------------------------------------- UCI conversion step


def _converter():
    spec = importlib.util.spec_from_file_location("convert_uci_credit_card", REPO / "examples" / "convert_uci_credit_card.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


UCI_HEADER = (
    "ID,LIMIT_BAL,SEX,EDUCATION,MARRIAGE,AGE,PAY_0,PAY_2,PAY_3,PAY_4,PAY_5,PAY_6,"
    "BILL_AMT1,BILL_AMT2,BILL_AMT3,BILL_AMT4,BILL_AMT5,BILL_AMT6,"
    "PAY_AMT1,PAY_AMT2,PAY_AMT3,PAY_AMT4,PAY_AMT5,PAY_AMT6,default.payment.next.month"
)


def test_uci_melt_gives_six_dated_customer_months(tmp_path):
    source = tmp_path / "uci.csv"
    # The first two rows of the real file.
    source.write_text(
        UCI_HEADER + "\n"
        "1,20000,2,2,1,24,2,2,-1,-1,-2,-2,3913,3102,689,0,0,0,0,689,0,0,0,0,1\n"
        "2,120000,2,2,2,26,-1,2,0,0,0,2,2682,1725,2682,3272,3455,3261,0,1000,1000,1000,0,2000,1\n"
    )
    target = tmp_path / "months.csv"
    assert _converter().convert(source, target) == 12
    with open(target, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["customer_id", "month", "statement_date", "due_date", "paid_date",
                       "months_late", "pay_status", "bill_amount", "paid_amount", "credit_limit", "amount_due"]
    # index 6 = Apr .. index 1 = Sep; PAY_n = k >= 1 -> paid k months after the 15th.
    assert rows[1:] == [
        ["1", "2005-04", "2005-04-01", "2005-04-15", "2005-04-15", "0", "-2", "0", "0", "20000", "0"],
        ["1", "2005-05", "2005-05-01", "2005-05-15", "2005-05-15", "0", "-2", "0", "0", "20000", "0"],
        ["1", "2005-06", "2005-06-01", "2005-06-15", "2005-06-15", "0", "-1", "0", "0", "20000", "0"],
        ["1", "2005-07", "2005-07-01", "2005-07-15", "2005-07-15", "0", "-1", "689", "0", "20000", "689"],
        ["1", "2005-08", "2005-08-01", "2005-08-15", "2005-10-15", "2", "2", "3102", "689", "20000", "3102"],
        ["1", "2005-09", "2005-09-01", "2005-09-15", "2005-11-15", "2", "2", "3913", "0", "20000", "3913"],
        ["2", "2005-04", "2005-04-01", "2005-04-15", "2005-06-15", "2", "2", "3261", "2000", "120000", "3261"],
        ["2", "2005-05", "2005-05-01", "2005-05-15", "2005-05-15", "0", "0", "3455", "0", "120000", "3455"],
        ["2", "2005-06", "2005-06-01", "2005-06-15", "2005-06-15", "0", "0", "3272", "1000", "120000", "3272"],
        ["2", "2005-07", "2005-07-01", "2005-07-15", "2005-07-15", "0", "0", "2682", "1000", "120000", "2682"],
        ["2", "2005-08", "2005-08-01", "2005-08-15", "2005-10-15", "2", "2", "1725", "1000", "120000", "1725"],
        ["2", "2005-09", "2005-09-01", "2005-09-15", "2005-09-15", "0", "-1", "2682", "0", "120000", "2682"],
    ]


def test_uci_melt_bills_nothing_for_a_credit_balance(tmp_path):
    source = tmp_path / "uci.csv"
    # ID 4 of the real file has no negative cell; a credit balance of -200 in Sep, -6 in Apr.
    source.write_text(UCI_HEADER + "\n" + "9,50000,1,2,1,37,-1,-1,-1,-1,-1,-1,-200,0,10,20,30,-6,0,10,20,30,0,0,0\n")
    target = tmp_path / "months.csv"
    _converter().convert(source, target)
    with open(target, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["month"], r["bill_amount"], r["amount_due"]) for r in rows] == [
        ("2005-04", "-6", "0"), ("2005-05", "30", "30"), ("2005-06", "20", "20"),
        ("2005-07", "10", "10"), ("2005-08", "0", "0"), ("2005-09", "-200", "0"),
    ]


def test_uci_melt_names_the_bad_line(tmp_path):
    source = tmp_path / "uci.csv"
    source.write_text(UCI_HEADER + "\n" + "1,20000,2,2,1,24,late,2,-1,-1,-2,-2,1,1,1,1,1,1,0,0,0,0,0,0,1\n")
    with pytest.raises(ValueError, match=r"uci\.csv line 2: column PAY_0: 'late': expected a whole number"):
        _converter().convert(source, tmp_path / "out.csv")


def test_uci_melt_month_arithmetic_crosses_the_year():
    assert _converter().add_months(date(2005, 9, 15), 8) == date(2006, 5, 15)
