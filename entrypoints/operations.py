"""Operations on the Prefect server: the project's automations, its alert webhook, and stuck-run recovery.

* :func:`ensure_automations` creates or updates (by name, so running it twice
  changes nothing) the webhook notification block and four automations scoped
  to this project's deployments (ids looked up by the names in
  ``prefect.yaml``):

  - ``payer-scoring: crash zombie runs``: a run that sent a heartbeat and then
    nothing (no heartbeat, no final state) for ``zombie_after_seconds`` is set
    to Crashed, which frees its ``concurrency_limit: 1`` slot.  The pattern is
    Prefect's "detect zombie flows" automation; flow processes send a heartbeat
    every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (60 in ``make prefect``
    and in the worker image).
  - ``payer-scoring: alert on failed, crashed or late runs``: any of the two
    deployments' runs entering Failed, Crashed or Late (Late: not started 15 s
    after its scheduled time, e.g. no worker) posts to the webhook.
  - ``payer-scoring: daily-scoring not completed by deadline``: a daily run
    that became Pending or Late (06:00 America/Sao_Paulo for the scheduled one)
    and has not reached Completed ``daily_deadline_minutes`` later (07:00)
    posts to the webhook.
  - the zombie automation also posts when it crashes a run (through the
    Crashed alert: the state change is an ordinary Crashed event).

  Without ``alert_webhook_url`` the automations are created without the
  notification action (the zombie one still crashes runs) and a warning says so.

* :func:`recover_stuck_runs` is the manual counterpart of the zombie
  automation (``payer-scoring runs recover``): it finds this project's runs in
  Running or Cancelling whose last heartbeat (or, when none, last state change)
  is older than ``zombie_after_seconds`` and forces them to Crashed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from payer_scoring.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

WEBHOOK_BLOCK_NAME = "payer-scoring-alerts"
ZOMBIE_AUTOMATION = "payer-scoring: crash zombie runs"
ALERT_AUTOMATION = "payer-scoring: alert on failed, crashed or late runs"
DEADLINE_AUTOMATION = "payer-scoring: daily-scoring not completed by deadline"
AUTOMATION_NAMES = (ZOMBIE_AUTOMATION, ALERT_AUTOMATION, DEADLINE_AUTOMATION)
DAILY_DEPLOYMENT = "daily-scoring"
FINAL_EVENTS = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}


class OperationsError(Exception):
    """The Prefect server is unreachable or lacks the project's deployments (message names which)."""


def deployment_names(prefect_yaml: Path = PROJECT_ROOT / "prefect.yaml") -> dict[str, str]:
    """``{deployment name: "flow-name/deployment-name"}`` of the deployments in ``prefect.yaml``.

    The flow name is read from the entrypoint's ``@flow(name=...)`` without
    importing it (the entrypoint file holds exactly one ``@flow(name="...")``).
    """
    import re

    spec = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))
    names = {}
    for deployment in spec["deployments"]:
        path = prefect_yaml.parent / deployment["entrypoint"].split(":")[0]
        flow_name = re.search(r'@flow\(name="([^"]+)"', path.read_text(encoding="utf-8")).group(1)
        names[deployment["name"]] = f"{flow_name}/{deployment['name']}"
    return names


def _deployment_ids(client) -> dict[str, str]:
    """``{deployment name: id}`` of this project's deployments on the server (OperationsError if one is missing)."""
    from prefect.exceptions import ObjectNotFound

    ids = {}
    for name, full in deployment_names().items():
        try:
            ids[name] = str(client.read_deployment_by_name(full).id)
        except ObjectNotFound:
            raise OperationsError(f"deployment {full} not found on {client.api_url}: run `prefect deploy --all` first") from None
    return ids


def _webhook_block_id(url: str) -> str:
    """Create or overwrite the ``payer-scoring-alerts`` Custom Webhook block posting ``{subject, body}`` to ``url``."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK_NAME, url=url, method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    return str(block.save(WEBHOOK_BLOCK_NAME, overwrite=True))


def automation_specs(deployment_ids: dict[str, str], block_id: str | None, settings: Settings) -> list:
    """The project's automations (``prefect.automations.Automation`` objects, not yet saved)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    ours = ResourceSpecification({"prefect.resource.id": [f"prefect.deployment.{i}" for i in deployment_ids.values()]})
    daily = ResourceSpecification({"prefect.resource.id": f"prefect.deployment.{deployment_ids[DAILY_DEPLOYMENT]}"})
    runs = ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    body = (
        "Flow run {{ flow_run.name }} ({{ deployment.name }}) is {{ flow_run.state.name }}: "
        "{{ flow_run.state.message }}\nRun id: {{ flow_run.id }}"
    )

    def notify(subject: str) -> list:
        if block_id is None:
            return []
        return [SendNotification(block_document_id=block_id, subject=subject, body=body)]

    return [
        Automation(
            name=ZOMBIE_AUTOMATION,
            description=f"A payer-scoring run whose heartbeats stopped for {settings.zombie_after_seconds} s "
            "without a final state is marked Crashed (frees the deployment's concurrency slot).",
            trigger=EventTrigger(
                match=runs, match_related=ours, after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS}, for_each={"prefect.resource.id"},
                posture=Posture.Proactive, threshold=1, within=timedelta(seconds=settings.zombie_after_seconds),
            ),
            actions=[ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {settings.zombie_after_seconds} s: the worker or the flow process died "
                "(marked by the payer-scoring zombie automation)",
            )],
        ),
        Automation(
            name=ALERT_AUTOMATION,
            description="Posts to the payer-scoring-alerts webhook when a run of daily-scoring or weekly-retrain "
            "becomes Failed, Crashed or Late.",
            trigger=EventTrigger(
                match=runs, match_related=ours,
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.Late"},
                for_each={"prefect.resource.id"}, posture=Posture.Reactive, threshold=1, within=timedelta(0),
            ),
            actions=notify("payer-scoring: {{ flow_run.name }} is {{ flow_run.state.name }}") or [_do_nothing()],
        ),
        Automation(
            name=DEADLINE_AUTOMATION,
            description=f"Posts to the webhook when a daily-scoring run is not Completed {settings.daily_deadline_minutes} "
            "min after it became Pending or Late (scheduled 06:00 America/Sao_Paulo -> 07:00).",
            trigger=EventTrigger(
                match=runs, match_related=daily,
                after={"prefect.flow-run.Pending", "prefect.flow-run.Late"}, expect={"prefect.flow-run.Completed"},
                for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                within=timedelta(minutes=settings.daily_deadline_minutes),
            ),
            actions=notify(f"payer-scoring: daily scoring not Completed within {settings.daily_deadline_minutes} min "
                           "({{ flow_run.name }})") or [_do_nothing()],
        ),
    ]


