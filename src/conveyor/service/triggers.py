"""`pipeline` triggers: when a run ends with a status, start the pipelines that wait for it.

**Not lost on a crash.** The commit that ends a run whose pipeline some
`pipeline:` trigger waits for also sets the run's ``triggers_due``. The worker
that ended it then calls ``after_run``, which starts the waiting pipelines and
clears the flag. If that process dies in between, or a start fails for a
reason that passes (the registry or the database unreachable), the flag stays
set and ``follow_up`` (a singleton job of the scheduler, see
engine/scheduler.py) handles the run later: only runs that ended at least
``GRACE`` ago, so it does not race the worker's own call, and none that ended
more than ``HORIZON`` ago (those are given up with an error in the log).

**Once each.** Handling a run's triggers holds a lease on them, so the
worker and the sweep never handle one run at the same time, and a run whose
triggers are no longer due is left alone. A started run is also marked
``triggered_by = "pipeline <name> run <id>"``; ``after_run`` skips a pipeline
that already has a run with that mark, so a handling cut short by a crash
(the lease then expires) starts nothing twice when it is redone. A start
refused for good (a gate, a bad mark, a tag the source does not admit) is
logged and not retried.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog

from conveyor.config.loader import Definitions
from conveyor.core.errors import ConveyorError, DatabaseUnavailable, RegistryUnavailable
from conveyor.core.runs import RunStatus
from conveyor.service import runs
from conveyor.service.context import Services
from conveyor.store import claims, tables
from conveyor.store import runs as store_runs
from conveyor.store.database import unit_of_work

log = structlog.get_logger("conveyor.triggers")

# The statuses a `pipeline:` trigger can wait for (config.models.PipelineTrigger).
TRIGGERING = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED})
# The sweep leaves a run alone this long after it ended: its worker handles it first.
GRACE = timedelta(seconds=60)
# Triggers still due this long after their run ended are given up.
HORIZON = timedelta(hours=24)
# Runs the sweep handles per call.
SWEEP_BATCH = 20
# How long one handling of a run's triggers may hold them (a crash frees them after it).
HANDLING_LEASE = timedelta(minutes=5)
# Failures that pass: the run stays due and the sweep tries again.
_TRANSIENT = (RegistryUnavailable, DatabaseUnavailable)


def awaited_pipelines(definitions: Definitions) -> frozenset[str]:
    """The pipelines some `pipeline:` trigger waits for (whose runs can leave triggers due)."""
    return frozenset(
        trigger.pipeline.name
        for pipeline in definitions.pipelines.values()
        for trigger in pipeline.triggers
        if trigger.pipeline is not None
    )


def after_run(services: Services, run_id: int) -> list[int]:
    """Start every pipeline whose `pipeline:` trigger matches this finished run, once each.

    Clears the run's ``triggers_due`` unless a start failed for a reason that
    passes, in which case ``follow_up`` tries again later. One caller at a
    time per run (a lease): the worker and the sweep never start followers of
    the same run at once, and a run no longer due is left alone.
    """
    lease = f"pipeline-triggers:run-{run_id}"
    owner = uuid.uuid4().hex
    with unit_of_work(services.engine) as session:
        held = claims.acquire_lease(
            session, lease, owner=owner, ttl=HANDLING_LEASE, now=services.clock()
        )
    if not held:
        log.info("pipeline triggers of this run are being handled elsewhere", run=run_id)
        return []
    try:
        return _fire(services, run_id)
    finally:
        with unit_of_work(services.engine) as session:
            claims.release_lease(session, lease, owner=owner)


def _fire(services: Services, run_id: int) -> list[int]:
    with unit_of_work(services.engine, read_only=True) as session:
        run = runs.load_run(session, run_id)
        finished, status, due = run.pipeline, run.status, run.triggers_due
    if not due:
        return []  # handled meanwhile (the worker, or the sweep after it)
    started: list[int] = []
    retry = False
    for name, pipeline in services.definitions.pipelines.items():
        for trigger in pipeline.triggers:
            wanted = trigger.pipeline
            if wanted is None or wanted.name != finished or wanted.status != status:
                continue
            marker = f"pipeline {finished} run {run_id}"
            if _already_started(services, name, marker):
                continue
            takes_its_image = pipeline.source is not None and pipeline.source.pipeline == finished
            request = runs.RunRequest(
                pipeline=name,
                user=marker,
                trigger="pipeline",
                from_run=run_id if takes_its_image and status == "succeeded" else None,
            )
            try:
                started.append(runs.start_run(services, request))
            except _TRANSIENT as error:
                retry = True
                log.warning(
                    "pipeline trigger failed; will retry",
                    pipeline=name,
                    after=marker,
                    reason=str(error),
                )
            except ConveyorError as error:
                log.warning(
                    "pipeline trigger refused", pipeline=name, after=marker, reason=str(error)
                )
    if not retry:
        _handled(services, run_id)
    return started


def follow_up(services: Services, *, now: datetime) -> list[int]:
    """Handle runs whose triggers are still due (their worker died, or a start failed).

    Returns the runs started. Meant for one process at a time (the scheduler
    runs it under a singleton lock); handling a run twice starts nothing twice.
    """
    with unit_of_work(services.engine, read_only=True) as session:
        due = session.execute(
            sa.select(tables.Run.id, tables.Run.finished_at)
            .where(tables.Run.triggers_due.is_(True), tables.Run.finished_at <= now - GRACE)
            .order_by(tables.Run.id)
            .limit(SWEEP_BATCH)
        ).all()
    started: list[int] = []
    for run_id, finished_at in due:
        if finished_at is not None and finished_at < now - HORIZON:
            log.error(
                "pipeline triggers given up: still failing a day after the run ended",
                run=run_id,
            )
            _handled(services, run_id)
            continue
        log.info("handling pipeline triggers left over", run=run_id)
        started.extend(after_run(services, run_id))
    return started


def _handled(services: Services, run_id: int) -> None:
    with unit_of_work(services.engine) as session:
        store_runs.set_run(session, run_id, triggers_due=False)


def _already_started(services: Services, pipeline: str, marker: str) -> bool:
    with unit_of_work(services.engine, read_only=True) as session:
        return (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(tables.Run)
                .where(
                    tables.Run.pipeline == pipeline,
                    tables.Run.trigger_kind == "pipeline",
                    tables.Run.triggered_by == marker,
                )
            )
            != 0
        )
