"""Benchmark of daily scoring and retraining against the database's own floors (issue 7).

    make bench                                  # = the line below, with the venv
    .venv/bin/python benchmarks/run_benchmark.py [--sizes 100000,1000000] [--seed 42] [--reuse] [--keep-db]

For each size N it

1. generates N customers with the generator into their own database
   ``payer_scoring_bench_<N>`` on the configured server (the embedded one by
   default); ``--reuse`` keeps a database that already holds a generator run
   with the same seed and size (1M customers take minutes to generate);
2. times one daily scoring run as of the data's end date by calling the plain
   functions the flow's tasks wrap - payments validation (GX in the database),
   feature query, feature validation, champion load, prediction, score
   validation, write-back - in a child process, so the child's peak resident
   memory (``ru_maxrss``) is the scoring run's; each stage's peak comes from a
   thread sampling ``VmRSS`` in ``/proc/self/status`` every 10 ms;
3. measures the floors on the same database in the same run: a sequential
   scan aggregate over ``payments`` (best of 2) and a binary COPY of as many
   rows as the results get into a temporary table shaped like
   ``customer_categories``;
4. times one retrain (``models.training.train``) in another child process and,
   at 100,000 customers only, the notebook way (``pd.read_sql`` of every bill,
   then ``groupby().apply`` of a Python function computing
   :data:`NAIVE_FEATURES`) in a third;
5. prints a markdown table per size (stage, seconds, rows, rows/s, ratio to
   its floor) and the speed-up over the naive way, and writes everything as
   JSON to ``benchmarks/results/<date>.json`` and ``benchmarks/results/latest.json``.

Without ``--keep-db`` the benchmark databases are dropped at the end.
The results tables and the quarantine of a reused database are emptied
first, so every run measures the same day-after-yesterday write; its model
registry is kept (the retrain then registers a challenger, and scoring uses
the champion).  Model artifacts go to ``<model_store>/bench_<N>``.
Not part of the test suite (``tests/unit/test_benchmark_report.py`` tests the
pure helpers below).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"

# Goals of issue 7 (reported, never asserted).
TARGETS = {  # issue 14 (reported, never asserted)
    "daily_total_seconds_1m": 60.0,
    "peak_rss_gb": 2.0,
    "validation_vs_scan_floor": 3.0,
    "features_vs_scan_floor": 3.0,
    "write_rows_per_s": 300_000.0,
    "predict_customers_per_s": 100_000.0,
    "retrain_seconds_1m": 120.0,
    "linearity_spread": 0.10,  # seconds per customer of a stage within 10 % across sizes
    "load_rows_per_s": 200_000.0,
    "speedup_vs_naive": 20.0,  # issue 7
}
# The subset of the SQL features the naive notebook way computes per customer.
NAIVE_FEATURES = [
    "n_bills", "n_matured", "n_late", "late_share", "dpd_mean_days", "dpd_max_days",
    "recent3_late_share", "recent3_dpd_mean_days",
]  # fmt: skip


# --------------------------------------------------------------------------- pure helpers
@dataclass
class Stage:
    """One measured step: seconds, rows handled (``unit`` says of what) and peak RSS while it ran."""

    name: str
    seconds: float
    rows: int
    unit: str  # "bills" | "customers" | "rows"
    peak_rss_mb: float | None = None
    floor: str | None = None  # name of the Stage this one is compared with
    part_of_daily_run: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float | None:
        return rate(self.rows, self.seconds)


def rate(rows: int, seconds: float) -> float | None:
    """Rows per second, or None when nothing was timed."""
    return rows / seconds if seconds > 0 else None


def floor_ratio(stage: Stage, floors: dict[str, Stage]) -> float | None:
    """How many times slower per row ``stage`` is than its floor (1.0 = as fast as the floor).

    Compared per row, so a floor measured on a different row count (the COPY
    floor copies as many rows as the stage writes; the scan floor reads every
    bill, as the feature query does) still gives a fair ratio.
    """
    floor = floors.get(stage.floor or "")
    if floor is None or not stage.rows or not floor.rows or floor.seconds <= 0:
        return None
    return (stage.seconds / stage.rows) / (floor.seconds / floor.rows)


def _fmt_num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_table(stages: list[Stage], floors: dict[str, Stage]) -> str:
    """Markdown table: stage, seconds, rows, rows/s, x floor, peak RSS; daily-run stages then a total line."""
    lines = [
        "| stage | seconds | rows | rows/s | × floor | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        ratio = floor_ratio(s, floors)
        lines.append(
            f"| {s.name} | {s.seconds:,.2f} | {s.rows:,} {s.unit} | {_fmt_num(s.rows_per_s)} | "
            f"{_fmt_num(ratio, 1) + '×' if ratio is not None else '-'} | {_fmt_num(s.peak_rss_mb)} |"
        )
    return "\n".join(lines)


def daily_total(stages: list[Stage]) -> float:
    """Seconds of the daily scoring run: the sum of its stages."""
    return sum(s.seconds for s in stages if s.part_of_daily_run)


def speedup(naive_seconds: float | None, seconds: float | None) -> float | None:
    """naive / ours, or None when either is missing."""
    if not naive_seconds or not seconds:
        return None
    return naive_seconds / seconds


def verdicts(result: dict) -> list[str]:
    """One line per target of issue 14: met / MISSED with the figure (from one size's result dict)."""
    out = []
    customers = result["customers"]
    stages = {s["name"]: s for s in result["stages"]}
    total = result["daily_total_seconds"]
    scale = 1_000_000 / customers

    def line(ok: bool | None, text: str) -> str:
        return f"{'met' if ok else 'MISSED' if ok is not None else 'n/a'}: {text}"

    if customers >= 1_000_000:
        out.append(line(total < TARGETS["daily_total_seconds_1m"], f"daily run {total:,.0f} s (goal < 60 s at 1M)"))
    else:
        out.append(f"info: daily run {total:,.1f} s (≈ {total * scale:,.0f} s if linear to 1M)")
    peak = result.get("daily_peak_rss_mb")
    if peak is not None:
        out.append(line(peak / 1024 < TARGETS["peak_rss_gb"], f"daily run peak RSS {peak / 1024:.2f} GB (goal < 2 GB)"))
    ratio = result.get("validation_vs_scan_floor")
    if ratio is not None:
        out.append(line(ratio <= TARGETS["validation_vs_scan_floor"], f"payments validation {ratio:.1f}× the seq-scan floor (goal ≤ 3×)"))
    ratio = result.get("features_vs_scan_floor")
    if ratio is not None:
        out.append(line(ratio <= TARGETS["features_vs_scan_floor"], f"feature query {ratio:.1f}× the seq-scan floor (goal ≤ 3×)"))
    write = stages.get("write-back")
    if write and write.get("rows_per_s"):
        out.append(line(write["rows_per_s"] >= TARGETS["write_rows_per_s"],
                        f"write-back {write['rows_per_s']:,.0f} rows/s (goal ≥ 300,000)"))
    predict = stages.get("prediction")
    if predict and predict.get("rows_per_s"):
        out.append(line(predict["rows_per_s"] >= TARGETS["predict_customers_per_s"],
                        f"prediction {predict['rows_per_s']:,.0f} customers/s (goal ≥ 100,000)"))
    retrain = stages.get("retrain (models.training.train)")
    if retrain:
        if customers >= 1_000_000:
            out.append(line(retrain["seconds"] < TARGETS["retrain_seconds_1m"], f"retrain {retrain['seconds']:,.0f} s (goal < 120 s at 1M)"))
        else:
            out.append(f"info: retrain {retrain['seconds']:,.1f} s")
    load = stages.get("load payments (CLI, export CSV)")
    if load and load.get("rows_per_s"):
        out.append(line(load["rows_per_s"] >= TARGETS["load_rows_per_s"], f"load payments {load['rows_per_s']:,.0f} rows/s (goal ≥ 200,000)"))
    if result.get("speedup_vs_naive") is not None:
        out.append(line(result["speedup_vs_naive"] >= TARGETS["speedup_vs_naive"],
                        f"{result['speedup_vs_naive']:.0f}× faster than naive pandas groupby-apply (goal ≥ 20×)"))
    return out


def linearity(sizes: list[dict]) -> list[dict]:
    """Seconds per customer of each stage at every size, and its spread: (max - min) / min across the sizes.

    ``sizes``: the per-size results (each with ``customers`` and ``stages``).
    Only stages measured at every size count.  Returns one dict per stage
    ({stage, us_per_customer: {customers: microseconds}, spread (share), ok
    (spread <= the 10 % goal)}), in the first size's stage order.
    """
    if len(sizes) < 2:
        return []
    per = [{s["name"]: s["seconds"] / r["customers"] * 1e6 for s in r["stages"]} for r in sizes]
    out = []
    for name in per[0]:
        if name.startswith("floor:") or not all(name in p for p in per):
            continue
        values = {r["customers"]: round(p[name], 2) for r, p in zip(sizes, per)}
        low, high = min(values.values()), max(values.values())
        spread = (high - low) / low if low > 0 else None
        out.append({"stage": name, "us_per_customer": values, "spread": None if spread is None else round(spread, 3),
                    "ok": None if spread is None else spread <= TARGETS["linearity_spread"]})
    return out


def format_linearity(rows: list[dict]) -> str:
    """Markdown table of :func:`linearity`: microseconds per customer at each size and the spread."""
    if not rows:
        return ""
    sizes = list(rows[0]["us_per_customer"])
    lines = ["| stage | " + " | ".join(f"µs/customer at {n:,}" for n in sizes) + " | spread | within 10 % |",
             "|---|" + "---:|" * len(sizes) + "---:|---|"]
    for r in rows:
        spread = "-" if r["spread"] is None else f"{r['spread']:.0%}"
        ok = "n/a" if r["ok"] is None else ("met" if r["ok"] else "MISSED")
        lines.append(f"| {r['stage']} | " + " | ".join(f"{r['us_per_customer'][n]:,.1f}" for n in sizes) + f" | {spread} | {ok} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- memory
class RssSampler:
    """Samples this process's VmRSS every ``interval`` s; :meth:`stage` reports the peak within a block."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current_kb() -> int:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak_kb = max(self._peak_kb, self.current_kb())

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def stage(self, into: dict) -> Iterator[None]:
        """Within the block, track the peak; on exit put ``seconds`` and ``peak_rss_mb`` into ``into``."""
        self._peak_kb = self.current_kb()
        started = time.perf_counter()
        try:
            yield
        finally:
            into["seconds"] = time.perf_counter() - started
            into["peak_rss_mb"] = max(self._peak_kb, self.current_kb()) / 1024


def ru_maxrss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- database set-up (parent)
def _server_url() -> str:
    from payer_scoring import db as dbmod
    from payer_scoring.settings import Settings

    return dbmod.resolve_database_url(Settings(), create=True)


def _urls(name: str) -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    server = make_url(_server_url())
    admin = server.set(database="postgres").render_as_string(hide_password=False)
    return admin, server.set(database=name).render_as_string(hide_password=False)


def database_name(customers: int) -> str:
    """payer_scoring_bench_100k, _1m, _250k, ... (the database of one size)."""
    if customers % 1_000_000 == 0:
        return f"payer_scoring_bench_{customers // 1_000_000}m"
    if customers % 1_000 == 0:
        return f"payer_scoring_bench_{customers // 1_000}k"
    return f"payer_scoring_bench_{customers}"


def prepare_database(customers: int, seed: int, reuse: bool) -> dict:
    """Create (or reuse) the size's database with generated data; return its facts (name, url, run, gen seconds)."""
    import sqlalchemy as sa

    from payer_scoring import db as dbmod
    from payer_scoring.generator import GeneratorConfig, generate_to_database

    name = database_name(customers)
    admin, url = _urls(name)
    generated_seconds = None
    run = None
    if reuse:
        dbmod.ensure_database(admin, name)
        engine = dbmod._engine_for(url)
        dbmod.apply_migrations(engine)
        with engine.connect() as conn:
            run = conn.execute(
                sa.text("SELECT seed, customers, bills, start_date, end_date FROM synthetic_runs ORDER BY run_id DESC LIMIT 1")
            ).mappings().first()
        if run is None or run["seed"] != seed or run["customers"] != customers:
            print(f"{name}: no generator run with seed {seed} and {customers:,} customers; generating afresh", flush=True)
            run = None
            engine.dispose()
            dbmod._engine_for.cache_clear()
        else:
            print(f"{name}: reusing the generator run of {run['bills']:,} bills ({run['start_date']} to {run['end_date']})", flush=True)
    if run is None:
        dbmod.drop_database(admin, name)
        dbmod.ensure_database(admin, name)
        engine = dbmod._engine_for(url)
        dbmod.apply_migrations(engine)
        print(f"{name}: generating {customers:,} customers (seed {seed}) ...", flush=True)
        started = time.perf_counter()
        from payer_scoring.settings import Settings

        summary = generate_to_database(engine, GeneratorConfig(customers=customers, seed=seed), today=Settings().today())
        generated_seconds = time.perf_counter() - started
        print(f"  {summary}", flush=True)
        with engine.connect() as conn:
            run = conn.execute(
                sa.text("SELECT seed, customers, bills, start_date, end_date FROM synthetic_runs ORDER BY run_id DESC LIMIT 1")
            ).mappings().first()
    engine = dbmod._engine_for(url)
    with engine.begin() as conn:  # the results of a reused database start empty, as in a fresh one
        conn.execute(sa.text("TRUNCATE customer_categories, customer_category_history, quarantined_payments"))
    # Hint bits and statistics: without this the first scan after a bulk load
    # rewrites every page, and the floor would measure that instead.
    ac = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with ac.connect() as conn:
        started = time.perf_counter()
        conn.execute(sa.text("VACUUM (ANALYZE) payments"))
        conn.execute(sa.text("VACUUM (ANALYZE) companies"))
        vacuum_seconds = time.perf_counter() - started
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    ac.dispose()
    return {
        "database": name,
        "url": url,
        "seed": run["seed"],
        "customers": run["customers"],
        "bills": int(run["bills"]),
        "start_date": run["start_date"].isoformat(),
        "end_date": run["end_date"].isoformat(),
        "generate_seconds": round(generated_seconds, 1) if generated_seconds else None,
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
        "database_bytes": int(size),
    }


# --------------------------------------------------------------------------- child processes
def _child_env(url: str, customers: int) -> dict:
    from payer_scoring.settings import Settings

    env = dict(os.environ)
    env["DATABASE_URL"] = url
    env["PAYER_SCORING_MODEL_STORE"] = str(Settings().model_store / f"bench_{customers}")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return env


def run_child(kind: str, facts: dict) -> dict:
    """Run ``kind`` (score | train | naive) in a fresh interpreter; return its JSON result."""
    out = RESULTS_DIR / f".child-{kind}-{os.getpid()}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--facts", json.dumps(facts), "--out", str(out)]
    proc = subprocess.run(cmd, env=_child_env(facts["url"], facts["customers"]), cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child '{kind}' failed (exit {proc.returncode}); see its output above")
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def _stage_dict(name: str, m: dict, rows: int, unit: str, **kw) -> dict:
    return {"name": name, "seconds": round(m["seconds"], 3), "rows": int(rows), "unit": unit,
            "peak_rss_mb": round(m["peak_rss_mb"], 1), **kw}


def child_score(facts: dict) -> dict:
    """The floors, then one daily scoring run stage by stage: the plain functions the flow's tasks call, in its order.

    Yesterday's run is written first (untimed, same scores) so hysteresis
    and write-back meet the daily case: a previous run in place, today's
    replaces every current row and adds a history date.
    """
    import pandas as pd  # noqa: F401
    import sqlalchemy as sa

    from models import predict
    from models.registry import load_champion
    from payer_scoring import bill_events, features as features_mod, results
    from payer_scoring.db import get_engine
    from payer_scoring.rules import load_rules
    from payer_scoring.settings import Settings
    from payer_scoring.validation import validate_frame, validate_payments_in_database

    as_of = date.fromisoformat(facts["end_date"])
    latest_plausible = max(date.today(), as_of) + timedelta(days=1)
    settings = Settings()
    engine = get_engine(settings)
    rules = load_rules(settings.rules_file)
    run_id = f"bench-{datetime.now():%Y%m%dT%H%M%S}"
    stages: list[dict] = []
    with RssSampler() as rss:
        # ---- floor: sequential scan aggregate (best of 2: the first may read from disk)
        scans = []
        for _ in range(2):
            m: dict = {}
            with rss.stage(m), engine.connect() as conn:
                bills = conn.execute(sa.text("SELECT count(*), sum(billing_amount) FROM payments")).first()[0]
            scans.append(m)
        best = min(scans, key=lambda x: x["seconds"])
        stages.append(_stage_dict("floor: seq-scan count/sum(payments)", best, bills, "bills",
                                  extra={"runs_seconds": [round(x["seconds"], 3) for x in scans]}))

        # ---- the daily run
        m = {}
        with rss.stage(m):
            report = validate_payments_in_database(engine, as_of=as_of, flow_run_id=run_id, latest_plausible_date=latest_plausible)
        stages.append(_stage_dict("payments validation (GX in PostgreSQL)", m, bills, "bills", daily=True,
                                  floor="floor: seq-scan count/sum(payments)",
                                  extra={"expectations": len(report.outcomes), "quarantined_bills": report.quarantined_bills}))
        m = {}
        with rss.stage(m):
            features = features_mod.extract_features(engine, as_of, rules, exclude_run_id=run_id, horizon_days=settings.horizon_days)
            features = features_mod.add_customers_without_counted_bills(engine, as_of, rules, features, run_id)
        customers = len(features)
        stages.append(_stage_dict("feature query (sql/customer_features.sql)", m, bills, "bills", daily=True,
                                  floor="floor: seq-scan count/sum(payments)", extra={"customers": customers}))
        m = {}
        with rss.stage(m):
            validate_frame(features, "customer_features")
        stages.append(_stage_dict("feature validation (GX, pandas)", m, customers, "customers", daily=True))
        m = {}
        with rss.stage(m):
            champion = load_champion(engine, store=settings.model_store)
        stages.append(_stage_dict("champion load", m, 1, "model", daily=True))
        m = {}
        with rss.stage(m):
            scores = predict.predict_categories(champion, features, rules, threads=settings.model_threads)
        stages.append(_stage_dict("prediction", m, customers, "customers", daily=True,
                                  extra={"model_threads": settings.model_threads}))
        # yesterday's run, in place before today's (untimed)
        first = results.write_results(engine, scores, as_of=as_of - timedelta(days=1), model_version=champion.version,
                                      flow_run_id=run_id + "-yesterday")
        m = {}
        with rss.stage(m):  # = tasks.scoring.stabilise_categories
            rule = getattr(champion.model, "rule", None)
            previous_date, previous = results.read_previous_categories(engine, as_of)
            previous = previous[previous["model_version"] == champion.version]
            events = bill_events.bill_events(engine, previous_date, as_of, rules)
            scores = predict.stabilise_categories(scores, previous, events, rule.cutoffs if rule else None, rules.hysteresis_margin)
        stages.append(_stage_dict("hysteresis (previous run, bill events)", m, customers, "customers", daily=True,
                                  extra={"held": int(scores["category_held"].sum()) if "category_held" in scores else None}))
        m = {}
        with rss.stage(m):
            validate_frame(scores, "customer_scores", {"features_row_count": len(features)})
        stages.append(_stage_dict("score validation (GX, pandas)", m, customers, "customers", daily=True))
        del features
        m = {}
        with rss.stage(m):
            written = results.write_results(engine, scores, as_of=as_of, model_version=champion.version, flow_run_id=run_id)
        stages.append(_stage_dict("write-back", m, customers, "customers", daily=True, floor="floor: COPY into temp table",
                                  extra={"summary": {k: v for k, v in written.as_dict().items() if k != "as_of"},
                                         "first_write_seconds": first.seconds}))
        # ---- floor: COPY of as many rows into a temp table shaped like customer_categories
        m = {}
        with rss.stage(m):
            copied = copy_floor(engine, scores, as_of, champion.version, run_id)
        stages.append(_stage_dict("floor: COPY into temp table", m, copied, "customers"))
    daily = [s for s in stages if s.get("daily")]
    return {
        "as_of": as_of.isoformat(),
        "customers_scored": customers,
        "stages": stages,
        "daily_total_seconds": round(sum(s["seconds"] for s in daily), 2),
        "daily_peak_rss_mb": round(max(s["peak_rss_mb"] for s in daily), 1),
        "process_ru_maxrss_mb": round(ru_maxrss_mb(), 1),
    }


def _tree_rss_kb(root: int) -> int:
    """RSS of ``root`` and its descendants (e.g. Dask worker processes), less Prefect's temporary API server (uvicorn), in KiB."""
    import psutil

    total = 0
    parent = psutil.Process(root)
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            if proc.pid != root and any("uvicorn" in part for part in proc.cmdline()):
                continue
            total += proc.memory_info().rss
        except psutil.Error:  # ended meanwhile
            continue
    return total // 1024


class TreeRssSampler(RssSampler):
    """:class:`RssSampler` over this process and its descendants (every 50 ms: walking /proc costs more)."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(interval)

    @staticmethod
    def current_kb() -> int:
        return _tree_rss_kb(os.getpid())


def runner_env(runner: str) -> dict[str, str]:
    """Settings (environment) that choose the daily flow's task runner: ``in-process`` or ``dask:<workers>``.

    ``dask:<W>``: a temporary LocalCluster of W single-threaded worker
    processes and W partitions (``PAYER_SCORING_DASK_WORKERS`` and
    ``_DASK_PARTITIONS``), so each worker scores one partition.  Raises
    SystemExit for any other text.
    """
    if runner == "in-process":
        return {"PAYER_SCORING_TASK_RUNNER": "in-process"}
    kind, _, workers = runner.partition(":")
    if kind != "dask" or not workers.isdigit():
        raise SystemExit(f"--flows: '{runner}' is not in-process or dask:<workers>")
    return {"PAYER_SCORING_TASK_RUNNER": "dask", "PAYER_SCORING_DASK_WORKERS": workers, "PAYER_SCORING_DASK_PARTITIONS": workers}


def child_flow(facts: dict) -> dict:
    """The whole daily flow (``flows.daily_scoring.score_customers``) as of the data's end date, under a temporary Prefect API.

    The results are first set back to yesterday's run (today's history rows
    deleted, current rows rebuilt; untimed), so every runner meets the same
    daily case.  The stage is the flow call's wall time (the API's start-up
    excluded); its peak memory covers the Dask worker processes too.  The
    run summary's per-step seconds go to ``extra``.
    """
    from prefect.testing.utilities import prefect_test_harness

    from flows.daily_scoring import score_customers
    from payer_scoring import results
    from payer_scoring.db import get_engine
    from payer_scoring.settings import Settings

    os.environ.update(runner_env(facts["runner"]))
    as_of = date.fromisoformat(facts["end_date"])
    settings = Settings()
    results.rebuild_current(get_engine(settings), as_of - timedelta(days=1))
    with prefect_test_harness(server_startup_timeout=180), TreeRssSampler() as rss:
        m: dict = {}
        with rss.stage(m):
            summary = score_customers(as_of=as_of)
    customers = int(summary.get("customers_scored") or summary.get("rows_staged") or 0)
    return {"stages": [_stage_dict(f"daily flow end to end, task runner {facts['runner']}", m, customers, "customers",
                                   extra={"summary": summary})]}


def copy_floor(engine, scores, as_of: date, model_version: str, run_id: str) -> int:
    """Binary COPY of ``scores`` as customer_categories rows into a temp table; return rows copied.

    The row values are built from the frame the same way the write-back's COPY
    does, so the floor includes the Python side of a COPY, not only the server's.
    """
    import sqlalchemy as sa

    scored_at = datetime.now().astimezone()
    cols = ["company_id", "customer_id", "category", "p_good", "p_doubtful", "p_forgetful", "p_bad", "observed_category"]
    types = ["text", "text", "text", "float8", "float8", "float8", "float8", "text", "date", "text", "timestamptz", "text"]
    values = [scores[c].tolist() for c in cols]
    n = len(scores)
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(
            "CREATE TEMP TABLE bench_copy_floor (LIKE customer_categories INCLUDING DEFAULTS) ON COMMIT DROP"
        ))
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(
            "COPY bench_copy_floor (company_id, customer_id, category, p_good, p_doubtful, p_forgetful, p_bad, "
            "observed_category, as_of_date, model_version, scored_at, flow_run_id) FROM STDIN (FORMAT binary)"
        ) as copy:
            copy.set_types(types)
            for row in zip(*values):
                copy.write_row((*row, as_of, model_version, scored_at, run_id))
    return n


def child_train(facts: dict) -> dict:
    """One retrain: ``models.training.train`` as of the data's end date (snapshots, fit, holdout, registry)."""
    from models.training import train
    from payer_scoring.db import get_engine
    from payer_scoring.settings import Settings

    as_of = date.fromisoformat(facts["end_date"])
    settings = Settings()
    engine = get_engine(settings)
    with RssSampler() as rss:
        m: dict = {}
        with rss.stage(m):
            result = train(engine, as_of=as_of, settings=settings)
    rows = result.n_train + result.n_holdout
    return {
        "stages": [_stage_dict("retrain (models.training.train)", m, rows, "rows", extra={
            "n_train": result.n_train, "n_holdout": result.n_holdout, "seconds_by_step": result.seconds,
            "version": result.entry.version, "status": result.entry.status,
            "macro_f1": round(result.report["model"]["macro_f1"], 4),
        })],
        "process_ru_maxrss_mb": round(ru_maxrss_mb(), 1),
    }


