"""The HTTP service against a real PostgreSQL: generated data, a trained champion, a real daily run.

The module generates 2,000 customers over 24 months (as tests/integration/
test_daily_scoring.py does), trains the champion as of 2026-06-01 and runs the
score-customers flow as of 2026-06-15.  The service is driven through
FastAPI's TestClient (httpx) and connects as the read-only role api_reader.
Expected values come from the results tables, from independent SQL, or from
the daily batch's own functions run on the same data (parity).
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from payer_scoring.features import extract_features
from payer_scoring.generator import GeneratorConfig, generate_to_database
from payer_scoring.rules import load_rules
from payer_scoring.settings import Settings, get_settings

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 15)
KEY = "test-key-7f3a"
HEADERS = {"X-API-Key": KEY}
PAYMENT_JSON = Path(__file__).resolve().parents[3] / "shared" / "data" / "examples" / "payment.json"
LABELS = {"new": "Novos Pagadores", "good": "Bons Pagadores", "doubtful": "Pagadores Duvidosos",
          "forgetful": "Pagadores Esquecidos", "bad": "Maus Pagadores"}


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _customer_url(company_id: str, customer_id: str) -> str:
    return f"/v1/companies/{_quote(company_id)}/customers/{_quote(customer_id)}"


@pytest.fixture(scope="module")
def scored_db(engine, prefect_harness):
    """Fresh generated data, a champion and one daily run as of AS_OF; returns the owner's engine."""
    from flows.daily_scoring import score_customers
    from models.training import train

    with engine.begin() as conn:
        tables = conn.execute(
            sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        ).scalars().all()
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    generate_to_database(engine, GeneratorConfig(customers=2_000, seed=3, start=date(2024, 11, 1), months=24))
    assert train(engine, date(2026, 6, 1), settings=get_settings()).entry.status == "champion"
    assert score_customers(as_of=AS_OF, return_state=True).is_completed()
    return engine


@pytest.fixture(scope="module")
def settings(scored_db) -> Settings:
    return Settings(api_keys_sha256=hashlib.sha256(KEY.encode()).hexdigest(), api_champion_check_seconds=0)


@pytest.fixture(scope="module")
def client(settings):
    from entrypoints.api import api_engine, create_app

    engine = api_engine(settings)
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as test_client:
        yield test_client
    engine.dispose()


def _current_rows(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text("SELECT * FROM customer_categories ORDER BY company_id, customer_id"), conn)


# ---------------------------------------------------------------- probes and auth
def test_health_and_ready_name_the_read_only_role_and_the_champion(client, scored_db):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    with scored_db.connect() as conn:
        champion = conn.execute(sa.text("SELECT version FROM model_registry WHERE status = 'champion'")).scalar_one()
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "role": "api_reader", "champion": champion}


def test_no_key_is_401_and_a_wrong_key_is_403_with_json_errors(client, scored_db):
    row = _current_rows(scored_db).iloc[0]
    url = _customer_url(row.company_id, row.customer_id)
    missing = client.get(url)
    wrong = client.get(url, headers={"X-API-Key": KEY + "x"})
    assert (missing.status_code, missing.json()) == (401, {"error": "missing X-API-Key header"})
    assert (wrong.status_code, wrong.json()) == (403, {"error": "X-API-Key is not valid"})
    assert client.post("/v1/customer/predict", content=PAYMENT_JSON.read_bytes()).status_code == 401


def test_service_refuses_to_start_without_keys_or_as_a_writing_role(scored_db, settings):
    from entrypoints.api import create_app

    with pytest.raises(RuntimeError, match="no API key configured"):
        create_app(Settings(api_keys_sha256=""))
    with pytest.raises(RuntimeError, match="can write payments or customer_categories"):
        create_app(settings, engine=scored_db)  # the owner's engine


