"""The synthetic data generator without a database: layout, ids, determinism, snapshot rules, truth, drift."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from payer_scoring import generator as gen
from tests.conftest import SHARED_DATA

START, MONTHS = date(2023, 1, 1), 24
END = date(2025, 1, 1)
HEX32 = re.compile(r"^(?:[0-9a-f]{2} ){31}[0-9a-f]{2}$")


def _frames(customers=2_000, seed=11, drift_at=None, chunk=gen.DEFAULT_CHUNK_CUSTOMERS):
    config = gen.GeneratorConfig(customers=customers, seed=seed, start=START, months=MONTHS, drift_at=drift_at, chunk_customers=chunk)
    export = gen.build_export(config)
    chunks = list(export.chunks())
    return export, pd.concat([c.payments for c in chunks], ignore_index=True), pd.concat([c.truth for c in chunks], ignore_index=True)


@pytest.fixture(scope="module")
def generated():
    return _frames()


def _digest(*frames: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(frame.to_csv(index=False).encode())
    return h.hexdigest()


def test_same_seed_gives_the_same_data_and_another_seed_does_not(generated):
    export, payments, truth = generated
    _, payments2, truth2 = _frames()
    assert _digest(export.companies, payments, truth) == _digest(gen.build_export(export.config).companies, payments2, truth2)
    _, payments3, _ = _frames(seed=12)
    assert _digest(payments) != _digest(payments3)


def test_chunking_streams_customers_in_order():
    _, payments, truth = _frames(customers=300, chunk=100)
    assert payments["customer_id"].nunique() == 300
    assert truth.groupby("customer_id").size().min() >= 1


def test_payments_have_the_39_export_columns_in_payment_json_order(generated):
    _, payments, _ = generated
    example = json.loads((SHARED_DATA / "examples" / "payment.json").read_text())
    assert list(payments.columns) == list(example) == list(gen.PAYMENT_COLUMNS)


def test_ids_are_sha256_digests_as_32_spaced_hex_bytes(generated):
    export, payments, _ = generated
    for column in ("company_id", "company_name", "customer_id", "payment_number", "billing_number", "description", "os_code"):
        assert payments[column].str.match(HEX32).all(), column
    assert payments["payment_number"].is_unique
    expected = hashlib.sha256(f"ps{export.config.seed}:customer:0".encode()).digest().hex(" ")
    assert expected in set(payments["customer_id"])
    assert payments["parent_id"].str.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$").all()
    assert payments.groupby(["company_id", "payment_number", "installment"]).size().max() == 1  # the bill key


def test_one_company_per_250_customers_each_with_customers(generated):
    export, payments, _ = generated
    assert len(export.companies) == 8
    assert set(payments["company_id"]) == set(export.companies["company_id"])
    assert "payments_issued_m-1" in export.companies.columns and len(export.companies.columns) == 29


def test_statuses_describe_a_snapshot_at_the_end_date(generated):
    export, p, _ = generated
    assert export.end == END
    issue, due = pd.to_datetime(p["issue_date_dte"]), pd.to_datetime(p["due_date_dte"])
    paid_at = pd.to_datetime(p["paid_at_dte"].replace("", None))
    end = pd.Timestamp(END)
    status = p["payment_status"]
    paid = status.isin(["paid", "paid_after_protested", "paid_after_derrogatory", "payment_captured"])
    assert (paid_at.notna() == paid).all()
    assert (paid_at[paid] < end).all() and (paid_at[paid] >= issue[paid]).all()
    assert (p.loc[paid, "paid_amount"] > 0).all() and (p.loc[~paid, "paid_amount"] == 0).all()
    assert (p["paid_at_tsmp"].str[:10] == p["paid_at_dte"]).all() and (p["paid_at"] == p["paid_at_tsmp"]).all()
    past_due = status.isin(["overdue", "processing_protest", "processing_derrogatory", "derrogatory", "protested", "pending_derrogatory"])
    assert (due[past_due] < end).all()
    assert (due[status == "pending"] >= end).all()
    assert set(status.unique()) <= set(gen.RARE_CANCELLED) | set(gen.RARE_PAST_DUE) | set(gen.RARE_PAID_LATE) | {
        "paid", "pending", "cancelled", "overdue", "payment_captured"}
    assert (issue >= pd.Timestamp(START)).all() and (issue < end).all()
    assert (due >= issue).all()
    renegotiated = (p["original_due_date_dte"] != p["due_date_dte"]).mean()
    assert 0.01 < renegotiated < 0.06
    assert p["due_date_tsmp"].str.endswith(("23:59:59.000", ".000")).all()


def test_installments_are_k_of_n_and_a_plan_shares_issue_date_and_amount(generated):
    _, p, _ = generated
    k = p["installment"].str.split("/").str[0].astype(int)
    n = p["installment"].str.split("/").str[1].astype(int)
    assert ((k >= 1) & (k <= n)).all() and (n > 1).mean() > 0.3
    plans = p.groupby("billing_number").agg(issue=("issue_date_dte", "nunique"), amount=("billing_amount", "nunique"), bills=("installment", "size"), n=("installment", lambda s: int(s.iloc[0].split("/")[1])))
    assert (plans["issue"] == 1).all() and (plans["amount"] == 1).all() and (plans["bills"] == plans["n"]).all()
    assert p["payment_method"].nunique() == 7


def test_truth_segments_tile_each_customers_history_and_drop_out_is_for_good(generated):
    _, payments, truth = generated
    assert set(truth["customer_id"]) == set(payments["customer_id"])
    assert (truth.groupby("customer_id")["cause"].first() == "initial").all()
    assert (truth["cause"] == "initial").sum() == truth["customer_id"].nunique()
    nxt = truth.groupby("customer_id")["valid_from"].shift(-1).fillna("")
    assert (truth["valid_to"] == nxt).all()
    assert (truth.loc[truth["valid_to"] != "", "valid_from"] < truth.loc[truth["valid_to"] != "", "valid_to"]).all()
    after_drop = truth.groupby("customer_id")["behaviour"].transform(lambda s: (s == "drop_out").cummax().shift(fill_value=False))
    assert not after_drop.any()
    first = truth.groupby("customer_id")["valid_from"].min()
    assert (first == payments.groupby("customer_id")["issue_date_dte"].min()).all()
    switched = truth.groupby("customer_id").size().gt(1).mean()
    assert 0.05 < switched < 0.4  # mostly persistent, sometimes not


def _late_by_behaviour(payments: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Late share (paid late or unpaid past due) of matured bills, by the truth behaviour at the due date."""
    bills = payments[payments["payment_status"] != "cancelled"].copy()
    bills = bills[pd.to_datetime(bills["due_date_dte"]) < pd.Timestamp(END)]
    bills["due"] = pd.to_datetime(bills["due_date_dte"])
    seg = truth.assign(valid_from=pd.to_datetime(truth["valid_from"])).sort_values("valid_from")
    bills = pd.merge_asof(bills.sort_values("due"), seg[["customer_id", "valid_from", "behaviour"]], left_on="due", right_on="valid_from", by="customer_id")
    late = (bills["paid_at_dte"] == "") | (pd.to_datetime(bills["paid_at_dte"].replace("", None)) > bills["due"])
    return late.groupby(bills["behaviour"]).mean()


