"""`payer-scoring runs recover` (entrypoints.operations.recover_stuck_runs) on a real temporary Prefect API.

Runs of this project's two deployments stuck in Running/Cancelling are forced
to Crashed once silent longer than the limit; a run of another deployment, a
Completed run, and (with a longer limit) runs silent for less are left alone.
"""

from __future__ import annotations

import time

import pytest

from payer_scoring.settings import Settings


@pytest.fixture
def deployments(prefect_harness):
    """The project's two deployments plus another project's, registered on the harness API (ids by short name)."""
    from prefect.client.orchestration import get_client

    from entrypoints.operations import deployment_names

    ids = {}
    with get_client(sync_client=True) as client:
        for short, full in {**deployment_names(), "other": "someone-elses-flow/other"}.items():
            flow_name, name = full.split("/")
            flow_id = client.create_flow_from_name(flow_name)
            ids[short] = client.create_deployment(flow_id=flow_id, name=name)
    return ids


def _run_in(client, deployment_id, state):
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    run = client.create_flow_run_from_deployment(deployment_id)
    # through Running, as a real run goes (Scheduled -> Cancelling is turned into Cancelled by the server)
    for step in (StateType.RUNNING, state) if state != StateType.RUNNING else (state,):
        client.set_flow_run_state(run.id, State(type=step), force=True)
    return run.id


def test_recover_crashes_only_our_silent_running_and_cancelling_runs(deployments):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from entrypoints.operations import recover_stuck_runs

    with get_client(sync_client=True) as client:
        daily_running = _run_in(client, deployments["daily-scoring"], StateType.RUNNING)
        weekly_cancelling = _run_in(client, deployments["weekly-retrain"], StateType.CANCELLING)
        daily_completed = _run_in(client, deployments["daily-scoring"], StateType.COMPLETED)
        other_running = _run_in(client, deployments["other"], StateType.RUNNING)
    time.sleep(2)
    settings = Settings()

    # silent for ~2 s: not stuck under a 1-hour limit, nothing changes
    assert recover_stuck_runs(settings, silent_seconds=3600) == []
    # a dry run lists without changing
    listed = recover_stuck_runs(settings, dry_run=True, silent_seconds=1)
    assert {(r.id, r.deployment, r.state, r.crashed) for r in listed} == {
        (str(daily_running), "daily-scoring", "Running", False),
        (str(weekly_cancelling), "weekly-retrain", "Cancelling", False),
    }
    recovered = recover_stuck_runs(settings, silent_seconds=1)
    assert {r.id for r in recovered} == {str(daily_running), str(weekly_cancelling)}
    assert all(r.crashed and r.silent_seconds >= 1 for r in recovered)

    with get_client(sync_client=True) as client:
        states = {run_id: client.read_flow_run(run_id).state for run_id in (daily_running, weekly_cancelling, daily_completed, other_running)}
    assert states[daily_running].type == StateType.CRASHED and "runs recover" in states[daily_running].message
    assert states[weekly_cancelling].type == StateType.CRASHED
    assert states[daily_completed].type == StateType.COMPLETED
    assert states[other_running].type == StateType.RUNNING
    # a second pass finds nothing left
    assert recover_stuck_runs(settings, silent_seconds=1) == []