def naive_features(bills, as_of: date, lean: bool = False):
    """The notebook way: per-customer :data:`NAIVE_FEATURES` with ``groupby().apply`` of a Python function.

    ``bills``: every row of ``payments`` as read by ``pd.read_sql``.  Dates and
    the paid-as-of-T column are converted once, column-wise (what a careful
    notebook does); the per-customer logic - matured, late, days past due, the
    3 most recently due matured bills - runs in the applied function.  Same
    definitions as the SQL for the default rules (due_date_dte, grace days,
    excluded statuses left out, paid = paid status and paid_at_dte <= T).
    ``lean``: the per-customer function works on NumPy arrays instead
    (:func:`_lean_per_customer`), the best a groupby-apply can do.
    """
    import numpy as np
    import pandas as pd

    from payer_scoring.rules import load_rules

    rules = load_rules()
    t = pd.Timestamp(as_of)
    grace = pd.Timedelta(days=rules.grace_days)
    b = bills[(pd.to_datetime(bills["issue_date_dte"]) <= t) & ~bills["payment_status"].isin(rules.excluded_statuses)]
    paid_at = pd.to_datetime(b["paid_at_dte"])
    b = pd.DataFrame({
        "company_id": b["company_id"], "customer_id": b["customer_id"],
        "due": pd.to_datetime(b["due_date_dte"]),
        "paid_on": paid_at.where(b["payment_status"].isin(rules.paid_statuses) & (paid_at <= t)),
    })

    def per_customer(g: pd.DataFrame) -> pd.Series:
        limit = g["due"] + grace
        matured = limit < t
        late = matured & (g["paid_on"].isna() | (g["paid_on"] > limit))
        dpd = (g["paid_on"].fillna(t) - g["due"]).dt.days.clip(lower=0)
        m = int(matured.sum())
        recent = pd.DataFrame({"due": g["due"], "dpd": dpd, "late": late})[matured]
        recent = recent.sort_values(["due", "dpd"], ascending=False).head(3)
        return pd.Series({
            "n_bills": len(g),
            "n_matured": m,
            "n_late": late.sum(),
            "late_share": late.sum() / m if m else 0.0,
            "dpd_mean_days": dpd[matured].mean() if m else 0.0,
            "dpd_max_days": dpd[matured].max() if m else 0.0,
            "recent3_late_share": recent["late"].mean() if m else 0.0,
            "recent3_dpd_mean_days": recent["dpd"].mean() if m else 0.0,
        })

    if lean:
        per_customer = _lean_per_customer(t, grace)
    out = b.groupby(["company_id", "customer_id"], sort=True).apply(per_customer, include_groups=False)
    return out.astype(np.float64)