# ---------------------------------------------------------------- current category
def test_current_category_is_the_billing_row(client, scored_db):
    rows = _current_rows(scored_db)
    for _, row in rows.sample(20, random_state=1).iterrows():
        got = client.get(_customer_url(row.company_id, row.customer_id), headers=HEADERS)
        assert got.status_code == 200
        body = got.json()
        assert body["category"] == row.category and body["category_label"] == LABELS[row.category]
        assert [body[f"p_{c}"] for c in ("good", "doubtful", "forgetful", "bad")] == [row.p_good, row.p_doubtful, row.p_forgetful, row.p_bad]
        assert body["observed_category"] == row.observed_category
        assert (body["as_of_date"], body["model_version"]) == (AS_OF.isoformat(), row.model_version)
        # issue 11 merged: the service serves the published risk score and reasons
        assert body["risk_score"] == row.risk_score and body["reason_codes"] == list(row.reason_codes)


def test_unknown_customer_and_injection_shaped_ids_are_404_json(client, scored_db):
    row = _current_rows(scored_db).iloc[0]
    for company_id, customer_id in [
        (row.company_id, "00 11 22"),
        (row.company_id, "' OR '1'='1"),
        ("x'; DROP TABLE payments; --", row.customer_id),
        (row.company_id, row.customer_id + "' --"),
    ]:
        got = client.get(_customer_url(company_id, customer_id), headers=HEADERS)
        assert got.status_code == 404, (company_id, customer_id)
        assert got.json() == {"error": "no current category for this company_id and customer_id"}
    with scored_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one() > 0


def test_odd_ids_and_parameters_are_422_json(client, scored_db):
    row = _current_rows(scored_db).iloc[0]
    for url in [
        _customer_url(row.company_id, "ab\x00cd"),
        _customer_url(row.company_id, "x" * 201),
        f"/v1/companies/{_quote(row.company_id)}/customers?limit=0",
        f"/v1/companies/{_quote(row.company_id)}/customers?limit=501",
        f"/v1/companies/{_quote(row.company_id)}/customers?category=evil",
        f"/v1/companies/{_quote(row.company_id)}/customers?offset=-1",
        _customer_url(row.company_id, row.customer_id) + "/score?as_of=2026-02-30",
    ]:
        got = client.get(url, headers=HEADERS)
        assert got.status_code == 422, url
        assert got.json()["error"].startswith(("path field", "query field")), got.json()


def test_company_list_is_riskiest_first_filtered_and_paginated(client, scored_db):
    rows = _current_rows(scored_db)
    company = rows.company_id.value_counts().index[0]
    mine = rows[rows.company_id == company]
    for category in (None, "good", "bad"):
        subset = mine if category is None else mine[mine.category == category]
        expected = subset.sort_values(["risk_score", "p_bad", "customer_id"], ascending=[False, False, True], na_position="last").customer_id.tolist()
        got, offset = [], 0
        while True:
            query = f"limit=7&offset={offset}" + (f"&category={category}" if category else "")
            page = client.get(f"/v1/companies/{_quote(company)}/customers?{query}", headers=HEADERS).json()
            assert page["total"] == len(subset) and page["limit"] == 7
            got += [item["customer_id"] for item in page["items"]]
            assert all(category in (None, item["category"]) for item in page["items"])
            if len(page["items"]) < 7:
                break
            offset += 7
        assert got == expected
    unknown = client.get(f"/v1/companies/{_quote('ff ff')}/customers", headers=HEADERS).json()
    assert (unknown["total"], unknown["items"]) == (0, [])


