"""The score-customers flow end to end: generated data, a trained champion, real PostgreSQL and Prefect API.

The module generates 2,000 customers over 24 months (2024-11-01 to 2026-11-01)
and trains the champion as of 2026-06-01 once; each test then runs the flow.
Expected values are computed here with independent SQL from the rules, not
from the feature query.
"""

from __future__ import annotations

import os
import subprocess
from datetime import date

import pytest
import sqlalchemy as sa

from payer_scoring.generator import GeneratorConfig, generate_to_database
from payer_scoring.rules import load_rules
from payer_scoring.settings import get_settings

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 15)
EARLIER = date(2026, 6, 1)
CONTENT = "company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad, observed_category, as_of_date, model_version, risk_score"


@pytest.fixture(scope="module")
def scored_db(engine, prefect_harness):
    """Fresh generated data and a champion; returns the engine."""
    from models.training import train

    with engine.begin() as conn:
        tables = conn.execute(
            sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        ).scalars().all()
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    generate_to_database(engine, GeneratorConfig(customers=2_000, seed=3, start=date(2024, 11, 1), months=24))
    assert train(engine, date(2026, 6, 1), settings=get_settings()).entry.status == "champion"
    return engine


def _run(as_of: date):
    """Run the flow; return (final state, flow run id)."""
    from flows.daily_scoring import score_customers

    state = score_customers(as_of=as_of, return_state=True)
    return state, str(state.state_details.flow_run_id)


def _rows(engine, table: str, columns: str = "*") -> list[tuple]:
    order = "as_of_date, company_id, customer_id" if table.endswith("history") else "company_id, customer_id"
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY {order}"))]


def _snapshot(engine):
    return _rows(engine, "customer_categories"), _rows(engine, "customer_category_history")


def _flow_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _artifacts(flow_run_id: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a.data for a in found}


def _expected(engine, as_of: date) -> dict[tuple[str, str], int]:
    """{customer: matured bills at as_of} for every customer with a bill issued by as_of (rules applied here).

    Issue 11: a customer whose every bill is excluded (cancelled, error) gets a row too, with 0 matured bills.
    """
    rules = load_rules()
    assert rules.due_date_column == "due_date_dte"
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT company_id, customer_id, "
                "       count(*) FILTER (WHERE due_date_dte + CAST(:grace AS integer) < :t "
                "                        AND NOT (payment_status = ANY(:excluded))) AS matured "
                "FROM payments "
                "WHERE issue_date_dte <= :t "
                "GROUP BY company_id, customer_id"
            ),
            {"t": as_of, "grace": rules.grace_days, "excluded": list(rules.excluded_statuses)},
        ).all()
    return {(r.company_id, r.customer_id): r.matured for r in rows}


def test_run_scores_each_customer_once_new_means_too_little_history(scored_db):
    from payer_scoring.validation import validate_frame
    import pandas as pd

    state, run_id = _run(AS_OF)
    assert state.is_completed(), state.message
    summary = state.result()
    expected = _expected(scored_db, AS_OF)
    rows = _rows(scored_db, "customer_categories", CONTENT + ", flow_run_id")
    assert len(rows) == len(expected) == summary["customers_scored"] > 100
    assert {(r[0], r[1]) for r in rows} == set(expected)
    minimum = load_rules().min_matured_bills
    assert {(r[0], r[1]) for r in rows if r[2] == "new"} == {k for k, m in expected.items() if m < minimum}
    assert {r[8] for r in rows} == {AS_OF} and {r[11] for r in rows} == {run_id}
    frame = pd.DataFrame(rows, columns=[c.strip() for c in CONTENT.split(",")] + ["flow_run_id"])
    assert validate_frame(frame, "customer_scores", {"features_row_count": len(expected)}).success
    assert frame.category.nunique() >= 3
    # Prefect: the run name carries the as-of date; the three artifacts exist.
    assert _flow_run(run_id).name == f"score-customers-{AS_OF}"
    artifacts = _artifacts(run_id)
    assert {"validation-summary", "category-distribution", "run-summary"} <= set(artifacts)
    assert "Validation passed" in artifacts["validation-summary"]
    assert f"customers scored: **{len(expected):,}**" in artifacts["run-summary"]


