"""Bad input of every kind: one line for the user, no valid row lost, no table changed (issue 12).

One module-scoped "world": 1,000 generated customers loaded from CSV files
through `load`, a champion, and one scoring run (so billing's current table is
filled).  Each case feeds one kind of bad input - a file, a mapping, a setting,
the rules, a suite, an artifact, a date, a concurrent writer, a kill - through
the command a user would type (or the flow, where the input is a file of the
checkout) and asserts:

* the user sees exactly one line (``error: ...`` on stderr for a command, no
  traceback; the exception's one-line message for a flow) matching the
  case's pattern;
* every table of the database has the same content afterwards (md5 of all
  rows of every table), so no valid row was lost and nothing billing reads
  changed.

README "Bad input" lists the same case ids (tests/unit/test_bad_input_readme.py
keeps them in step).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import pytest
import sqlalchemy as sa

from payer_scoring.settings import PROJECT_ROOT, get_settings

pytestmark = pytest.mark.slow

CUSTOMERS = 1_000
START = date(2024, 7, 1)
MONTHS = 18
DATA_TODAY = date(2026, 1, 31)  # the generated data end here (well before the real today)
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


@dataclass
class World:
    engine: sa.Engine
    files: Path  # payments.csv, companies.csv as loaded
    as_of: date  # the scoring run's as-of (the data's last date)
    last_data_date: date
    champion: str
    cli: list[str]
    tmp: Path


def _fingerprint(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """{table: (rows, md5 of all rows in a fixed order)} for every table of the public schema."""
    out = {}
    with engine.connect() as conn:
        tables = conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars().all()
        for t in tables:
            rows, digest = conn.execute(
                sa.text(f'SELECT count(*), md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) FROM "{t}" x')
            ).one()
            out[t] = (rows, digest)
    return out


@pytest.fixture(scope="module")
def world(engine, prefect_harness, cli, tmp_path_factory) -> World:
    from flows.daily_scoring import score_customers
    from models.training import data_bounds, train
    from payer_scoring.generator import GeneratorConfig, generate_to_csv
    from payer_scoring.loading import load_companies_file, load_payments_file

    with engine.begin() as conn:
        tables = conn.execute(
            sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        ).scalars().all()
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    tmp = tmp_path_factory.mktemp("bad_input")
    files = tmp / "export"
    generate_to_csv(GeneratorConfig(customers=CUSTOMERS, seed=7, start=START, months=MONTHS), files, today=DATA_TODAY)
    load_payments_file(engine, files / "payments.csv", rejects_path=tmp / "payments.rejects.csv")
    load_companies_file(engine, files / "companies.csv", rejects_path=tmp / "companies.rejects.csv")
    last = data_bounds(engine)[1]
    result = train(engine, last, settings=get_settings())
    assert result.entry.status == "champion"
    summary = score_customers(as_of=None)
    assert summary["as_of"] in (last, str(last))
    return World(engine, files, last, last, result.entry.version, cli, tmp)


# ---------------------------------------------------------------- how a case is run
def _env(extra: dict | None = None, drop: tuple[str, ...] = ()) -> dict:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
    for name in drop:
        env.pop(name, None)
    env.update(extra or {})
    return env


def cli_error(w: World, *args: str, env: dict | None = None, drop: tuple[str, ...] = (), real_process: bool = False) -> str:
    """Run ``payer-scoring ARGS``; assert exit 1, no traceback, one ``error:`` line and nothing else but log lines; return it.

    In this process through Click's runner (the same command code, settings
    read from the environment it is given), or with ``real_process`` as the
    installed console command in a child process.
    """
    if real_process:
        out = subprocess.run([*w.cli, *args], capture_output=True, text=True, env=_env(env, drop), timeout=300, cwd=w.tmp)
        code, stderr, stdout = out.returncode, out.stderr, out.stdout
    else:
        from typer.testing import CliRunner

        from entrypoints.cli import app

        overrides: dict[str, str | None] = {**(env or {}), **{name: None for name in drop}}
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, list(args), env=overrides, catch_exceptions=True)
        finally:
            get_settings.cache_clear()
        assert isinstance(result.exception, SystemExit), f"{result.exception!r}\n{result.output[-3000:]}"
        code, stderr, stdout = result.exit_code, result.stderr, result.stdout
    assert code == 1, f"exit {code}\n{stdout}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def flow_error(exc_types, fn: Callable[[], object]) -> str:
    """Run ``fn`` (a flow call); assert it raises one of ``exc_types``; return the message (one line)."""
    with pytest.raises(exc_types) as err:
        fn()
    return str(err.value)


def _payments_lines(w: World, n: int | None = None) -> list[str]:
    lines = (w.files / "payments.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    return lines if n is None else lines[:n]


def _write(w: World, name: str, text: str | bytes) -> Path:
    path = w.tmp / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _latin1_payments(w: World) -> Path:
    """The first 6 bills with an accented customer name on line 3, encoded as Latin-1."""
    lines = _payments_lines(w, 7)
    header = lines[0].rstrip("\n").split(",")
    fields = lines[2].rstrip("\n").split(",")
    fields[header.index("customer_name")] = "Jos\u00e9 Concei\u00e7\u00e3o"
    lines[2] = ",".join(fields) + "\n"
    return _write(w, "latin1.csv", "".join(lines).encode("latin-1"))


def _suite_copy(w: World, suite: str, change: Callable[[dict], None] | None = None, text: str | None = None) -> Path:
    folder = w.tmp / f"suites-{suite}-{time.monotonic_ns()}"
    shutil.copytree(PROJECT_ROOT / "expectations", folder)
    path = folder / f"{suite}.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    else:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, indent=2))
    return folder


def _exp(data: dict, name: str) -> dict:
    return next(e for e in data["expectations"] if e["meta"]["name"] == name)


def _score_with_suites(w: World, folder: Path, monkeypatch) -> str:
    from flows.daily_scoring import score_customers
    from payer_scoring import validation

    monkeypatch.setattr(validation, "EXPECTATIONS_DIR", folder)
    return flow_error(validation.SuiteError, lambda: score_customers(as_of=w.as_of))


def _rules_copy(w: World, old: str | None, new: str | None, raw: str | None = None) -> Path:
    path = w.tmp / f"rules-{time.monotonic_ns()}.toml"
    body = (PROJECT_ROOT / "config" / "rules.toml").read_text()
    path.write_text(raw if raw is not None else body.replace(old, new), encoding="utf-8")
    return path


def _artifact(w: World) -> Path:
    with w.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT artifact_path FROM model_registry WHERE version = :v"), {"v": w.champion}).scalar_one()
    path = Path(stored)
    return path if path.is_absolute() else get_settings().model_store / path


def _with_artifact_changed(w: World, change: Callable[[Path], None], run: Callable[[], str]) -> str:
    path = _artifact(w)
    saved = w.tmp / "artifact.saved"
    shutil.copy2(path, saved)
    try:
        change(path)
        return run()
    finally:
        shutil.copy2(saved, path)


def _concurrent_writer(w: World, monkeypatch) -> str:
    """Another run holds the results write lock: this one waits 1 s, then fails with nothing written."""
    from flows.daily_scoring import score_customers
    from payer_scoring.results import WRITE_LOCK_KEY, WriteLockBusy

    monkeypatch.setenv("PAYER_SCORING_WRITE_LOCK_WAIT_SECONDS", "1")
    get_settings.cache_clear()
    with w.engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": WRITE_LOCK_KEY})
        try:
            return flow_error(WriteLockBusy, lambda: score_customers(as_of=w.as_of))
        finally:
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": WRITE_LOCK_KEY})
            holder.commit()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_score_leaves_no_server(w: World) -> str:
    """SIGKILL `payer-scoring score` once its temporary Prefect server runs; that server must exit too."""
    env = _env({"PREFECT_HOME": str(w.tmp / f"prefect-home-{time.monotonic_ns()}")}, drop=("PREFECT_API_URL",))
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([*w.cli, "score"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=w.tmp)
    server = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and server is None and proc.poll() is None:
            for kid in _children(proc.pid):
                try:
                    if b"uvicorn" in Path(f"/proc/{kid}/cmdline").read_bytes():
                        server = kid
                except OSError:
                    pass
            time.sleep(0.2)
        assert server is not None, "the command never started a temporary Prefect server"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        gone_by = time.monotonic() + 30
        while _alive(server) and time.monotonic() < gone_by:
            time.sleep(0.2)
        survived = _alive(server)
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)
    assert not survived, f"temporary Prefect server {server} survived its SIGKILLed command"
    return f"killed: temporary Prefect server {server} exited with its command"


def _kill_load_keeps_payments_and_report(w: World) -> str:
    """SIGKILL `load payments` half-way through its file (a FIFO): payments and the earlier rejects report unchanged."""
    fifo = w.tmp / f"half-{time.monotonic_ns()}.csv"
    os.mkfifo(fifo)
    report = w.tmp / "kept.rejects.csv"
    report.write_text("file,line,column,value,expected,kind\nearlier.csv,7,paid_amount,x,number,reject\n")
    before = report.read_text()
    proc = subprocess.Popen([*w.cli, "load", "payments", str(fifo), "--rejects", str(report)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=w.tmp)
    lines = _payments_lines(w)
    opened = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "w", encoding="utf-8") as fh:
                opened.set()
                fh.writelines(lines[: len(lines) // 2])
                fh.flush()
                time.sleep(3)  # the loader has staged rows when it is killed
                proc.send_signal(signal.SIGKILL)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    writer.join(240)
    proc.wait(20)
    assert opened.is_set() and proc.returncode == -signal.SIGKILL
    assert report.read_text() == before, "the rejects report of the earlier load was overwritten"
    return "killed: load payments left payments and the earlier rejects report unchanged"


# ---------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # files, mappings, settings, rules, suites, artifacts, dates, database, concurrency, kills
    expect: str  # regex the one line must match
    run: Callable


def _mapping(w: World, text: str) -> Path:
    return _write(w, f"mapping-{time.monotonic_ns()}.yaml", text)


CASES: list[Case] = [
    # ---- files (load payments / load companies)
    Case("payments-file-missing", "files", r"error: .*nowhere\.csv: file not found",
         lambda w, mp: cli_error(w, "load", "payments", str(w.tmp / "nowhere.csv"))),
    Case("payments-file-is-a-folder", "files", r"is a folder, expected a CSV file",
         lambda w, mp: cli_error(w, "load", "payments", str(w.tmp))),
    Case("payments-file-empty", "files", r"empty\.csv: empty file, expected a header line",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "empty.csv", "")))),
    Case("payments-file-latin-1", "files", r"latin1\.csv line 3: not utf-8 text .*--encoding latin-1",
         lambda w, mp: cli_error(w, "load", "payments", str(_latin1_payments(w)), real_process=True)),
    Case("payments-file-unknown-encoding", "files", r"--encoding klingon: unknown text encoding",
         lambda w, mp: cli_error(w, "load", "payments", str(w.files / "payments.csv"), "--encoding", "klingon")),
    Case("payments-file-semicolons", "files", r"semi\.csv: the header is one column holding 39 names separated by ';' \(semicolon-delimited\?\)",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "semi.csv", "".join(l.replace(",", ";") for l in _payments_lines(w, 5)))))),
    Case("payments-file-tabs", "files", r"tabs\.csv: .*'\t' \(tab-delimited\?\)",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "tabs.csv", "".join(l.replace(",", "\t") for l in _payments_lines(w, 5)))))),
    Case("payments-file-missing-column", "files", r"missing column\(s\) of the payments export layout: billing_amount",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "nocol.csv", "".join(
             l.replace(",billing_amount,", ",billing_amount_x,") for l in _payments_lines(w, 3)))))),
    Case("payments-file-header-twice", "files", r"column\(s\) named twice in the header: company_id",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "twice.csv", "".join(
             [_payments_lines(w, 1)[0].rstrip("\n") + ",company_id\n"]))))),
    Case("payments-file-broken-quote", "files", r"quote\.csv line \d+: malformed CSV",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "quote.csv", "".join(_payments_lines(w, 3)) + '"abc,"def\n"x"y",1\n')))),
    Case("payments-file-too-many-rejects", "files", r"rows rejected .* allowed; first: line 2, column issue_date_dte '2025-13-45'",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "bad_dates.csv", "".join(
             [_payments_lines(w, 1)[0]] + [re.sub(r"\d{4}-\d{2}-\d{2}", "2025-13-45", l, count=1) for l in _payments_lines(w, 40)[1:]])))),
    ),
    Case("payments-file-wrong-field-count", "files", r"rows rejected .* first: line 2, column \(row\) '3 fields', expected 39 fields",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "short.csv", _payments_lines(w, 1)[0] + "a,b,c\n" * 5)))),
    Case("rejects-path-under-a-file", "files", r"cannot write the rejects report .*: a parent of it is a file, not a folder",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "ok.csv", "".join(_payments_lines(w, 3)))),
                                 "--rejects", str(_write(w, "plain-file", "x") / "sub" / "r.csv"))),
    Case("rejects-path-is-a-folder", "files", r"cannot write the rejects report .*is a folder",
         lambda w, mp: cli_error(w, "load", "payments", str(_write(w, "ok2.csv", "".join(_payments_lines(w, 3)))), "--rejects", str(w.tmp))),
    Case("companies-header-only", "files", r"no company rows to load; the previous snapshot of [\d,]+ rows is kept",
         lambda w, mp: cli_error(w, "load", "companies", str(_write(w, "companies_empty.csv",
                                                                       (w.files / "companies.csv").read_text().splitlines(keepends=True)[0])), real_process=True)),
    Case("companies-shrinks-by-more-than-half", "files", r"\d+ rows would replace a snapshot of [\d,]+ .*more than 50% allowed.*--allow-shrink",
         lambda w, mp: cli_error(w, "load", "companies", str(_write(w, "companies_few.csv", "".join(
             (w.files / "companies.csv").read_text().splitlines(keepends=True)[:2]))))),
    Case("companies-missing-column", "files", r"missing column\(s\) of the company profiling export: growth_rate",
         lambda w, mp: cli_error(w, "load", "companies", str(_write(w, "companies_nocol.csv",
                                                                       (w.files / "companies.csv").read_text().replace("growth_rate", "growth"))))),
    # ---- mappings
    Case("mapping-file-missing", "mappings", r"nomap\.yaml: mapping file not found",
         lambda w, mp: cli_error(w, "load", "payments", str(w.files / "payments.csv"), "--mapping", str(w.tmp / "nomap.yaml"))),
    Case("mapping-broken-yaml", "mappings", r"not valid YAML at line \d+",
         lambda w, mp: cli_error(w, "load", "payments", str(w.files / "payments.csv"), "--mapping", str(_mapping(w, "columns:\n  a: [b\n")))),
    Case("mapping-not-a-mapping", "mappings", r"mapping-\d+\.yaml: ",
         lambda w, mp: cli_error(w, "load", "payments", str(w.files / "payments.csv"), "--mapping", str(_mapping(w, "- just\n- a list\n")))),
    Case("mapping-uci-on-export-file", "mappings", r"missing column\(s\) named in .*uci_credit_card_taiwan\.yaml",
         lambda w, mp: cli_error(w, "load", "payments", str(w.files / "payments.csv"), "--mapping",
                                 str(PROJECT_ROOT / "examples" / "mappings" / "uci_credit_card_taiwan.yaml"))),
    # ---- settings
    Case("database-url-no-scheme", "settings", r"DATABASE_URL postgres//bad url: not a PostgreSQL URL",
         lambda w, mp: cli_error(w, "score", env={"DATABASE_URL": "postgres//bad url"}, real_process=True)),
    Case("database-url-bad-port", "settings", r"DATABASE_URL postgresql\+psycopg://u:\*\*\*@h:notaport/db: cannot be read",
         lambda w, mp: cli_error(w, "score", env={"DATABASE_URL": "postgresql://u:secret@h:notaport/db"})),
    Case("database-url-mysql", "settings", r"DATABASE_URL mysql://u:\*\*\*@h/db: not a PostgreSQL URL",
         lambda w, mp: cli_error(w, "evaluate", env={"DATABASE_URL": "mysql://u:secret@h/db"})),
    Case("database-name-typo", "settings", r"database payer_scorng_typo does not exist on the embedded server",
         lambda w, mp: _database_typo(w)),
    Case("database-name-invalid", "settings", r"database name 'Payer-Scoring': expected lower-case letters",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_DATABASE_NAME": "Payer-Scoring"}, drop=("DATABASE_URL",))),
    Case("timezone-unknown", "settings", r"PAYER_SCORING_TIMEZONE=Mars/Olympus: .*not an IANA timezone",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_TIMEZONE": "Mars/Olympus"})),
    Case("horizon-not-a-number", "settings", r"PAYER_SCORING_HORIZON_DAYS=ninety: ",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_HORIZON_DAYS": "ninety"})),
    Case("reject-share-above-one", "settings", r"PAYER_SCORING_REJECT_SHARE_MAX=2: ",
         lambda w, mp: cli_error(w, "load", "payments", str(w.files / "payments.csv"), env={"PAYER_SCORING_REJECT_SHARE_MAX": "2"})),
    Case("horizon-differs-from-champion-score", "settings", r"horizon_days 30 \(PAYER_SCORING_HORIZON_DAYS\) differs from the champion's 90",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_HORIZON_DAYS": "30"})),
    Case("horizon-differs-from-champion-evaluate", "settings", r"horizon_days 1 \(PAYER_SCORING_HORIZON_DAYS\) differs from the champion's 90",
         lambda w, mp: cli_error(w, "evaluate", env={"PAYER_SCORING_HORIZON_DAYS": "1"})),
    # ---- rules
    Case("rules-file-missing", "rules", r"norules\.toml: cannot read the rules file",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_RULES_FILE": str(w.tmp / "norules.toml")})),
    Case("rules-file-not-toml", "rules", r"rules-\d+\.toml: ",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_RULES_FILE": str(_rules_copy(w, None, None, raw="[statuses\npaid = 1"))})),
    Case("rules-differ-from-champion", "rules", r"rules version [0-9a-f]{12} \(PAYER_SCORING_RULES_FILE\) differs from the champion's [0-9a-f]{12}",
         lambda w, mp: cli_error(w, "score", env={"PAYER_SCORING_RULES_FILE": str(_rules_copy(w, "grace_days = 0", "grace_days = 3"))})),
    # ---- suites (the flow loads every suite strictly before it reads anything)
    Case("suite-unknown-expectation-type", "suites", r"payments\.json: expectation #\d+ \(payments_not_empty\): unknown expectation type 'expect_table_row_count_to_be_somewhere'",
         lambda w, mp: _score_with_suites(w, _suite_copy(w, "payments", lambda d: _exp(d, "payments_not_empty").update(type="expect_table_row_count_to_be_somewhere")), mp)),
    Case("suite-misspelled-type", "suites", r"payments\.json: expectation #\d+ \(billing_amount_not_negative\): unknown expectation type 'expect_column_values_to_be_betwen'",
         lambda w, mp: _score_with_suites(w, _suite_copy(w, "payments", lambda d: _exp(d, "billing_amount_not_negative").update(type="expect_column_values_to_be_betwen")), mp)),
    Case("suite-missing-severity", "suites", r"customer_scores\.json: expectation #\d+ \(.+\): meta needs name, severity \(critical\|warning\) and risk",
         lambda w, mp: _score_with_suites(w, _suite_copy(w, "customer_scores", lambda d: d["expectations"][0]["meta"].pop("severity")), mp)),
    Case("suite-broken-json", "suites", r"customer_features\.json line 1 column \d+: broken JSON",
         lambda w, mp: _score_with_suites(w, _suite_copy(w, "customer_features", text='{"name": "customer_features", "expectations": [}'), mp)),
    Case("suite-bad-kwargs-dropped", "suites", r"payments\.json: expectation #\d+ \(payments_not_empty\): invalid kwargs .*min_valu",
         lambda w, mp: _score_with_suites(w, _suite_copy(w, "payments", lambda d: _exp(d, "payments_not_empty")["kwargs"].update(min_valu=1)), mp)),
    # ---- artifacts
    Case("artifact-tampered", "artifacts", r"artifact .* has sha256 .*refusing to load it",
         lambda w, mp: _with_artifact_changed(w, lambda p: p.write_bytes(p.read_bytes() + b"x"), lambda: cli_error(w, "score"))),
    Case("artifact-missing", "artifacts", r"cannot read artifact",
         lambda w, mp: _with_artifact_changed(w, lambda p: p.unlink(), lambda: cli_error(w, "score"))),
    # ---- dates
    Case("score-as-of-2999", "dates", r"as-of 2999-01-01 is after tomorrow \(\d{4}-\d{2}-\d{2}, PAYER_SCORING_TIMEZONE\)",
         lambda w, mp: cli_error(w, "score", "--as-of", "2999-01-01", real_process=True)),
    Case("score-as-of-far-beyond-data", "dates", r"as-of \d{4}-\d{2}-\d{2} is \d+ days after the data's last date \d{4}-\d{2}-\d{2} \(at most 31",
         lambda w, mp: cli_error(w, "score", "--as-of", str(w.last_data_date + timedelta(days=60)))),
    Case("score-as-of-impossible-date", "dates", r"--as-of 2026-02-30: expected an existing calendar date as YYYY-MM-DD",
         lambda w, mp: cli_error(w, "score", "--as-of", "2026-02-30")),
    Case("retrain-as-of-2999", "dates", r"as-of 2999-01-01 is after tomorrow",
         lambda w, mp: cli_error(w, "retrain", "--as-of", "2999-01-01")),
    Case("train-as-of-2999", "dates", r"as-of 2999-01-01 is after tomorrow",
         lambda w, mp: cli_error(w, "train", "--as-of", "2999-01-01")),
    Case("evaluate-as-of-far-beyond-data", "dates", r"days after the data's last date",
         lambda w, mp: cli_error(w, "evaluate", "--as-of", str(w.last_data_date + timedelta(days=200)))),
    Case("score-flow-as-of-2999", "dates", r"as-of 2999-01-01 is after tomorrow",
         lambda w, mp: _flow_future(w)),
    # ---- database
    Case("database-without-payments", "database", r"database payer_scoring_empty_\d+ has no payments: load or generate data first",
         lambda w, mp: _empty_database(w)),
    # ---- concurrency
    Case("concurrent-results-writer", "concurrency", r"another score-customers run .* is still writing customer_categories after 1 s; nothing was written",
         lambda w, mp: _concurrent_writer(w, mp)),
    # ---- kills
    Case("sigkill-load-payments", "kills", r"^killed: load payments left payments and the earlier rejects report unchanged$",
         lambda w, mp: _kill_load_keeps_payments_and_report(w)),
    Case("sigkill-score-prefect-server", "kills", r"^killed: temporary Prefect server \d+ exited with its command$",
         lambda w, mp: _kill_score_leaves_no_server(w)),
]


def _admin_url(w: World) -> str:
    return w.engine.url.set(database="postgres").render_as_string(hide_password=False)


def _database_typo(w: World) -> str:
    """PAYER_SCORING_DATABASE_NAME with a typo on the embedded server: refused, and no database created."""
    from payer_scoring.db import database_exists

    pgdata = str(get_settings().pgdata.expanduser().resolve())
    if pgdata not in w.engine.url.render_as_string(hide_password=True).replace("%2F", "/"):
        pytest.skip("the session does not use the embedded server")
    line = cli_error(w, "score", env={"PAYER_SCORING_DATABASE_NAME": "payer_scorng_typo"}, drop=("DATABASE_URL",), real_process=True)
    assert not database_exists(_admin_url(w), "payer_scorng_typo")
    return line


def _empty_database(w: World) -> str:
    from payer_scoring.db import drop_database, ensure_database

    name = f"payer_scoring_empty_{os.getpid()}"
    admin = _admin_url(w)
    ensure_database(admin, name)
    try:
        url = w.engine.url.set(database=name).render_as_string(hide_password=False)
        return cli_error(w, "score", env={"DATABASE_URL": url})
    finally:
        drop_database(admin, name)


def _flow_future(w: World) -> str:
    from flows.daily_scoring import score_customers
    from payer_scoring.asof import AsOfError

    return flow_error(AsOfError, lambda: score_customers(as_of=date(2999, 1, 1)))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(case: Case, world: World, monkeypatch):
    monkeypatch.chdir(world.tmp)  # default rejects reports land here, not in the checkout
    before = _fingerprint(world.engine)
    line = case.run(world, monkeypatch)
    get_settings.cache_clear()
    assert "\n" not in line and "Traceback" not in line
    assert re.search(case.expect, line), line
    if os.environ.get("BAD_INPUT_LOG"):  # the lines users see, for README "Bad input" and the issue note
        with open(os.environ["BAD_INPUT_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{case.id}\t{case.kind}\t{line}\n")
    assert "datetime.date(" not in line and "PosixPath(" not in line  # no Python reprs
    after = _fingerprint(world.engine)
    changed = sorted(t for t in before if before[t] != after.get(t))
    assert not changed, f"tables changed: {changed}"
    assert after["payments"][0] == before["payments"][0]  # no valid row lost


def test_cases_cover_every_kind_and_are_forty_or_more():
    kinds = {c.kind for c in CASES}
    assert {"files", "mappings", "settings", "rules", "suites", "artifacts", "dates", "concurrency", "kills"} <= kinds
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- the repair of a frozen billing view
def test_rebuild_current_repairs_the_view_a_future_as_of_froze(world: World, monkeypatch):
    """Issue 12 #1: a 2999 run (only possible with the override now) freezes current rows; rebuild-current repairs them."""
    from typer.testing import CliRunner

    from entrypoints.cli import app
    from flows.daily_scoring import score_customers

    def table(name: str) -> tuple[int, str]:
        return _fingerprint(world.engine)[name]

    before = {t: table(t) for t in ("customer_categories", "customer_category_history")}
    monkeypatch.setenv("PAYER_SCORING_ALLOW_FUTURE_AS_OF", "true")
    score_customers(as_of=date(2999, 1, 1))
    monkeypatch.delenv("PAYER_SCORING_ALLOW_FUTURE_AS_OF")
    with world.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT DISTINCT as_of_date FROM customer_categories")).scalars().all() == [date(2999, 1, 1)]
    frozen = score_customers(as_of=world.as_of)  # the daily run can no longer replace them: newest wins
    assert frozen["current_rows_kept_newer"] == before["customer_categories"][0]

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["results", "rebuild-current", "--as-of", str(world.as_of)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = before["customer_categories"][0]
    assert summary["current_removed"] == rows and summary["current_written"] == rows
    assert summary["history_removed"] == rows and summary["newest_as_of_before"] == "2999-01-01"
    # byte-identical to before the bad run: same rows, same scored_at / flow_run_id (taken from history)
    assert {t: table(t) for t in before} == before