def _lean_per_customer(t, grace):
    """The same per-customer function on NumPy arrays (a tuned notebook: no pandas objects inside the group)."""
    import numpy as np
    import pandas as pd

    t64 = np.datetime64(t.date(), "D")
    grace_days = np.timedelta64(grace.days, "D")

    def per_customer(g: pd.DataFrame) -> pd.Series:
        due = g["due"].to_numpy().astype("datetime64[D]")
        paid_on = g["paid_on"].to_numpy().astype("datetime64[D]")
        unpaid = np.isnat(paid_on)
        limit = due + grace_days
        matured = limit < t64
        late = matured & (unpaid | (paid_on > limit))
        dpd = np.maximum((np.where(unpaid, t64, paid_on) - due).astype(np.int64), 0)
        m = int(matured.sum())
        n_late = int(late.sum())
        if m:
            md, ml, mdue = dpd[matured], late[matured], due[matured]
            top = np.lexsort((-md, -mdue.astype(np.int64)))[:3]
            values = [len(due), m, n_late, n_late / m, md.mean(), md.max(), ml[top].mean(), md[top].mean()]
        else:
            values = [len(due), 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]
        return pd.Series(values, index=NAIVE_FEATURES)

    return per_customer


def child_naive(facts: dict) -> dict:
    """Time ``pd.read_sql`` of every bill and :func:`naive_features` (lean; and pandas with ``naive_pandas``).

    Each variant's features are checked against the SQL feature query's
    (count of customers whose values differ, expected 0).
    """
    import pandas as pd
    import sqlalchemy as sa

    from payer_scoring.db import get_engine
    from payer_scoring.features import extract_features
    from payer_scoring.rules import load_rules
    from payer_scoring.settings import Settings

    as_of = date.fromisoformat(facts["end_date"])
    settings = Settings()
    engine = get_engine(settings)
    variants = [("lean", True)] + ([("pandas", False)] if facts.get("naive_pandas") else [])
    stages = []
    with RssSampler() as rss:
        m_read: dict = {}
        with rss.stage(m_read), engine.connect() as conn:
            bills = pd.read_sql(sa.text("SELECT * FROM payments"), conn)
        n_bills = len(bills)
        stages.append(_stage_dict("naive: pd.read_sql of every bill", m_read, n_bills, "bills"))
        results = {}
        for label, lean in variants:
            m: dict = {}
            with rss.stage(m):
                results[label] = naive_features(bills, as_of, lean=lean)
            inside = "NumPy" if lean else "pandas"
            stages.append(_stage_dict(f"naive: groupby().apply, {inside} inside (8 features)", m, n_bills, "bills"))
            total = {"seconds": m_read["seconds"] + m["seconds"], "peak_rss_mb": max(m_read["peak_rss_mb"], m["peak_rss_mb"])}
            stages.append(_stage_dict(f"naive total ({inside} inside)", total, n_bills, "bills", extra={"variant": label}))
    del bills
    sql = extract_features(engine, as_of, load_rules(settings.rules_file), horizon_days=settings.horizon_days).set_index(["company_id", "customer_id"])
    sql_columns = ["n_bills", "n_matured_bills", "n_late", "late_share", "dpd_mean_days", "dpd_max_days",
                   "recent3_late_share", "recent3_dpd_mean_days"]  # = NAIVE_FEATURES, as the SQL names them
    for stage in stages:
        label = stage.get("extra", {}).get("variant")
        if label:
            naive = results[label]
            ours = sql.loc[naive.index, sql_columns].to_numpy()
            differ = int((abs(ours - naive.to_numpy()) > 1e-9).any(axis=1).sum())
            stage["extra"].update({"features": NAIVE_FEATURES, "customers": len(naive), "customers_differing_from_sql": differ})
    return {"stages": stages, "process_ru_maxrss_mb": round(ru_maxrss_mb(), 1)}