def test_hidden_behaviour_drives_lateness(generated):
    _, payments, truth = generated
    late = _late_by_behaviour(payments, truth)
    assert late["punctual"] < 0.15 < late["doubtful"] < late["forgetful"] < late["bad"]
    assert late["drop_out"] > 0.9


def test_drift_raises_lateness_and_the_pix_share_from_the_drift_date():
    drift = date(2024, 7, 1)
    _, base, _ = _frames(customers=3_000, seed=5)
    _, drifted, truth = _frames(customers=3_000, seed=5, drift_at=drift)
    assert (truth["cause"] == "drift").any()
    assert (truth.loc[truth["cause"] == "drift", "valid_from"] == drift.isoformat()).all()

    def pix_share(p, after):
        sel = (p["issue_date_dte"] >= drift.isoformat()) == after
        return (p.loc[sel, "payment_method"] == "pix").mean()

    assert pix_share(drifted, after=False) == pytest.approx(pix_share(base, after=False), abs=0.01)
    assert pix_share(drifted, after=True) > pix_share(base, after=True) + 0.3

    def late_share(p):
        due = p["due_date_dte"]
        sel = (due >= drift.isoformat()) & (due < END.isoformat()) & (p["payment_status"] != "cancelled")
        q = p[sel]
        return ((q["paid_at_dte"] == "") | (q["paid_at_dte"] > q["due_date_dte"])).mean()

    assert late_share(drifted) > late_share(base) + 0.08