def test_same_as_of_twice_gives_identical_tables(scored_db):
    assert _run(AS_OF)[0].is_completed()
    first = _snapshot(scored_db)
    assert _run(AS_OF)[0].is_completed()
    assert _snapshot(scored_db) == first


def test_older_as_of_after_newer_leaves_current_and_adds_history(scored_db):
    assert _run(AS_OF)[0].is_completed()
    current, history = _snapshot(scored_db)
    state, _ = _run(EARLIER)
    assert state.is_completed(), state.message
    assert state.result()["current_rows_kept_newer"] > 0
    assert _rows(scored_db, "customer_categories") == current
    dates = {r[0] for r in _rows(scored_db, "customer_category_history", "as_of_date")}
    assert dates == {r[8] for r in history} | {EARLIER}


def _add_bills(engine, n: int, amount: float, customer: str) -> None:
    """n bills of an existing company, for a new customer, billing_amount = amount."""
    with engine.begin() as conn:
        company = conn.execute(sa.text("SELECT min(company_id) FROM payments")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO payments (company_id, customer_id, payment_number, issue_date_dte, original_due_date_dte, "
                "due_date_dte, payment_status, billing_amount, paid_amount, installment) "
                "SELECT :c, :u, :u || '-' || g, date '2026-01-01', date '2026-01-10', date '2026-01-10', "
                "'pending', :a, 0, '1/1' FROM generate_series(1, :n) g"
            ),
            {"c": company, "u": customer, "a": amount, "n": n},
        )


