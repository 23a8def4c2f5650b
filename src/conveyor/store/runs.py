"""Runs and their steps: create, read, and record transitions the engine decided on.

Claiming a run for a worker lives in claims.py; step logs in logs.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.core.errors import NotFound
from conveyor.store import database
from conveyor.store.tables import Run, Step

_runs = cast(sa.Table, Run.__table__)
_steps = cast(sa.Table, Step.__table__)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRun:
    """What a run is created with; the image may be unknown until a build step pushes it."""

    pipeline: str
    triggered_by: str
    trigger_kind: str = "manual"
    source_kind: str = "none"
    pipeline_version: int | None = None
    environment: str | None = None
    image_registry: str | None = None
    image_repository: str | None = None
    image_digest: str | None = None
    image_tag: str | None = None
    upstream_run_id: int | None = None
    event_id: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewStep:
    """A step as planned when its run is created."""

    name: str
    kind: str


def create_run(
    session: Session, new: NewRun, *, steps: Sequence[NewStep] = (), now: datetime
) -> Run:
    """Insert a queued run with its steps (pending, numbered from 0)."""
    run = Run(
        pipeline=new.pipeline,
        pipeline_version=new.pipeline_version,
        environment=new.environment,
        status="queued",
        image_registry=new.image_registry,
        image_repository=new.image_repository,
        image_digest=new.image_digest,
        image_tag=new.image_tag,
        source_kind=new.source_kind,
        upstream_run_id=new.upstream_run_id,
        event_id=new.event_id,
        parameters=dict(new.parameters),
        triggered_by=new.triggered_by,
        trigger_kind=new.trigger_kind,
        created_at=now,
    )
    session.add(run)
    session.flush()
    for index, step in enumerate(steps):
        session.add(
            Step(
                run_id=run.id,
                index=index,
                name=step.name,
                kind=step.kind,
                status="pending",
                attempt=0,
                output={},
            )
        )
    session.flush()
    return run


@functools.cache
def _insert_statements(postgresql: bool) -> tuple[sa.Insert, sa.Insert]:
    """Insert a run unless its (event, pipeline) already has one; insert steps. Built once."""
    run = database.skipping_conflicts(
        _runs, ("event_id", "pipeline"), postgresql=postgresql
    ).returning(_runs.c.id)
    return run, sa.insert(_steps)


def insert_run(
    session: Session,
    new: NewRun,
    *,
    steps: Sequence[NewStep] = (),
    now: datetime,
    wake_at: datetime | None = None,
) -> int | None:
    """Insert a queued run with its steps (pending, numbered from 0); returns its id.

    None, and nothing written, when ``new.event_id`` already started a run of
    this pipeline (``INSERT ... ON CONFLICT DO NOTHING``: no exception, so the
    caller's transaction stays usable). Core statements, no ORM objects: this
    is on the path from a registry event to its run's first step.
    """
    insert_one, insert_steps = _insert_statements(database.is_postgresql(session))
    run_id = session.execute(
        insert_one,
        {
            "pipeline": new.pipeline,
            "pipeline_version": new.pipeline_version,
            "environment": new.environment,
            "status": "queued",
            "image_registry": new.image_registry,
            "image_repository": new.image_repository,
            "image_digest": new.image_digest,
            "image_tag": new.image_tag,
            "source_kind": new.source_kind,
            "upstream_run_id": new.upstream_run_id,
            "event_id": new.event_id,
            "parameters": dict(new.parameters),
            "triggered_by": new.triggered_by,
            "trigger_kind": new.trigger_kind,
            "created_at": now,
            "wake_at": wake_at,
        },
    ).scalar()
    if run_id is None:
        return None
    if steps:
        session.execute(
            insert_steps,
            [
                {
                    "run_id": run_id,
                    "index": index,
                    "name": step.name,
                    "kind": step.kind,
                    "status": "pending",
                    "attempt": 0,
                    "output": {},
                }
                for index, step in enumerate(steps)
            ],
        )
    return int(run_id)


def fetch_run(session: Session, run_id: int) -> Run:
    """The run with this id; raises NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("run", str(run_id), hint="list runs with `conveyor runs list`")
    return run


def list_runs(
    session: Session,
    *,
    pipeline: str | None = None,
    statuses: Sequence[str] = (),
    limit: int = 50,
) -> list[Run]:
    """Runs, newest first, optionally of one pipeline and in some statuses."""
    query = sa.select(Run).order_by(Run.id.desc()).limit(limit)
    if pipeline is not None:
        query = query.where(Run.pipeline == pipeline)
    if statuses:
        query = query.where(Run.status.in_(statuses))
    return list(session.scalars(query))


def fetch_last_successful_run(session: Session, pipeline: str) -> Run | None:
    """The pipeline's most recently finished succeeded run (a pipeline source's default)."""
    return session.scalars(
        sa.select(Run)
        .where(Run.pipeline == pipeline, Run.status == "succeeded")
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(1)
    ).first()


def update_run(session: Session, run_id: int, **values: Any) -> Run:  # noqa: ANN401
    """Set columns of a run (status, started_at, finished_at, error, image_*, wake_at, ...)."""
    run = fetch_run(session, run_id)
    for name, value in values.items():
        if not hasattr(Run, name):
            raise TypeError(f"runs has no column {name!r}")
        setattr(run, name, value)
    session.flush()
    return run


def list_steps(session: Session, run_id: int) -> list[Step]:
    """The steps of a run in order."""
    return list(session.scalars(sa.select(Step).where(Step.run_id == run_id).order_by(Step.index)))


def fetch_step(session: Session, run_id: int, index: int) -> Step:
    """One step of a run by position; raises NotFound."""
    step = session.scalars(
        sa.select(Step).where(Step.run_id == run_id, Step.index == index)
    ).first()
    if step is None:
        raise NotFound("step", f"{run_id}/{index}")
    return step


def update_step(session: Session, step_id: int, **values: Any) -> Step:  # noqa: ANN401
    """Set columns of a step (status, attempt, timestamps, exit_code, reason, output)."""
    step = session.get(Step, step_id)
    if step is None:
        raise NotFound("step", str(step_id))
    for name, value in values.items():
        if not hasattr(Step, name):
            raise TypeError(f"steps has no column {name!r}")
        setattr(step, name, value)
    session.flush()
    return step


# --- the worker's transitions: Core reads and writes, no ORM objects ---------------------------
#
# Claiming a run, beginning its next step, and committing the step's outcome together with the
# next step's start are the worker's hot path (every run takes them at least twice). These read
# plain snapshots and write explicit UPDATEs with statements built once, instead of loading ORM
# objects and flushing them: same rows, same transactions, a fraction of the CPU.


@dataclass(slots=True, kw_only=True)
class RunRow:
    """A run as read in the current transaction; writes go through ``set_run``."""

    id: int
    pipeline: str
    environment: str | None
    status: str
    claimed_by: str | None
    cancel_requested_at: datetime | None
    image_registry: str | None
    image_repository: str | None
    image_digest: str | None
    image_tag: str | None
    parameters: dict[str, Any]
    triggered_by: str
    trigger_kind: str


@dataclass(slots=True, kw_only=True)
class StepRow:
    """A step as read in the current transaction; writes go through ``set_step``."""

    id: int
    index: int
    name: str
    kind: str
    status: str
    attempt: int
    started_at: datetime | None
    process: dict[str, Any] | None


_RUN_ROW = sa.select(*(_runs.c[name] for name in RunRow.__dataclass_fields__)).where(
    _runs.c.id == sa.bindparam("run_id")
)
_STEP_ROWS = (
    sa.select(*(_steps.c[name] for name in StepRow.__dataclass_fields__))
    .where(_steps.c.run_id == sa.bindparam("run_id"))
    .order_by(_steps.c.index)
)
# The SET clause is the columns named in each call's parameters (compiled once per set).
_SET_RUN = sa.update(_runs).where(_runs.c.id == sa.bindparam("_row_id"))
_SET_STEP = sa.update(_steps).where(_steps.c.id == sa.bindparam("_row_id"))
_UNFINISHED_STEPS = ("pending", "running", "waiting")
_CLOSE_STEPS = (
    sa.update(_steps)
    .where(
        _steps.c.run_id == sa.bindparam("_run_id"),
        _steps.c.status.in_(_UNFINISHED_STEPS),
    )
    .values(
        status=sa.bindparam("_status"),
        finished_at=sa.bindparam("_now", type_=_steps.c.finished_at.type),
    )
)


def read_run(session: Session, run_id: int) -> RunRow:
    """The run's row; raises NotFound."""
    row = session.execute(_RUN_ROW, {"run_id": run_id}).first()
    if row is None:
        raise NotFound("run", str(run_id), hint="see `conveyor runs list`")
    return RunRow(**row._asdict())


def read_steps(session: Session, run_id: int) -> list[StepRow]:
    """The run's steps in order."""
    return [StepRow(**row._asdict()) for row in session.execute(_STEP_ROWS, {"run_id": run_id})]


def set_run(session: Session, run_id: int, **values: Any) -> None:  # noqa: ANN401
    """UPDATE the named columns of one run."""
    if values:
        session.execute(_SET_RUN, {"_row_id": run_id, **values})


def set_step(session: Session, step_id: int, **values: Any) -> None:  # noqa: ANN401
    """UPDATE the named columns of one step."""
    if values:
        session.execute(_SET_STEP, {"_row_id": step_id, **values})


def set_step_process(
    session: Session,
    step_id: int,
    process: dict[str, Any] | None,
    *,
    worker: str,
) -> bool:
    """Record (or clear, with None) a step's command process, if ``worker`` holds its run.

    Whether it was written: a worker that lost its run (another took it over)
    must not overwrite what the new holder recorded.
    """
    held = (
        sa.select(_runs.c.id)
        .where(_runs.c.id == _steps.c.run_id, _runs.c.claimed_by == worker)
        .exists()
    )
    done = session.execute(
        sa.update(_steps).where(_steps.c.id == step_id, held).values(process=process)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def close_steps(session: Session, run_id: int, *, status: str, now: datetime) -> None:
    """Give every unfinished step of a run ``status`` (skipped, cancelled), finished now."""
    session.execute(_CLOSE_STEPS, {"_run_id": run_id, "_status": status, "_now": now})
