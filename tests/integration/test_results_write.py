"""Write-back of scores on a real PostgreSQL: atomic, idempotent, newest-wins, one writer, billing role.

The plain function ``payer_scoring.results.write_results`` is called directly (no
Prefect); the SIGKILL test runs it in a child process that the test blocks
inside the write transaction with a table lock, then kills with -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from payer_scoring.results import WRITE_LOCK_KEY, WriteLockBusy, write_results

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)
CONTENT = "company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad, observed_category, as_of_date, model_version"


def scores(n: int, seed: int) -> pd.DataFrame:
    """n customers of two companies with probabilities summing to 1 and the argmax category."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([1, 1, 1, 1], size=n)
    return pd.DataFrame({
        "company_id": [f"{i % 2:02x} aa" for i in range(n)],
        "customer_id": [f"{i:04x} bb" for i in range(n)],
        "category": np.array(["good", "doubtful", "forgetful", "bad"])[p.argmax(axis=1)],
        "p_good": p[:, 0], "p_doubtful": p[:, 1], "p_forgetful": p[:, 2], "p_bad": p[:, 3],
        "observed_category": [None if i == 0 else "good" for i in range(n)],
    })


def table(engine, name: str, columns: str = "*") -> list[tuple]:
    with engine.connect() as conn:
        order = "as_of_date, company_id, customer_id" if name == "customer_category_history" else "company_id, customer_id"
        # text[] columns (reason_codes, issue 11) come back as lists: tuples keep rows hashable
        return [
            tuple(tuple(v) if isinstance(v, list) else v for v in r)
            for r in conn.execute(sa.text(f"SELECT {columns} FROM {name} ORDER BY {order}"))
        ]


def write(engine, frame, as_of, run="run", **kw):
    return write_results(engine, frame, as_of=as_of, model_version="m1", flow_run_id=run, lock_wait_seconds=kw.pop("wait", 30), **kw)


def test_write_stores_every_value_exactly(clean_db):
    frame = scores(50, 1)
    summary = write(clean_db, frame, D1)
    assert (summary.rows_staged, summary.history_written, summary.current_written) == (50, 50, 50)
    got = pd.DataFrame(table(clean_db, "customer_categories", CONTENT), columns=[c.strip() for c in CONTENT.split(",")])
    expected = frame.sort_values(["company_id", "customer_id"]).reset_index(drop=True)
    for column in ("p_good", "p_doubtful", "p_forgetful", "p_bad"):
        assert (got[column].to_numpy() == expected[column].to_numpy()).all(), column  # bit-exact floats
    assert got.observed_category.isna().sum() == 1
    assert set(got.as_of_date) == {D1} and set(got.model_version) == {"m1"}
    assert table(clean_db, "customer_category_history", CONTENT) == table(clean_db, "customer_categories", CONTENT)


def test_same_as_of_twice_gives_identical_tables_even_scored_at(clean_db):
    write(clean_db, scores(40, 2), D1, run="first")
    current, history = table(clean_db, "customer_categories"), table(clean_db, "customer_category_history")
    summary = write(clean_db, scores(40, 2), D1, run="second")
    assert (summary.current_written, summary.history_written) == (0, 0)
    assert table(clean_db, "customer_categories") == current
    assert table(clean_db, "customer_category_history") == history


def test_rerun_replaces_that_as_of_completely(clean_db):
    write(clean_db, scores(40, 3), D1)
    changed = scores(39, 4)  # one customer fewer, other probabilities
    summary = write(clean_db, changed, D1, run="rerun")
    assert summary.current_removed == 1 and summary.history_removed == 1
    assert len(table(clean_db, "customer_categories")) == 39
    assert {r[0] for r in table(clean_db, "customer_categories", "flow_run_id")} == {"rerun"}


def test_older_as_of_writes_history_only(clean_db):
    write(clean_db, scores(30, 5), D2, run="newer")
    current = table(clean_db, "customer_categories")
    summary = write(clean_db, scores(30, 6), D1, run="older")
    assert summary.current_kept_newer == 30 and summary.current_written == 0
    assert table(clean_db, "customer_categories") == current
    history = table(clean_db, "customer_category_history", "as_of_date, count(*) OVER (PARTITION BY as_of_date)")
    assert sorted(set(history)) == [(D1, 30), (D2, 30)]


def test_newer_as_of_replaces_and_keeps_customers_it_did_not_score(clean_db):
    write(clean_db, scores(30, 7), D1)
    write(clean_db, scores(20, 8), D2)
    dates = [r[0] for r in table(clean_db, "customer_categories", "as_of_date")]
    assert dates.count(D2) == 20 and dates.count(D1) == 10  # the 10 others keep their older category


def test_a_customer_scored_twice_is_refused_and_nothing_changes(clean_db):
    write(clean_db, scores(10, 9), D1)
    before = table(clean_db, "customer_categories")
    frame = scores(10, 10)
    with pytest.raises(sa.exc.IntegrityError, match="results_staging_key"):
        write(clean_db, pd.concat([frame, frame.iloc[:1]]), D2)
    assert table(clean_db, "customer_categories") == before


def test_invalid_probability_rolls_back_both_tables(clean_db):
    write(clean_db, scores(10, 11), D1)
    before = (table(clean_db, "customer_categories"), table(clean_db, "customer_category_history"))
    frame = scores(10, 12)
    frame.loc[5, "p_bad"] = np.nan
    with pytest.raises(sa.exc.IntegrityError):
        write(clean_db, frame, D2)
    assert (table(clean_db, "customer_categories"), table(clean_db, "customer_category_history")) == before