def _do_nothing():
    from prefect.events.actions import DoNothing

    return DoNothing()


def ensure_automations(settings: Settings) -> list[str]:
    """Create or update the webhook block and the automations on the server in ``PREFECT_API_URL``.

    Idempotent: each automation is found by name and updated in place (ids
    kept), so ``make prefect`` and every worker-container start may run it.
    Returns the automation names.  Raises :class:`OperationsError` when a
    deployment is missing or the server is unreachable.
    """
    import httpx
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            ids = _deployment_ids(client)
            existing = {a.name: a for a in client.read_automations()}
    except httpx.HTTPError as exc:
        raise OperationsError(f"Prefect API unreachable ({exc}); is PREFECT_API_URL set to a running server?") from None
    if settings.alert_webhook_url:
        block_id = _webhook_block_id(settings.alert_webhook_url)
    else:
        block_id = None
        log.warning("PAYER_SCORING_ALERT_WEBHOOK_URL is unset: automations created without notifications")
    names = []
    for spec in automation_specs(ids, block_id, settings):
        found = existing.get(spec.name)
        if found is None:
            spec.create()
        else:
            updated = Automation(id=found.id, **spec.model_dump(exclude={"id"}))
            updated.update()
        names.append(spec.name)
        log.info("automation %r %s", spec.name, "created" if found is None else "updated")
    return names


@dataclass(frozen=True)
class StuckRun:
    """One run found by :func:`recover_stuck_runs`: ``silent_seconds`` since its last heartbeat or state change."""

    id: str
    name: str
    deployment: str
    state: str
    silent_seconds: float
    crashed: bool


def _last_heartbeat(client, run_id) -> datetime | None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    page = client.read_events(
        EventFilter(
            occurred=EventOccurredFilter(since=datetime.now(timezone.utc) - timedelta(days=7)),
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
        ),
        limit=1,
    )
    return page.events[0].occurred if page.events else None


def recover_stuck_runs(settings: Settings, dry_run: bool = False, silent_seconds: float | None = None) -> list[StuckRun]:
    """Force this project's silent Running/Cancelling runs to Crashed; return what was found.

    A run counts as stuck when the newest of its last heartbeat event and its
    last state change is more than ``silent_seconds`` (default
    ``settings.zombie_after_seconds``, seconds) ago: its process sends a
    heartbeat every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` s while alive.
    ``dry_run`` lists without changing anything.  Crashed is forced (the same
    transition the zombie automation makes), which releases the deployment's
    concurrency slot.  Raises :class:`OperationsError` as :func:`ensure_automations`.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    limit = settings.zombie_after_seconds if silent_seconds is None else silent_seconds
    now = datetime.now(timezone.utc)
    found: list[StuckRun] = []
    try:
        with get_client(sync_client=True) as client:
            ids = _deployment_ids(client)
            names = {v: k for k, v in ids.items()}
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(ids.values()))),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.CANCELLING]))),
            )
            for run in runs:
                seen = [t for t in (_last_heartbeat(client, run.id), run.state.timestamp if run.state else None) if t]
                silent = (now - max(seen)).total_seconds() if seen else float("inf")
                if silent <= limit:
                    continue
                if not dry_run:
                    client.set_flow_run_state(
                        run.id,
                        Crashed(message=f"No heartbeat for {silent:.0f} s: marked Crashed by `payer-scoring runs recover`"),
                        force=True,
                    )
                found.append(StuckRun(str(run.id), run.name, names[str(run.deployment_id)], run.state.name, round(silent, 1), not dry_run))
    except httpx.HTTPError as exc:
        raise OperationsError(f"Prefect API unreachable ({exc}); is PREFECT_API_URL set to a running server?") from None
    return found
