"""Operations against a real local Prefect server (README "Operations").

One server, one story, in the order an operator meets it:

1. after the deploy step, `payer-scoring prefect setup` (run twice: idempotent)
   leaves exactly the project's three automations and the webhook block;
2. a daily run without a champion fails -> exactly one notification reaches
   the webhook receiver this test runs on 127.0.0.1;
3. the weekly retrain trains the first champion; its logs, read back through
   the API, hold the project's own lines (flows and models loggers) and its
   name agrees with its as-of;
4. a daily run whose worker and flow process are SIGKILLed together (a host
   crash) is marked Crashed by the zombie automation (heartbeat every 30 s,
   zombie after 60 s here) and that crash is notified once;
5. the next daily run then gets the concurrency slot and completes, with the
   project's lines (payer_scoring.results, flows) in its logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from test_prefect_deployments import BIN, ROOT, _free_port, _prefect, _wait_healthy  # noqa: E402

HEARTBEAT_SECONDS = 30  # Prefect's minimum
ZOMBIE_AFTER_SECONDS = 60


class _Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body it is POSTed."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, run_id: str) -> list[dict]:
        return [m for m in self.received if run_id in json.dumps(m)]


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc), so a whole tree can be killed at once."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


class _RetryTransport(httpx.HTTPTransport):
    """Retry what Prefect's own client retries: 429/502/503 (the server answers 503
    when its database is momentarily busy, e.g. on 2 loaded cores), with backoff."""

    RETRY_STATUS = {429, 502, 503}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(6):
            response = super().handle_request(request)
            if response.status_code not in self.RETRY_STATUS or attempt == 5:
                return response
            response.close()
            time.sleep(min(2 ** attempt, 10))
        raise AssertionError("unreachable")


class _Api:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, transport=_RetryTransport())

    def run(self, deployment: str, **parameters) -> dict:
        dep = self.http.get(f"/deployments/name/{deployment}").raise_for_status().json()
        # an idempotency key makes a retried POST return the run the first one created
        body = {"parameters": parameters, "idempotency_key": f"test-{time.monotonic_ns()}"}
        return self.http.post(f"/deployments/{dep['id']}/create_flow_run", json=body).raise_for_status().json()

    def flow_run(self, run_id: str) -> dict:
        return self.http.get(f"/flow_runs/{run_id}").raise_for_status().json()

    def wait_state(self, run_id: str, states: set[str], seconds: float, log: Path) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"] and run["state"]["type"] in states:
                return run
            time.sleep(1)
        raise AssertionError(f"run {run_id} still {run['state'] and run['state']['type']} after {seconds}s:\n{log.read_text()[-3000:]}")

    def logs(self, run_id: str, seconds: float = 60) -> list[dict]:
        """Every log line of an ended run (the API returns at most 200 per page).

        The run's process ships its log lines in batches, after the run's state
        may already read Completed: wait until its last line (the engine's
        "Finished in state ...") is stored; the queue is sent in order, so every
        earlier line is stored by then.
        """
        deadline = time.monotonic() + seconds
        while True:
            lines: list[dict] = []
            while True:
                body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": len(lines), "sort": "TIMESTAMP_ASC"}
                page = self.http.post("/logs/filter", json=body).raise_for_status().json()
                lines.extend(page)
                if len(page) < 200:
                    break
            if any(line["name"] == "prefect.flow_runs" and line["message"].startswith("Finished in state") for line in lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id}: its final log line did not arrive within {seconds}s ({len(lines)} lines)")
            time.sleep(1)

    def heartbeats(self, run_id: str) -> int:
        body = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                           "resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 5}
        return len(self.http.post("/events/filter", json=body).raise_for_status().json()["events"])


@pytest.mark.slow
def test_automations_zombie_crash_recovery_alerts_and_run_logs(clean_db, tmp_path):
    from payer_scoring.generator import GeneratorConfig, generate_to_database
    from payer_scoring.settings import get_settings

    today = get_settings().today()
    generate_to_database(clean_db, GeneratorConfig(customers=1_500, seed=5, start=None, months=18, drift_at=None), today=today)
    receiver = _Receiver()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api_url,
        "PAYER_SCORING_HOME": str(ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        "PAYER_SCORING_ZOMBIE_AFTER_SECONDS": str(ZOMBIE_AFTER_SECONDS),
        "PAYER_SCORING_ALERT_WEBHOOK_URL": receiver.url,
    }
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT,
    )
    workers: list[subprocess.Popen] = []

    def start_worker() -> subprocess.Popen:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "payer-scoring-pool", "--type", "process"],
            cwd=tmp_path, env=env, stdout=worker_log.open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        workers.append(worker)
        return worker

    api = _Api(api_url)
    try:
        _wait_healthy(f"{api_url}/health", server, server_log)
        _prefect(env, "work-pool", "create", "payer-scoring-pool", "--type", "process", "--overwrite")
        _prefect(env, "--no-prompt", "deploy", "--all")
        for _ in range(2):  # idempotent: the second run updates in place
            done = subprocess.run([str(BIN / "payer-scoring"), "prefect", "setup"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr

        # 1. the automations exist, once each, and alert through the webhook block
        automations = api.http.post("/automations/filter", json={}).raise_for_status().json()
        ours = {a["name"]: a for a in automations if a["name"].startswith("payer-scoring:")}
        assert sorted(ours) == sorted([
            "payer-scoring: crash zombie runs",
            "payer-scoring: alert on failed, crashed or late runs",
            "payer-scoring: daily-scoring not completed by deadline",
        ]), [a["name"] for a in automations]
        assert len(automations) == 3
        zombie = ours["payer-scoring: crash zombie runs"]
        assert zombie["trigger"]["posture"] == "Proactive" and zombie["trigger"]["within"] == ZOMBIE_AFTER_SECONDS
        assert [a["type"] for a in zombie["actions"]] == ["change-flow-run-state"]
        assert zombie["actions"][0]["state"] == "CRASHED"
        assert ours["payer-scoring: daily-scoring not completed by deadline"]["trigger"]["within"] == 3600
        assert [a["type"] for a in ours["payer-scoring: alert on failed, crashed or late runs"]["actions"]] == ["send-notification"]

        worker = start_worker()
        # 2. a failing run (no champion yet) -> exactly one notification
        failed = api.run("score-customers/daily-scoring", as_of=str(today))
        api.wait_state(failed["id"], {"FAILED", "COMPLETED", "CRASHED"}, 240, worker_log)
        assert api.flow_run(failed["id"])["state"]["type"] == "FAILED"
        deadline = time.monotonic() + 60
        while not receiver.about(failed["id"]) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(10)  # a duplicate would arrive within seconds
        alerts = receiver.about(failed["id"])
        assert len(alerts) == 1, receiver.received
        assert "Failed" in alerts[0]["subject"] and failed["id"] in alerts[0]["body"]

        # 3. the weekly retrain trains the first champion; its logs hold our lines; name == as-of
        retrain = api.run("retrain-on-drift/weekly-retrain", force=True)
        run = api.wait_state(retrain["id"], {"FAILED", "COMPLETED", "CRASHED"}, 420, worker_log)
        assert run["state"]["type"] == "COMPLETED", worker_log.read_text()[-3000:]
        retrain_logs = api.logs(retrain["id"])
        loggers = {log["name"] for log in retrain_logs}
        # models.training (snapshots, fit), models.registry and payer_scoring.asof lines reach the run logs
        assert {"models.training", "models.registry", "payer_scoring.asof"} <= loggers, loggers
        messages = [log["message"] for log in retrain_logs]
        assert any(m.startswith("registered model ") for m in messages), messages
        as_of_line = next(m for m in messages if m.startswith("as-of "))
        retrain_as_of = as_of_line.split()[1]
        assert run["name"] == f"retrain-{retrain_as_of}-forced"
        assert any(m.startswith("decided: retrain") for m in messages), messages
        artifacts = api.http.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [retrain["id"]]}}}).json()
        decision = next(a for a in artifacts if a["key"] == "retrain-decision")
        assert retrain_as_of in decision["data"], decision["data"][:300]

        # 4. worker + flow process killed together while Running -> Crashed by the zombie automation
        zombie_run = api.run("score-customers/daily-scoring", as_of=str(today))
        api.wait_state(zombie_run["id"], {"RUNNING"}, 240, worker_log)
        deadline = time.monotonic() + 60
        while api.heartbeats(zombie_run["id"]) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert api.heartbeats(zombie_run["id"]) >= 1
        assert api.flow_run(zombie_run["id"])["state"]["type"] == "RUNNING", "the run ended before it could be killed"
        killed_at = time.monotonic()
        for pid in _descendants(worker.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(10)
        crashed = api.wait_state(zombie_run["id"], {"CRASHED", "COMPLETED", "FAILED"}, ZOMBIE_AFTER_SECONDS + 120, server_log)
        assert crashed["state"]["type"] == "CRASHED"
        assert "heartbeat" in crashed["state"]["message"]
        assert time.monotonic() - killed_at >= ZOMBIE_AFTER_SECONDS - HEARTBEAT_SECONDS  # not crashed before it went silent
        deadline = time.monotonic() + 60
        while not receiver.about(zombie_run["id"]) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(receiver.about(zombie_run["id"])) == 1, receiver.received

        # 5. the next daily run gets the slot and completes; its logs say what it read, validated, wrote, decided
        start_worker()
        nxt = api.run("score-customers/daily-scoring", as_of=str(today))
        run = api.wait_state(nxt["id"], {"FAILED", "COMPLETED", "CRASHED"}, 300, worker_log)
        assert run["state"]["type"] == "COMPLETED", worker_log.read_text()[-3000:]
        logs = api.logs(nxt["id"])
        by_logger = {}
        for log in logs:
            by_logger.setdefault(log["name"], []).append(log["message"])
        assert any(m.startswith("results written") for m in by_logger.get("payer_scoring.results", [])), sorted(by_logger)
        flow_lines = " | ".join(by_logger["prefect.flow_runs"])
        with clean_db.connect() as conn:
            import sqlalchemy as sa

            scored = conn.execute(sa.text("SELECT count(*) FROM customer_categories WHERE as_of_date = :d"), {"d": today}).scalar_one()
        for expected in ("validated payments as of", f"read features of {scored} customers", f"{scored} customers scored", "decided categories:"):
            assert expected in flow_lines, flow_lines
        assert len(receiver.received) == 2, receiver.received  # the failed and the crashed run, nothing for the completed ones
    finally:
        for proc in [*workers, server]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        receiver.server.shutdown()
