"""Tasks of the daily scoring run (``flows/daily_scoring.py``): thin wrappers, named as the functions they wrap.

Each task takes the settings (read once by the flow), opens the engine and
calls the plain function of the same name in ``payer_scoring/`` or
``models/``.  Retries are given by the flow (``tasks.retries``) to the tasks
that touch the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from models import predict, registry, training
from payer_scoring import bill_events, features, reports, results, validation
from payer_scoring.db import get_engine, prepare_database
from payer_scoring.rules import Rules
from payer_scoring.settings import Settings

log = logging.getLogger(__name__)


@task(name="check_suites", cache_policy=NO_CACHE)
def check_suites() -> dict[str, int]:
    """:func:`payer_scoring.validation.check_suites`: every suite loads strictly before anything is read."""
    return validation.check_suites()


@task(name="resolve_as_of", cache_policy=NO_CACHE)
def resolve_as_of(settings: Settings, as_of: date | None) -> date:
    """:func:`models.training.resolve_as_of` (the one as-of rule; refuses a future as-of and an empty database).

    The run's first database step, so it also applies pending migrations
    (:func:`payer_scoring.db.prepare_database`: once per flow run, retried with it).
    """
    return training.resolve_as_of(prepare_database(settings), as_of, settings)


@task(name="validate_payments", cache_policy=NO_CACHE)
def validate_payments(settings: Settings, as_of: date, flow_run_id: str, latest_plausible_date: date) -> validation.ValidationReport:
    """:func:`payer_scoring.validation.validate_payments_in_database` (quarantines failing bills)."""
    return validation.validate_payments_in_database(
        get_engine(settings), as_of=as_of, flow_run_id=flow_run_id, latest_plausible_date=latest_plausible_date
    )


@task(name="extract_features", cache_policy=NO_CACHE)
def extract_features(settings: Settings, as_of: date, rules: Rules, exclude_run_id: str) -> pd.DataFrame:
    """:func:`payer_scoring.features.extract_features` with the run's quarantined bills left out, plus
    :func:`payer_scoring.features.add_customers_without_counted_bills` (every customer with a bill gets a row)."""
    engine = get_engine(settings)
    frame = features.extract_features(engine, as_of, rules, exclude_run_id, horizon_days=settings.horizon_days)
    return features.add_customers_without_counted_bills(engine, as_of, rules, frame, exclude_run_id)


@task(name="validate_features", cache_policy=NO_CACHE)
def validate_features(frame: pd.DataFrame) -> validation.ValidationReport:
    """The ``customer_features`` suite on the features frame (:func:`payer_scoring.validation.validate_frame`)."""
    return validation.validate_frame(frame, "customer_features")


@task(name="load_champion", cache_policy=NO_CACHE)
def load_champion(settings: Settings, rules: Rules) -> registry.Champion:
    """:func:`models.registry.load_champion` (sha256 checked before unpickling), then
    :func:`models.registry.check_compatible` with the settings' horizon and ``rules``.

    Raises NoChampionError when there is none, IncompatibleChampionError when
    the horizon or rules version differs from the champion's.
    """
    champion = registry.load_champion(get_engine(settings), store=settings.model_store)
    registry.check_compatible(champion, horizon_days=settings.horizon_days, rules_version=rules.version)
    log.info("champion model %s", champion.version)
    return champion


@task(name="predict_categories", cache_policy=NO_CACHE)
def predict_categories(settings: Settings, champion: registry.Champion, frame: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """:func:`models.predict.predict_categories`."""
    return predict.predict_categories(champion, frame, rules, threads=settings.model_threads)


@task(name="stabilise_categories", cache_policy=NO_CACHE)
def stabilise_categories(settings: Settings, scores: pd.DataFrame, as_of: date, rules: Rules, champion: registry.Champion) -> pd.DataFrame:
    """:func:`models.predict.stabilise_categories` against the previous scoring run and the bill events since it.

    Only categories the same champion published are held (after a promotion the new model's categories apply at once).
    """
    return _stabilise(settings, scores, as_of, rules, champion)


def _stabilise(settings: Settings, scores: pd.DataFrame, as_of: date, rules: Rules, champion: registry.Champion) -> pd.DataFrame:
    """The body of :func:`stabilise_categories` (also run per partition by :func:`score_partition`).

    ``scores`` may be one partition's customers: the previous categories and
    bill events are matched to them by (company_id, customer_id).
    """
    rule = getattr(champion.model, "rule", None)
    if rule is None:  # a multiclass model registered before issue 11: no hysteresis
        return predict.stabilise_categories(scores, scores.iloc[0:0], scores.iloc[0:0], None, rules.hysteresis_margin)
    engine = get_engine(settings)
    previous_date, previous = results.read_previous_categories(engine, as_of)
    # a category published by another model is not held: a new champion is a deliberate change
    previous = previous[previous["model_version"] == champion.version]
    events = bill_events.bill_events(engine, previous_date, as_of, rules) if previous_date is not None else None
    out = predict.stabilise_categories(scores, previous, events, rule.cutoffs, rules.hysteresis_margin)
    log.info(
        "hysteresis against the run of %s: %d of %d categories held", previous_date, int(out["category_held"].sum()), len(out)
    )
    return out


@task(name="validate_scores", cache_policy=NO_CACHE)
def validate_scores(scores: pd.DataFrame, features_row_count: int) -> validation.ValidationReport:
    """The ``customer_scores`` suite on the predictions frame."""
    return validation.validate_frame(scores, "customer_scores", {"features_row_count": features_row_count})


@task(name="write_results", cache_policy=NO_CACHE)
def write_results(settings: Settings, scores: pd.DataFrame, as_of: date, model_version: str, flow_run_id: str) -> results.WriteSummary:
    """:func:`payer_scoring.results.write_results` (one transaction; waits ``settings.write_lock_wait_seconds``)."""
    return results.write_results(
        get_engine(settings),
        scores,
        as_of=as_of,
        model_version=model_version,
        flow_run_id=flow_run_id,
        lock_wait_seconds=settings.write_lock_wait_seconds,
    )


# ------------------------------------------------------------ partitioned scoring (settings.task_runner = "dask")
def dask_task_runner(settings: Settings):
    """The ``prefect_dask.DaskTaskRunner`` the settings describe.

    ``settings.dask_address`` set: that running scheduler (a real cluster, workers on any hosts
    that can reach the database and the model store).  Unset: a temporary ``distributed.LocalCluster``
    of ``dask_workers`` workers x ``dask_threads_per_worker`` threads (``dask_processes``: processes
    or threads of this process), without its dashboard (nothing listens on a port).
    """
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": settings.dask_threads_per_worker,
            "processes": settings.dask_processes,
            "dashboard_address": None,
        },
    )


@dataclass(frozen=True)
class PartitionResult:
    """What one partition of a partitioned run reports back (small: no customer rows)."""

    partition: tuple[int, int]
    customers: int
    categories_held: int
    category_counts: dict[str, int]
    features_report: validation.ValidationReport | None  # None: no company hashed into this partition
    scores_report: validation.ValidationReport | None


@task(name="score_partition", cache_policy=NO_CACHE)
def score_partition(
    settings: Settings,
    as_of: date,
    rules: Rules,
    champion: registry.Champion,
    partition: tuple[int, int],
    staging: str,
    flow_run_id: str,
    scored_at: datetime,
) -> PartitionResult:
    """One partition of the daily run: the in-process steps on its customers, COPYed into ``staging``.

    Features (:func:`payer_scoring.features.extract_features` and
    ``add_customers_without_counted_bills`` with ``partition``), the
    ``customer_features`` suite, prediction, hysteresis against the previous
    run (its categories matched per customer), the ``customer_scores`` suite,
    then :func:`payer_scoring.results.copy_to_staging` (its own transaction;
    nothing is published until the flow's final swap).  Raises what those
    steps raise (``ValidationFailed`` with its report).  A partition into
    which no company hashes (few companies, many partitions) stages nothing
    and reports 0 customers and no suite reports; the flow fails when every
    partition is empty.
    """
    engine = get_engine(settings)
    frame = features.extract_features(
        engine, as_of, rules, flow_run_id, horizon_days=settings.horizon_days, partition=partition
    )
    frame = features.add_customers_without_counted_bills(engine, as_of, rules, frame, flow_run_id, partition=partition)
    if frame.empty:
        log.info("partition %d of %d: no company in it, nothing staged", partition[0], partition[1])
        return PartitionResult(partition, 0, 0, {}, None, None)
    features_report = validation.validate_frame(frame, "customer_features")
    scores = predict.predict_categories(champion, frame, rules, threads=settings.model_threads)
    scores = _stabilise(settings, scores, as_of, rules, champion)
    scores_report = validation.validate_frame(scores, "customer_scores", {"features_row_count": len(frame)})
    rows = results.copy_to_staging(
        engine, staging, scores, as_of=as_of, model_version=champion.version, flow_run_id=flow_run_id, scored_at=scored_at
    )
    log.info("partition %d of %d: %d customers staged", partition[0], partition[1], rows)
    return PartitionResult(
        partition=partition,
        customers=rows,
        categories_held=int(scores["category_held"].sum()) if "category_held" in scores else 0,
        category_counts={str(k): int(v) for k, v in scores["category"].value_counts().items()},
        features_report=features_report,
        scores_report=scores_report,
    )


@task(name="create_staging", cache_policy=NO_CACHE)
def create_staging(settings: Settings, as_of: date) -> str:
    """:func:`payer_scoring.results.create_staging` (the per-run table the partitions COPY into)."""
    return results.create_staging(get_engine(settings), as_of)


@task(name="publish_staging", cache_policy=NO_CACHE)
def publish_staging(settings: Settings, staging: str, as_of: date) -> results.WriteSummary:
    """:func:`payer_scoring.results.publish_staging` (one transaction; waits ``settings.write_lock_wait_seconds``)."""
    return results.publish_staging(get_engine(settings), staging, as_of=as_of, lock_wait_seconds=settings.write_lock_wait_seconds)


@task(name="drop_staging", cache_policy=NO_CACHE)
def drop_staging(settings: Settings, staging: str) -> None:
    """:func:`payer_scoring.results.drop_staging` (after the run, published or not)."""
    results.drop_staging(get_engine(settings), staging)


@task(name="publish_category_distribution", cache_policy=NO_CACHE)
def publish_category_distribution(scores: pd.DataFrame, as_of: date) -> list[dict]:
    """The ``category-distribution`` table artifact (:func:`payer_scoring.reports.category_distribution`)."""
    rows = reports.category_distribution(scores)
    create_table_artifact(key="category-distribution", table=rows, description=f"Customers per category as of {as_of}")
    return rows


@task(name="publish_run_summary", cache_policy=NO_CACHE)
def publish_run_summary(summary: dict) -> dict:
    """The ``run-summary`` markdown artifact (:func:`payer_scoring.reports.run_summary_markdown`); returns ``summary``."""
    create_markdown_artifact(
        key="run-summary", markdown=reports.run_summary_markdown(summary), description=f"Scoring run as of {summary['as_of']}"
    )
    return summary


class StepClock:
    """Runs steps and records their wall-clock seconds by name (for the run summary)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, step: Callable, *args, **kwargs):
        """Call ``step(*args, **kwargs)``, record its duration under its (task) name, return its result."""
        name = getattr(step, "name", None) or getattr(step, "__name__", "step")
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)


class validation_summary:  # noqa: N801 - used as a context manager, reads like a step
    """Collects the suites' reports; on exit publishes the ``validation-summary`` markdown artifact.

    A :class:`payer_scoring.validation.ValidationFailed` raised inside the
    block adds its report (so the artifact names the failed expectation) and
    is re-raised unchanged.
    """

    def __init__(self) -> None:
        self.reports: list[validation.ValidationReport] = []

    def add(self, report: validation.ValidationReport) -> validation.ValidationReport:
        self.reports.append(report)
        return report

    @property
    def quarantined_bills(self) -> int:
        return sum(r.quarantined_bills for r in self.reports)

    @property
    def warnings(self) -> int:
        return sum(len(r.warnings) for r in self.reports)

    def __enter__(self) -> "validation_summary":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, validation.ValidationFailed):
            self.reports.append(exc.report)
        try:
            create_markdown_artifact(
                key="validation-summary",
                markdown=reports.validation_markdown(self.reports, failed=exc is not None),
                description="Great Expectations results of the scoring run",
            )
        except Exception:  # noqa: BLE001 - never hide the run's own error behind an artifact error
            log.exception("could not publish the validation summary artifact")
            if exc is None:
                raise
        return False