def bench_load(customers: int, seed: int) -> dict:
    """Time ``payer-scoring load payments`` (the CLI, as a user runs it) on a generated export of ``customers``.

    The export (payments.csv in the 39-column layout) is generated once into
    ``var/bench-csv/<size>/`` with the CLI's ``generate --csv`` and kept for
    later runs; it is loaded into an empty database ``payer_scoring_bench_load``
    (dropped afterwards), then loaded again (every row an upsert of an
    existing bill).  Returns the two stages (rows = data rows of the file).
    """
    import sqlalchemy as sa

    from payer_scoring import db as dbmod

    folder = ROOT / "var" / "bench-csv" / database_name(customers)
    done = folder / f".complete-seed-{seed}"
    cli = str(Path(sys.executable).parent / "payer-scoring")
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"export of {customers:,} customers: generating {folder / 'payments.csv'} ...", flush=True)
        subprocess.run([cli, "generate", "--customers", str(customers), "--seed", str(seed), "--csv", str(folder)], check=True, cwd=ROOT)
        done.touch()
    path = folder / "payments.csv"
    with path.open("rb") as fh:
        rows = sum(1 for _ in fh) - 1  # no embedded newlines in generated exports
    name = "payer_scoring_bench_load"
    admin, url = _urls(name)
    dbmod.drop_database(admin, name)
    dbmod.ensure_database(admin, name)
    dbmod.apply_migrations(dbmod._engine_for(url))
    env = {**os.environ, "DATABASE_URL": url}
    stages = []
    try:
        for label in ("load payments (CLI, export CSV)", "load payments again (CLI, every row an upsert)"):
            rejects = folder / "payments.rejects.csv"
            started = time.perf_counter()
            proc = subprocess.run([cli, "load", "payments", str(path), "--rejects", str(rejects)], env=env, cwd=ROOT,
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"load payments failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
            stages.append({"name": label, "seconds": round(seconds, 3), "rows": rows, "unit": "rows",
                           "peak_rss_mb": None, "extra": {"file_mb": round(path.stat().st_size / 1024**2, 1),
                                                          "last_line": (proc.stdout.strip().splitlines() or [""])[-1]}})
            print(f"  {label}: {rows:,} rows in {seconds:,.1f} s ({rows / seconds:,.0f} rows/s)", flush=True)
        engine = dbmod._engine_for(url)
        with engine.connect() as conn:
            loaded = conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one()
        engine.dispose()
        for st in stages:
            st["extra"]["bills_in_table"] = int(loaded)
    finally:
        dbmod._engine_for.cache_clear()
        dbmod.drop_database(admin, name)
    return {"stages": stages}


# --------------------------------------------------------------------------- orchestration
def machine() -> dict:
    """Cores, memory, load and server settings at the time of the run."""
    mem_kb = 0
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024**2, 1), "loadavg": list(os.getloadavg())}