def test_second_writer_exits_with_a_clear_message_when_the_lock_stays_busy(clean_db):
    with clean_db.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": WRITE_LOCK_KEY})
        try:
            started = time.monotonic()
            with pytest.raises(WriteLockBusy, match="another score-customers run .* still writing .* nothing was written"):
                write(clean_db, scores(10, 13), D1, wait=1)
            assert time.monotonic() - started >= 1
        finally:
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": WRITE_LOCK_KEY})
            holder.commit()
    assert table(clean_db, "customer_categories") == []


def test_second_writer_waits_for_the_first(clean_db):
    holder = clean_db.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": WRITE_LOCK_KEY})

    def release():
        time.sleep(1.5)
        holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": WRITE_LOCK_KEY})
        holder.commit()
        holder.close()

    threading.Thread(target=release).start()
    started = time.monotonic()
    summary = write(clean_db, scores(10, 14), D1, wait=30)
    assert time.monotonic() - started >= 1.4 and summary.current_written == 10


_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import date
    import sqlalchemy as sa
    sys.path.insert(0, {tests!r})
    from integration.test_results_write import scores
    from payer_scoring.results import write_results
    engine = sa.create_engine({url!r})
    write_results(engine, scores(60, 21), as_of=date(2026, 3, 2), model_version="m2", flow_run_id="killed", lock_wait_seconds=30)
    print("committed")
    """
)


def test_sigkill_while_writing_leaves_the_previous_results_and_a_rerun_completes(clean_db, database_url):
    write(clean_db, scores(60, 20), D1, run="previous")
    previous = table(clean_db, "customer_categories")
    tests_dir = os.path.dirname(os.path.dirname(__file__))
    with clean_db.connect() as blocker:
        # SHARE lets readers in but blocks the writer's INSERT ... ON CONFLICT on the
        # current table - after it has already staged and written the history rows.
        blocker.execute(sa.text("LOCK TABLE customer_categories IN SHARE MODE"))
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD.format(tests=tests_dir, url=database_url)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            waiting = _wait_for_blocked_writer(clean_db, child)
            assert waiting, "the writer never reached the current-table merge"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
            assert child.returncode == -signal.SIGKILL
            # Seen from another session while the killed transaction is still open:
            assert table(clean_db, "customer_categories") == previous
            assert {r[0] for r in table(clean_db, "customer_category_history", "as_of_date")} == {D1}
        finally:
            if child.poll() is None:
                child.kill()
            blocker.rollback()
    # The orphaned backend aborts (client gone) and releases the advisory lock; the rerun waits for it.
    summary = write(clean_db, scores(60, 21), D2, run="rerun", wait=60)
    assert summary.current_written == 60
    assert {r[0] for r in table(clean_db, "customer_categories", "flow_run_id")} == {"rerun"}
    assert {r[0] for r in table(clean_db, "customer_category_history", "as_of_date")} == {D1, D2}


def _wait_for_blocked_writer(engine, child, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise AssertionError(f"writer exited early: {child.communicate()}")
            blocked = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND (query LIKE '%INSERT INTO customer_categories%' OR query LIKE '%LOCK TABLE customer_categories %')"
                )
            ).scalar_one()
            if blocked:
                return True
            conn.rollback()
            time.sleep(0.1)
    return False


# ------------------------------------------------------------------ billing contract
def test_category_labels_are_the_pt_br_labels(engine):
    from payer_scoring.rules import CATEGORY_LABELS

    with engine.connect() as conn:
        labels = dict(conn.execute(sa.text("SELECT category, category_label FROM category_labels")).all())
    assert labels == CATEGORY_LABELS


def test_billing_view_shows_code_label_probabilities(clean_db):
    write(clean_db, scores(8, 30), D1)
    with clean_db.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM billing_customer_category ORDER BY company_id, customer_id")).mappings().all()
    assert len(rows) == 8
    assert list(rows[0].keys()) == [
        "company_id", "customer_id", "category", "category_label", "p_good", "p_doubtful", "p_forgetful", "p_bad",
        "observed_category", "as_of_date", "model_version",
        # issue 11 (migration 0008): added at the end, the earlier columns unchanged
        "risk_score", "reason_codes", "reason_texts_pt_br", "reason_texts_en",
    ]
    assert {(r["category"], r["category_label"]) for r in rows} <= {
        ("good", "Bons Pagadores"), ("doubtful", "Pagadores Duvidosos"), ("forgetful", "Pagadores Esquecidos"), ("bad", "Maus Pagadores")
    }


def test_billing_reader_reads_the_view_and_nothing_else(clean_db, database_url):
    write(clean_db, scores(5, 31), D1)
    reader = sa.create_engine(sa.engine.make_url(database_url).set(username="billing_reader", password=None))
    try:
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM billing_customer_category")).scalar_one() == 5
    except sa.exc.OperationalError as exc:  # a real server with password auth
        pytest.skip(f"cannot log in as billing_reader on this server: {exc.orig}")
    with clean_db.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).scalars().all()
    assert {"payments", "customer_categories", "customer_category_history", "quarantined_payments"} <= set(tables)
    for name in tables:
        with reader.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text(f"SELECT 1 FROM {name} LIMIT 1"))
    with reader.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        conn.execute(sa.text("CREATE TABLE billing_scratch (x int)"))
    reader.dispose()