def test_bad_configs_are_refused_in_one_line():
    with pytest.raises(gen.GeneratorError, match="--drift-at 2030-01-01: expected a date after the start 2023-01-01"):
        gen.build_export(gen.GeneratorConfig(customers=10, start=START, months=MONTHS, drift_at=date(2030, 1, 1)))
    with pytest.raises(gen.GeneratorError, match="at least 1"):
        gen.build_export(gen.GeneratorConfig(customers=0, start=START))


def test_default_start_is_months_before_today_so_data_end_today():
    export = gen.build_export(gen.GeneratorConfig(customers=5, months=3), today=date(2025, 5, 31))
    assert (export.start, export.end) == (date(2025, 2, 28), date(2025, 5, 28))


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [(date(2024, 1, 31), 1, date(2024, 2, 29)), (date(2024, 3, 15), -3, date(2023, 12, 15)), (date(2023, 1, 1), 24, date(2025, 1, 1))],
)
def test_add_months(day, months, expected):
    assert gen.add_months(day, months) == expected


def test_csv_files_use_the_export_layouts(tmp_path):
    config = gen.GeneratorConfig(customers=300, seed=3, start=START, months=MONTHS)
    summary = gen.generate_to_csv(config, tmp_path)
    assert summary.startswith("generated 300 customers, 1 companies") and "\n" not in summary
    payments = pd.read_csv(tmp_path / "payments.csv", dtype=str, keep_default_na=False)
    _, expected, truth = _frames(customers=300, seed=3)
    assert list(payments.columns) == list(gen.PAYMENT_COLUMNS) and len(payments) == len(expected)
    assert (payments["payment_number"] == expected["payment_number"]).all()
    assert set(payments["by_mail"]) <= {"true", "false"}
    assert payments["issue_at_tsmp"].str.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.000$").all()
    epoch = payments["discount_before_payment_due_date"].astype(int)
    assert (epoch == 0).mean() > 0.9 and ((epoch == 0) == (payments["discount_before_payment"].astype(float) == 0)).all()
    companies = pd.read_csv(tmp_path / "companies.csv", dtype=str, keep_default_na=False)
    assert list(companies.columns) == list(gen.COMPANY_COLUMNS)
    assert len(pd.read_csv(tmp_path / "synthetic_truth.csv")) == len(truth)


def test_lateness_also_depends_on_company_risk_method_and_channel():
    """Signal beyond a customer's own late share: directional effects the model can learn."""
    export, p, _ = _frames(customers=10_000, seed=21)
    q = p[(p["paid_at_dte"] != "")].copy()
    q["late"] = q["paid_at_dte"] > q["due_date_dte"]
    q["delay"] = (pd.to_datetime(q["paid_at_dte"]) - pd.to_datetime(q["due_date_dte"])).dt.days
    risky = set(export.companies.loc[export.companies["is_churn_risk"] == "true", "company_id"])
    q["risk"] = q["company_id"].isin(risky)
    assert q.groupby("risk")["late"].mean().diff().iloc[-1] > 0.02
    delays = q[q["late"]].groupby("risk")["delay"].mean()
    assert delays[True] > 1.5 * delays[False]  # profile: about 8 vs 18 days
    assert q.groupby("by_whatsapp")["late"].mean()["true"] < q.groupby("by_whatsapp")["late"].mean()["false"]
    by_method = q.groupby("payment_method")["late"].mean()
    assert by_method["credit_card"] < by_method["boleto"]
    early = (q["delay"] < 0).mean()
    assert 0.3 < early < 0.7  # early payment is common