# ---------------------------------------------------------------- parity with the daily batch
def test_parity_on_demand_features_and_category_equal_the_daily_batch(client, scored_db):
    """200 sampled customers: on-demand features and category at AS_OF equal the batch's exactly."""
    from models.predict import predict_categories
    from models.registry import load_champion

    settings = get_settings()
    rules = load_rules(settings.rules_file)
    batch = extract_features(scored_db, AS_OF, rules, horizon_days=settings.horizon_days)
    scores = predict_categories(load_champion(scored_db, store=settings.model_store), batch, rules)
    written = _current_rows(scored_db).set_index(["company_id", "customer_id"])
    batch = batch.set_index(["company_id", "customer_id"])
    scores = scores.set_index(["company_id", "customer_id"])
    sample = random.Random(13).sample(list(batch.index), 200)
    for company_id, customer_id in sample:
        got = client.get(_customer_url(company_id, customer_id) + f"/score?as_of={AS_OF}&include_features=true", headers=HEADERS)
        assert got.status_code == 200, got.text
        body = got.json()
        expected_features = batch.loc[(company_id, customer_id)]
        assert body["features"] == {c: float(expected_features[c]) for c in body["features"]}
        assert len(body["features"]) == 39
        expected = scores.loc[(company_id, customer_id)]
        assert body["category"] == expected.category == written.loc[(company_id, customer_id)].category
        assert body["observed_category"] == expected.observed_category
        # Features and categories are exact.  The risk model's probabilities are
        # combined from its calibrated chain with vectorised NumPy arithmetic,
        # whose last bit depends on the batch length (SIMD rounding): one row
        # on demand vs thousands in the batch differ by ~1e-17, so they are
        # compared within 1e-12 (issue 11's model; the categories cannot differ).
        got_p = [body[f"p_{c}"] for c in ("good", "doubtful", "forgetful", "bad")]
        assert got_p == pytest.approx([expected.p_good, expected.p_doubtful, expected.p_forgetful, expected.p_bad], abs=1e-12)
        assert got_p == pytest.approx([written.loc[(company_id, customer_id), f"p_{c}"] for c in ("good", "doubtful", "forgetful", "bad")], abs=1e-12)
        assert body["risk_score"] == pytest.approx(written.loc[(company_id, customer_id)].risk_score, abs=1e-12)


def _payment_like(engine, company_id: str, customer_id: str) -> dict:
    """One of the customer's stored bills as an export-layout JSON body (the 39 columns)."""
    columns = list(json.loads(PAYMENT_JSON.read_text()))
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {', '.join(columns)} FROM payments WHERE company_id = :c AND customer_id = :u "
                    "ORDER BY issue_date_dte DESC, payment_number LIMIT 1"),
            {"c": company_id, "u": customer_id},
        ).mappings().one()
    out = {}
    for name in columns:
        value = row[name]
        if name == "discount_before_payment_due_date":
            value = 0 if value is None else int(pd.Timestamp(value).timestamp())
        elif hasattr(value, "isoformat"):
            value = value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
        elif value is not None and not isinstance(value, (str, bool, int, float)):
            value = float(value)
        out[name] = value
    return out


def _batch_with(engine, payment: dict, as_of: date) -> pd.Series:
    """The batch (features + champion) for the payment's customer on a copy of the data holding the payment.

    The copy: the payment upserted into `payments` inside a transaction that is
    rolled back; the batch query reads that transaction's snapshot.
    """
    from models.predict import predict_categories
    from models.registry import load_champion

    settings = get_settings()
    rules = load_rules(settings.rules_file)
    columns = list(payment)
    with engine.connect() as conn:
        trans = conn.begin()
        conn.execute(
            sa.text("DELETE FROM payments WHERE company_id = :company_id AND payment_number = :payment_number AND installment = :installment"),
            payment,
        )
        values = {**payment, "discount_before_payment_due_date": None}
        conn.execute(sa.text(f"INSERT INTO payments ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"), values)

        class _Bound:  # extract_features takes an engine: hand it this transaction's connection
            def connect(self):
                import contextlib

                return contextlib.nullcontext(conn)

        features = extract_features(_Bound(), as_of, rules, horizon_days=settings.horizon_days)
        trans.rollback()
    scores = predict_categories(load_champion(engine, store=settings.model_store), features, rules)
    key = (features.company_id == payment["company_id"]) & (features.customer_id == payment["customer_id"])
    return pd.concat([features[key].iloc[0].drop(["company_id", "customer_id", "observed_category", "n_matured"]), scores[key].iloc[0]])