def server_settings(url: str) -> dict:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    names = ["server_version", "shared_buffers", "work_mem", "max_parallel_workers_per_gather", "maintenance_work_mem"]
    with engine.connect() as conn:
        out = {n: conn.execute(sa.text(f"SHOW {n}")).scalar_one() for n in names}  # fixed list
    engine.dispose()
    return out


def bench_size(customers: int, seed: int, reuse: bool, naive_pandas: bool = False, load: bool = True,
               flows: tuple[str, ...] = ()) -> dict:
    """Everything measured for one size (see the module docstring)."""
    facts = prepare_database(customers, seed, reuse)
    result: dict[str, Any] = {k: v for k, v in facts.items() if k != "url"}
    result["server"] = server_settings(facts["url"])
    result["load_before"] = list(os.getloadavg())
    print(f"{facts['database']}: retrain ...", flush=True)
    train = run_child("train", facts)
    print(f"{facts['database']}: daily scoring run and floors ...", flush=True)
    score = run_child("score", facts)
    stages = score["stages"] + train["stages"]
    result.update({k: v for k, v in score.items() if k != "stages"})
    result["retrain_ru_maxrss_mb"] = train["process_ru_maxrss_mb"]
    by_name = {s["name"]: s for s in stages}
    features = by_name["feature query (sql/customer_features.sql)"]
    if customers <= 100_000:
        print(f"{facts['database']}: naive pandas groupby-apply ...", flush=True)
        naive = run_child("naive", {**facts, "naive_pandas": naive_pandas})
        stages += naive["stages"]
        naive_total = next(s for s in naive["stages"] if s.get("extra", {}).get("variant") == "lean")
        pandas_total = next((s for s in naive["stages"] if s.get("extra", {}).get("variant") == "pandas"), None)
        if pandas_total:
            result["speedup_vs_naive_pandas_inside"] = round(speedup(pandas_total["seconds"], features["seconds"]), 1)
        result["naive_ru_maxrss_mb"] = naive["process_ru_maxrss_mb"]
        result["speedup_vs_naive"] = round(speedup(naive_total["seconds"], features["seconds"]), 1)
        result["speedup_vs_naive_whole_daily_run"] = round(speedup(naive_total["seconds"], result["daily_total_seconds"]), 1)
    for runner in flows:
        print(f"{facts['database']}: the daily flow, task runner {runner} ...", flush=True)
        stages += run_child("flow", {**facts, "runner": runner})["stages"]
    if load:
        print(f"{facts['database']}: load payments from the export layout ...", flush=True)
        stages += bench_load(customers, seed)["stages"]
    result["load_after"] = list(os.getloadavg())
    objs = [_stage_obj(s) for s in stages]
    floors = {s.name: s for s in objs if s.name.startswith("floor:")}
    for s, obj in zip(stages, objs):
        s["rows_per_s"] = round(obj.rows_per_s, 1) if obj.rows_per_s else None
        ratio = floor_ratio(obj, floors)
        s["floor_ratio"] = round(ratio, 2) if ratio is not None else None
    result["features_vs_scan_floor"] = features["floor_ratio"]
    result["validation_vs_scan_floor"] = by_name["payments validation (GX in PostgreSQL)"]["floor_ratio"]
    result["stages"] = stages
    return result


