"""Benchmark of the scoring write-back (payer_scoring/results.py): rows per second for the four kinds of write.

    .venv/bin/python benchmarks/write_results.py [--rows 300000]

Creates a throw-away database on the configured server (embedded by default),
writes ``--rows`` synthetic scores with export-shaped ids (95-character hashed
hex) as: a first as-of, a rerun of the same as-of (nothing changes), the next
day (every current row replaced) and an older as-of (history only), prints
seconds and rows/s for each, and drops the database.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy.engine import make_url

import payer_scoring  # noqa: F401  (telemetry off)
from payer_scoring import db as dbmod
from payer_scoring.settings import Settings


def synthetic_scores(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([1, 1, 1, 1], size=rows)

    def hexid(i: int) -> str:
        return " ".join(f"{b:02x}" for b in i.to_bytes(32, "big"))

    return pd.DataFrame({
        "company_id": [hexid(i % 400) for i in range(rows)],
        "customer_id": [hexid(10**9 + i) for i in range(rows)],
        "category": rng.choice(["new", "good", "doubtful", "forgetful", "bad"], rows),
        "p_good": p[:, 0], "p_doubtful": p[:, 1], "p_forgetful": p[:, 2], "p_bad": p[:, 3],
        "observed_category": rng.choice(["new", "good", "doubtful", "forgetful", "bad"], rows),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    from payer_scoring.results import write_results

    server_url = dbmod.resolve_database_url(Settings(), create=True)
    name = f"payer_scoring_bench_{os.getpid()}"
    admin = make_url(server_url).set(database="postgres").render_as_string(hide_password=False)
    dbmod.ensure_database(admin, name)
    try:
        engine = dbmod._engine_for(make_url(server_url).set(database=name).render_as_string(hide_password=False))
        dbmod.apply_migrations(engine)
        frame = synthetic_scores(args.rows)
        print(f"{args.rows:,} rows")
        for label, as_of in (("first as-of", date(2026, 1, 2)), ("same as-of again", date(2026, 1, 2)),
                             ("next day", date(2026, 1, 3)), ("older as-of", date(2026, 1, 1))):
            started = time.perf_counter()
            write_results(engine, frame, as_of=as_of, model_version="bench", flow_run_id=label)
            seconds = time.perf_counter() - started
            print(f"  {label:<18} {seconds:6.2f} s  {args.rows / seconds:>10,.0f} rows/s")
        engine.dispose()
    finally:
        dbmod.drop_database(admin, name)


if __name__ == "__main__":
    main()
