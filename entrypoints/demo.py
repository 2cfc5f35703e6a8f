"""The whole story on one machine: `make demo` / `payer-scoring demo`.

Starts (or reuses) the database, generates a calibrated data set when
`payments` is empty, runs the weekly retrain flow (which trains the first
champion when there is none, and otherwise retrains only when drift or decay
triggers), runs the daily scoring flow, and prints the category distribution
and how to query the results.  Running it again reuses what exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

import sqlalchemy as sa

DEMO_CUSTOMERS = 20_000
DEMO_SEED = 42


def run_demo(customers: int = DEMO_CUSTOMERS, seed: int = DEMO_SEED, as_of: date | None = None,
             echo: Callable[[str], None] = print) -> dict[str, int]:
    """Run data → retrain → score and return the category counts {category code: customers}.

    ``as_of`` defaults to the one as-of rule (:mod:`payer_scoring.asof`): today
    in the configured timezone, capped at the data's last date, so the demo,
    a later ``evaluate`` and ``retrain`` agree on the date.  Raises the flows'
    own errors (e.g. a critical expectation failure) unchanged.
    """
    from payer_scoring.db import database_url_for_psql, prepare_database
    from payer_scoring.results import category_counts
    from payer_scoring.settings import get_settings

    settings = get_settings()
    started = time.perf_counter()

    def step(n: int, text: str) -> None:
        echo(f"[{n}/4] {text}  (+{time.perf_counter() - started:.0f}s)")

    where = "DATABASE_URL" if settings.database_url else f"embedded PostgreSQL in {settings.pgdata}"
    step(1, f"database: {where}")
    engine = prepare_database(settings, create=True)

    with engine.connect() as conn:
        bills = conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one()
    if bills:
        step(2, f"data: payments already holds {bills:,} bills, reusing them")
    else:
        from payer_scoring.generator import GeneratorConfig, generate_to_database

        step(2, f"data: generating {customers:,} customers (seed {seed}) ...")
        echo("      " + generate_to_database(engine, GeneratorConfig(customers=customers, seed=seed), today=settings.today()))

    from flows.weekly_retrain import retrain_on_drift
    from models.training import resolve_as_of

    as_of = resolve_as_of(engine, as_of, settings)

    step(3, "model: weekly retrain flow (trains the first champion; later runs retrain only on drift) ...")
    echo("      (the first flow waits 20-30 s for Prefect's temporary local API to start)")
    retrain_on_drift(force=False, as_of=as_of)

    from flows.daily_scoring import score_customers

    step(4, f"scoring: daily scoring flow as of {as_of} ...")
    score_customers(as_of=as_of)

    counts = category_counts(engine, as_of)
    total = sum(counts.values())
    echo("")
    echo(f"Done in {time.perf_counter() - started:.0f}s. Categories as of {as_of} ({total:,} customers):")
    for code, n in counts.items():
        echo(f"  {code:<10} {n:>9,}  {n / total:6.1%}")
    echo("")
    echo("Results: table customer_categories (current), customer_category_history (one row per as-of),")
    echo("         view billing_customer_category (what the billing system reads).")
    echo(f'Query:   psql "{database_url_for_psql(settings)}" -c \\')
    echo("           \"SELECT category, count(*) FROM billing_customer_category GROUP BY 1 ORDER BY 2 DESC\"")
    echo("UI:      make prefect   (Prefect UI on http://127.0.0.1:4200 with both deployments)")
    return counts