def _stage_obj(s: dict) -> Stage:
    return Stage(name=s["name"], seconds=s["seconds"], rows=s["rows"], unit=s["unit"], peak_rss_mb=s.get("peak_rss_mb"),
                 floor=s.get("floor"), part_of_daily_run=bool(s.get("daily")))


def render(result: dict) -> str:
    """The printed/README block of one size: heading, table, total, speed-up and target verdicts."""
    objs = [_stage_obj(s) for s in result["stages"]]
    floors = {s.name: s for s in objs if s.name.startswith("floor:")}
    head = (f"### {result['customers']:,} customers, {result['bills']:,} bills "
            f"({result['database_bytes'] / 1024**3:.1f} GB database), as of {result['as_of']}")
    lines = [head, "", format_table(objs, floors), ""]
    lines.append(f"Daily scoring run end to end (sum of its stages): **{result['daily_total_seconds']:,.1f} s**, "
                 f"peak RSS {result['daily_peak_rss_mb']:,.0f} MB (ru_maxrss of the scoring process "
                 f"{result['process_ru_maxrss_mb']:,.0f} MB).")
    if result.get("speedup_vs_naive") is not None:
        lines.append(f"Speed-up of the feature query over the naive way (read_sql + groupby-apply, NumPy inside): "
                     f"**{result['speedup_vs_naive']:.0f}×** ({result['speedup_vs_naive_whole_daily_run']:.1f}× for the "
                     f"whole daily run, which also validates, predicts and writes)"
                     + (f"; {result['speedup_vs_naive_pandas_inside']:.0f}× over pandas inside the applied function."
                        if result.get("speedup_vs_naive_pandas_inside") else "."))
    lines += ["", *(f"* {v}" for v in verdicts(result))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated customer counts")
    parser.add_argument("--no-load", action="store_true", help="skip timing `load payments` on a generated export")
    parser.add_argument("--flows", default="",
                        help="comma-separated task runners to time the whole daily flow with, e.g. in-process,dask:1,dask:2")
    parser.add_argument("--flows-at", default="1000000", help="sizes at which --flows run (comma-separated)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reuse", action="store_true", help="reuse a benchmark database holding the same seed and size")
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark databases (default: drop them)")
    parser.add_argument("--naive-pandas", action="store_true",
                        help="also time the naive way with pandas objects inside the applied function (~10 min at 100k)")
    parser.add_argument("--child", choices=["score", "train", "naive", "flow"], help=argparse.SUPPRESS)
    parser.add_argument("--facts", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import payer_scoring  # noqa: F401  (telemetry off)

    if args.child:
        import logging

        logging.basicConfig(level=logging.WARNING)
        facts = json.loads(args.facts)
        result = {"score": child_score, "train": child_train, "naive": child_naive, "flow": child_flow}[args.child](facts)
        Path(args.out).write_text(json.dumps(result, default=str))
        return

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    for runner in (f for f in args.flows.split(",") if f.strip()):
        runner_env(runner)  # a wrong --flows stops here, not after minutes of generating and timing
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    run = {"date": date.today().isoformat(), "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
           "machine": machine(), "seed": args.seed, "targets": TARGETS, "sizes": []}
    try:
        for customers in sizes:
            flows_at = {int(x.replace("_", "")) for x in args.flows_at.split(",") if x.strip()}
            flows = tuple(f for f in args.flows.split(",") if f.strip()) if customers in flows_at else ()
            result = bench_size(customers, args.seed, args.reuse, args.naive_pandas, load=not args.no_load, flows=flows)
            run["sizes"].append(result)
            print("\n" + render(result) + "\n", flush=True)
        run["linearity"] = linearity(run["sizes"])
        if run["linearity"]:
            print("### Cost per customer across sizes\n\n" + format_linearity(run["linearity"]) + "\n", flush=True)
    finally:
        if not args.keep_db:
            from payer_scoring import db as dbmod

            for customers in sizes:
                admin, _ = _urls(database_name(customers))
                dbmod.drop_database(admin, database_name(customers))
    run["finished_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    run["machine"]["loadavg_end"] = list(os.getloadavg())
    text = json.dumps(run, indent=2, default=str)
    for path in (RESULTS_DIR / f"{run['date']}.json", RESULTS_DIR / "latest.json"):
        path.write_text(text + "\n")
    print(f"results: {RESULTS_DIR / (run['date'] + '.json')} and latest.json")


if __name__ == "__main__":
    main()