def _remove_bills(engine, customer: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM payments WHERE customer_id = :u"), {"u": customer})


def test_a_few_negative_bills_are_quarantined_and_left_out(scored_db):
    _add_bills(scored_db, 3, -50.0, "quarantine-me")
    try:
        state, run_id = _run(AS_OF)
        assert state.is_completed(), state.message
        with scored_db.connect() as conn:
            quarantined = conn.execute(
                sa.text("SELECT payment_number, reason, as_of_date FROM quarantined_payments WHERE flow_run_id = :r ORDER BY 1"),
                {"r": run_id},
            ).all()
            scored = conn.execute(
                sa.text("SELECT category, observed_category FROM customer_categories WHERE customer_id = 'quarantine-me'")
            ).all()
        assert [q.payment_number for q in quarantined] == ["quarantine-me-1", "quarantine-me-2", "quarantine-me-3"]
        assert all(q.reason.startswith("billing_amount_not_negative") and q.as_of_date == AS_OF for q in quarantined)
        # issue 11: every customer with a bill gets a row; with every bill left out the customer is `new`
        assert [tuple(r) for r in scored] == [("new", "new")]
        assert state.result()["quarantined_bills"] == 3
        assert "billing_amount_not_negative" in _artifacts(run_id)["validation-summary"]
    finally:
        _remove_bills(scored_db, "quarantine-me")


def test_critical_expectation_failure_writes_nothing_and_names_the_expectation(scored_db):
    from payer_scoring.validation import ValidationFailed

    assert _run(AS_OF)[0].is_completed()
    before = _snapshot(scored_db)
    with scored_db.connect() as conn:
        bills = conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one()
    _add_bills(scored_db, bills // 500 + 5, -10.0, "negative-flood")  # > 0.1 % of bills: beyond `mostly`
    try:
        state, run_id = _run(date(2026, 6, 20))
        assert state.is_failed()
        with pytest.raises(ValidationFailed, match="billing_amount_not_negative"):
            state.result()
        assert _snapshot(scored_db) == before
        with scored_db.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM quarantined_payments WHERE flow_run_id = :r"), {"r": run_id}).scalar_one() == 0
        markdown = _artifacts(run_id)["validation-summary"]
        assert "Validation FAILED - nothing was written" in markdown and "billing_amount_not_negative" in markdown
        assert "-10.00" in markdown  # a sample of the failing values
    finally:
        _remove_bills(scored_db, "negative-flood")


def test_unreachable_database_fails_after_its_retries_and_writes_nothing(scored_db, monkeypatch, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    before = _snapshot(scored_db)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@/payer_scoring?host={tmp_path}/no-such-socket-dir")
    monkeypatch.setenv("PAYER_SCORING_DB_RETRIES", "1")
    monkeypatch.setenv("PAYER_SCORING_DB_RETRY_DELAY_SECONDS", "0")
    get_settings.cache_clear()
    try:
        state, run_id = _run(date(2026, 6, 21))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert state.is_failed()
    with pytest.raises(Exception, match="cannot connect to PostgreSQL"):
        state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    attempts = {r.name.rsplit("-", 1)[0]: r.run_count for r in runs}
    # one retry of the first database step, then the run stopped before any other step (issue 12: the
    # suites are loaded and the as-of resolved before validate_payments, which no longer comes first)
    assert attempts == {"check_suites": 1, "resolve_as_of": 2}
    assert _snapshot(scored_db) == before


def test_no_champion_fails_with_one_line_naming_the_train_command(scored_db, cli):
    from models.registry import NoChampionError
    from prefect.settings import PREFECT_API_URL

    before = _snapshot(scored_db)
    with scored_db.begin() as conn:
        champion = conn.execute(sa.text("UPDATE model_registry SET status = 'archived' WHERE status = 'champion' RETURNING version")).scalar_one()
    try:
        state, _ = _run(AS_OF)
        with pytest.raises(NoChampionError, match="payer-scoring train"):
            state.result()
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        out = subprocess.run([*cli, "score", "--as-of", str(AS_OF)], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 1
        errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert errors == ["error: no champion model in model_registry: run `payer-scoring train` first"]
        assert _snapshot(scored_db) == before
    finally:
        with scored_db.begin() as conn:
            conn.execute(sa.text("UPDATE model_registry SET status = 'champion' WHERE version = :v"), {"v": champion})


# ---------------------------------------------------------------- partitioned scoring on Dask (issue 14 #6)
# A real distributed.LocalCluster of 2 workers (threads, not processes: 2 cores are shared) started
# by prefect_dask.DaskTaskRunner.  Every stored value except the run's own scored_at / flow_run_id
# must equal the single-process run's, the hysteresis against the previous run included.
DASK_VALUES = CONTENT + ", reason_codes"


def _values(engine) -> tuple[list, list]:
    return tuple(
        [tuple(tuple(v) if isinstance(v, list) else v for v in r) for r in _rows(engine, t, DASK_VALUES)]
        for t in ("customer_categories", "customer_category_history")
    )


def _staging_tables(engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'results_staging%'")).scalars().all()


def _use_dask(monkeypatch) -> None:
    monkeypatch.setenv("PAYER_SCORING_TASK_RUNNER", "dask")
    monkeypatch.setenv("PAYER_SCORING_DASK_PARTITIONS", "2")
    monkeypatch.setenv("PAYER_SCORING_DASK_WORKERS", "2")
    monkeypatch.setenv("PAYER_SCORING_DASK_PROCESSES", "false")


def test_dask_run_in_two_partitions_gives_the_single_process_tables(scored_db, monkeypatch):
    from payer_scoring.features import extract_features
    from payer_scoring.results import rebuild_current

    with scored_db.connect() as conn:  # a previous run to hold categories against (earlier tests wrote it)
        previous = conn.execute(sa.text("SELECT max(as_of_date) FROM customer_category_history WHERE as_of_date < :t"), {"t": AS_OF}).scalar_one()
    if previous != EARLIER:  # this test run alone
        assert _run(EARLIER)[0].is_completed()
    state, _ = _run(AS_OF)
    single = state.result()
    expected = _values(scored_db)
    assert {r[8] for r in expected[0]} == {AS_OF} and {EARLIER, AS_OF} <= {r[8] for r in expected[1]}
    # Back to the state before that run: its history partition dropped, current rows from the earlier runs.
    rebuild_current(scored_db, EARLIER)
    assert AS_OF not in {r[8] for r in _values(scored_db)[1]}

    # Both partitions hold customers (the split is real), together exactly the whole run's.  The split
    # is by company (8 companies here), so the partitions are as uneven as the companies hashed into them.
    settings, rules = get_settings(), load_rules()
    parts = [extract_features(scored_db, AS_OF, rules, horizon_days=settings.horizon_days, partition=(i, 2)) for i in range(2)]
    whole = extract_features(scored_db, AS_OF, rules, horizon_days=settings.horizon_days)
    assert min(len(p) for p in parts) > 0 and sum(len(p) for p in parts) == len(whole)
    company_sets = [set(p["company_id"]) for p in parts]
    assert not company_sets[0] & company_sets[1]  # whole companies: each company in exactly one partition

    _use_dask(monkeypatch)
    get_settings.cache_clear()
    state, run_id = _run(AS_OF)
    assert state.is_completed(), state.message
    summary = state.result()
    assert "score_partitions" in summary["seconds"] and "extract_features" not in summary["seconds"]
    assert summary["customers_scored"] == single["customers_scored"] == len(expected[0])
    got = _values(scored_db)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert _staging_tables(scored_db) == []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert sorted(r.name.rsplit("-", 1)[0] for r in runs if r.name.startswith("score_partition")) == ["score_partition"] * 2


def test_dask_run_with_a_failed_partition_writes_nothing(scored_db, monkeypatch):
    from payer_scoring import results
    from payer_scoring.features import in_partition_sql

    before = _snapshot(scored_db)
    with scored_db.connect() as conn:
        second = set(
            conn.execute(
                sa.text(f"SELECT DISTINCT customer_id FROM payments WHERE {in_partition_sql()}"),
                {"partition_index": 1, "partition_count": 2},
            ).scalars()
        )
    real_copy = results.copy_to_staging

    def copy_failing_in_partition_1(engine, table, scores, **kw):
        if scores["customer_id"].isin(second).any():
            raise RuntimeError("partition 1 failed on purpose")
        return real_copy(engine, table, scores, **kw)

    monkeypatch.setattr(results, "copy_to_staging", copy_failing_in_partition_1)
    _use_dask(monkeypatch)
    get_settings.cache_clear()
    state, _ = _run(date(2026, 6, 22))
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="partition 1 failed on purpose"):
        state.result()
    assert _snapshot(scored_db) == before  # partition 0 had staged its rows: none reached the tables
    assert _staging_tables(scored_db) == []


def test_a_partition_without_companies_stages_nothing_and_a_full_one_stages_its_customers(scored_db):
    """8 companies in 64 partitions: most partitions hold no company; such a partition stages no row
    (it does not fail the run on the empty-features expectation), and one that holds companies stages
    exactly their customers with a bill issued by the as-of date (counted independently here)."""
    from datetime import datetime, timezone

    from models.registry import load_champion
    from payer_scoring import results
    from payer_scoring.features import in_partition_sql
    from tasks.scoring import score_partition

    settings, rules, count = get_settings(), load_rules(), 64
    with scored_db.connect() as conn:
        used = set(conn.execute(sa.text("SELECT DISTINCT payer_company_partition(company_id, :n) FROM payments"), {"n": count}).scalars())
    assert 0 < len(used) < count
    empty, full = min(set(range(count)) - used), min(used)
    champion = load_champion(scored_db, store=settings.model_store)
    staging = results.create_staging(scored_db, AS_OF)
    try:
        scored_at = datetime.now(timezone.utc)
        none = score_partition.fn(settings, AS_OF, rules, champion, (empty, count), staging, "test-partitions", scored_at)
        with scored_db.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {staging}")).scalar_one() == 0
        some = score_partition.fn(settings, AS_OF, rules, champion, (full, count), staging, "test-partitions", scored_at)
        with scored_db.connect() as conn:
            staged = conn.execute(sa.text(f"SELECT count(*) FROM {staging}")).scalar_one()
            expected = conn.execute(
                sa.text(f"SELECT count(DISTINCT (company_id, customer_id)) FROM payments WHERE issue_date_dte <= :as_of AND {in_partition_sql()}"),
                {"as_of": AS_OF, "partition_index": full, "partition_count": count},
            ).scalar_one()
    finally:
        results.drop_staging(scored_db, staging)
    assert (none.customers, none.features_report, none.category_counts) == (0, None, {})
    assert some.customers == staged == expected > 0
    assert sum(some.category_counts.values()) == expected