def test_parity_predict_with_one_extra_payment_equals_the_batch_on_a_copy_holding_it(client, scored_db):
    rows = _current_rows(scored_db)
    as_of = date(2026, 7, 1)
    sample = rows.sample(12, random_state=7)
    cases = []
    for i, (_, row) in enumerate(sample.iterrows()):
        payment = _payment_like(scored_db, row.company_id, row.customer_id)
        if i % 3 == 0:  # the same bill again, now paid late: replaces the stored one (upsert)
            payment.update(payment_status="paid", paid_at_dte="2026-06-28", paid_at_tsmp="2026-06-28 10:00:00")
        else:  # a new bill issued on the as-of date, unpaid
            payment.update(payment_number=f"ff ee {i:02x}", issue_date_dte="2026-06-20", due_date_dte="2026-06-25",
                           original_due_date_dte="2026-06-25", paid_at_dte=None, paid_at_tsmp=None, paid_at=None,
                           payment_status="pending", billing_amount=123.45, installment="1/1")
        cases.append(payment)
    unknown = dict(cases[1], customer_id="aa bb cc dd", payment_number="aa bb 01")  # unknown customer: this bill alone
    cases.append(unknown)
    for payment in cases:
        got = client.post(f"/v1/customer/predict?as_of={as_of}&include_features=true", json=payment, headers=HEADERS)
        assert got.status_code == 200, got.text
        body = got.json()
        expected = _batch_with(scored_db, payment, as_of)
        assert body["features"] == {c: float(expected[c]) for c in body["features"]}
        assert body["category"] == expected["category"] and body["observed_category"] == expected["observed_category"]
        assert [body[f"p_{c}"] for c in ("good", "doubtful", "forgetful", "bad")] == pytest.approx(
            [float(expected[f"p_{c}"]) for c in ("good", "doubtful", "forgetful", "bad")], abs=1e-12
        )  # last-bit noise of vectorised arithmetic, see the test above
    assert client.post(f"/v1/customer/predict?as_of={as_of}&include_features=true", json=unknown, headers=HEADERS).json()["features"]["n_bills"] == 1.0
    with scored_db.connect() as conn:  # nothing was written
        assert conn.execute(sa.text("SELECT count(*) FROM payments WHERE customer_id = 'aa bb cc dd'")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(DISTINCT as_of_date) FROM customer_category_history")).scalar_one() == 1


# ---------------------------------------------------------------- predict: the example body and bad input
def test_predict_with_the_example_payment_scores_an_unknown_customer_on_it_alone(client, scored_db):
    body = json.loads(PAYMENT_JSON.read_text())
    got = client.post("/v1/customer/predict", content=PAYMENT_JSON.read_bytes(), headers={**HEADERS, "Content-Type": "application/json"})
    assert got.status_code == 200, got.text
    answer = got.json()
    # one bill, due 2025-01-10 and paid early: as of its latest date nothing has matured -> 'new'
    assert answer["as_of_date"] == "2025-01-10" and answer["category"] == "new" and answer["n_matured"] == 0
    assert answer["observed_category"] == "new" and answer["category_label"] == "Novos Pagadores"
    assert abs(sum(answer[f"p_{c}"] for c in ("good", "doubtful", "forgetful", "bad")) - 1) < 1e-9
    assert (answer["company_id"], answer["customer_id"]) == (body["company_id"], body["customer_id"])


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"paid_amount": "ninety"}, "paid_amount", "valid number"),
        ({"issue_date_dte": "2024-13-01"}, "issue_date_dte", "date"),
        ({"installment": "one of three"}, "installment", "pattern"),
        ({"by_mail": "maybe"}, "by_mail", "boolean"),
        ({"billing_amount": -5}, "billing_amount", "greater than or equal to 0"),
        ({"unexpected": 1}, "unexpected", "Extra inputs"),
        ({"customer_id": None}, "customer_id", "valid string"),
    ],
)
def test_predict_bad_field_is_422_naming_the_field_and_what_was_expected(client, change, field, words):
    body = {**json.loads(PAYMENT_JSON.read_text()), **change}
    got = client.post("/v1/customer/predict", json=body, headers=HEADERS)
    assert got.status_code == 422
    error = got.json()
    assert error["error"].startswith(f"body field {field}: ") and words in error["error"], error
    assert error["errors"][0]["field"] == field


