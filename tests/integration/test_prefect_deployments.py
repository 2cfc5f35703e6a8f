"""A real local Prefect server: deploy prefect.yaml, trigger both deployments,
and run them to Completed through a process worker (as `make prefect` does)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: int = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"Prefect server exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"Prefect server not healthy after {seconds}s: {log.read_text()[-2000:]}")


def _prefect(env: dict, *args: str, timeout: int = 300) -> str:
    done = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_deploy_both_deployments_and_run_them_through_a_worker(clean_db, tmp_path):
    from payer_scoring.generator import GeneratorConfig, generate_to_database
    from payer_scoring.rules import load_rules

    as_of = date.today()
    from payer_scoring.settings import get_settings

    generate_to_database(clean_db, GeneratorConfig(customers=2_000, seed=11, start=None, months=18, drift_at=None),
                         today=get_settings().today())

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PAYER_SCORING_HOME": str(ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    server_log = tmp_path / "server.log"
    worker_log = tmp_path / "worker.log"
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        _wait_healthy(f"{api}/health", server, server_log)
        _prefect(env, "work-pool", "create", "payer-scoring-pool", "--type", "process", "--overwrite")
        _prefect(env, "--no-prompt", "deploy", "--all")
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "payer-scoring-pool", "--type", "process"],
            cwd=tmp_path, env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
        )
        # The weekly retrain with force=true trains the first champion; the daily run then scores.
        for deployment, params in (
            ("retrain-on-drift/weekly-retrain", ["--param", "force=true", "--param", f"as_of={as_of}"]),
            ("score-customers/daily-scoring", ["--param", f"as_of={as_of}"]),
        ):
            out = _prefect(env, "deployment", "run", deployment, *params)
            run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
            state = _wait_for_final_state(env, run_id, worker, worker_log)
            assert state == "COMPLETED", f"{deployment} ended {state}:\n{worker_log.read_text()[-4000:]}"
    finally:
        for proc in (worker, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    with clean_db.connect() as conn:
        scored = conn.execute(sa.text("SELECT count(*), min(as_of_date), max(as_of_date) FROM customer_categories")).one()
        # every customer with a bill issued by as_of, even one whose every bill is cancelled (issue 11)
        customers = conn.execute(
            sa.text("SELECT count(DISTINCT (company_id, customer_id)) FROM payments WHERE issue_date_dte <= :d"),
            {"d": as_of},
        ).scalar_one()
        champions = conn.execute(sa.text("SELECT count(*) FROM model_registry WHERE status = 'champion'")).scalar_one()
    assert champions == 1
    assert scored == (customers, as_of, as_of)


def _wait_for_final_state(env: dict, run_id: str, worker: subprocess.Popen, worker_log: Path, seconds: int = 600) -> str:
    code = (
        "import sys, asyncio\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        r = await c.read_flow_run(sys.argv[1])\n"
        "        print(r.state.type.value if r.state else 'NONE')\n"
        "asyncio.run(main())\n"
    )
    deadline = time.monotonic() + seconds
    state = "NONE"
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited: {worker_log.read_text()[-3000:]}")
        state = subprocess.run([sys.executable, "-c", code, run_id], env=env, capture_output=True, text=True).stdout.strip()
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return state
        time.sleep(3)
    return f"still {state} after {seconds}s"