def test_predict_missing_field_malformed_json_oversized_body_and_future_as_of(client, settings):
    body = json.loads(PAYMENT_JSON.read_text())
    del body["fees"]
    missing = client.post("/v1/customer/predict", json=body, headers=HEADERS)
    assert missing.status_code == 422 and missing.json()["error"] == "body field fees: Field required"
    malformed = client.post("/v1/customer/predict", content=b'{"company_id": ', headers={**HEADERS, "Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"] == "request body is not valid JSON"
    huge = client.post("/v1/customer/predict", content=b" " * (settings.api_max_body_bytes + 1), headers={**HEADERS, "Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json() == {"error": f"request body above {settings.api_max_body_bytes} bytes"}

    def chunks():
        for _ in range(settings.api_max_body_bytes // 1000 + 2):
            yield b" " * 1000

    streamed = client.post("/v1/customer/predict", content=chunks(), headers={**HEADERS, "Content-Type": "application/json"})
    assert streamed.status_code == 413
    future = client.post("/v1/customer/predict?as_of=2999-01-01", json=json.loads(PAYMENT_JSON.read_text()), headers=HEADERS)
    assert future.status_code == 422 and "in the future" in future.json()["error"]
    form = client.post("/v1/customer/predict", content=PAYMENT_JSON.read_bytes(), headers=HEADERS)  # no JSON content type
    assert form.status_code == 422 and form.json()["error"].startswith("request body: expected a JSON object")
    not_object = client.post("/v1/customer/predict", json=[1, 2], headers=HEADERS)
    assert not_object.status_code == 422 and "Content-Type: application/json" in not_object.json()["error"]


# ---------------------------------------------------------------- the read-only role
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO payments (company_id, customer_id, payment_number, issue_date_dte, payment_status, billing_amount) "
        "VALUES ('a', 'b', 'c', '2026-01-01', 'paid', 1)",
        "UPDATE customer_categories SET category = 'good'",
        "DELETE FROM model_registry",
        "CREATE TEMP TABLE t (x int)",
        "CREATE TABLE t (x int)",
    ],
)
def test_the_api_role_can_write_nothing_even_outside_read_only_mode(settings, scored_db, statement):
    from entrypoints.api import api_engine

    engine = api_engine(settings).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "api_reader"
            with pytest.raises(sa.exc.DBAPIError) as info:  # the role's sessions start read-only
                conn.exec_driver_sql(statement)
            assert info.value.orig.sqlstate == "25006", info.value  # read_only_sql_transaction
            conn.exec_driver_sql("SET default_transaction_read_only = off")  # a role can lift its own default ...
            with pytest.raises(sa.exc.DBAPIError) as info:
                conn.exec_driver_sql(statement)
            assert info.value.orig.sqlstate == "42501", info.value  # ... but has no privilege to write anyway
    finally:
        engine.dispose()


# ---------------------------------------------------------------- champion reload
def test_a_promoted_champion_is_served_without_a_restart(client, scored_db):
    from models import registry

    store = get_settings().model_store
    old = registry.load_champion(scored_db, store=store)
    entry = registry.register_model(
        scored_db, old.model, {**old.metadata, "metrics": old.metrics}, store=store, version=old.version + "-reloaded",
    )
    assert client.get("/ready").json()["champion"] == old.version
    registry.promote(scored_db, entry.version)
    assert client.get("/ready").json()["champion"] == entry.version  # check interval 0 s in this module
    row = _current_rows(scored_db).iloc[0]
    got = client.get(_customer_url(row.company_id, row.customer_id) + f"/score?as_of={AS_OF}", headers=HEADERS)
    assert got.json()["model_version"] == entry.version
