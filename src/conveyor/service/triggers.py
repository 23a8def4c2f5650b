"""`pipeline` triggers: when a run ends with a status, start the pipelines that wait for it."""

from __future__ import annotations

import sqlalchemy as sa
import structlog

from conveyor.core.errors import ConveyorError
from conveyor.service import runs
from conveyor.service.context import Services
from conveyor.store import tables
from conveyor.store.database import unit_of_work

log = structlog.get_logger("conveyor.triggers")


def after_run(services: Services, run_id: int) -> list[int]:
    """Start every pipeline whose `pipeline:` trigger matches this finished run, once each."""
    with unit_of_work(services.engine, read_only=True) as session:
        run = runs.load_run(session, run_id)
        finished, status = run.pipeline, run.status
    started: list[int] = []
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
            except ConveyorError as error:
                log.warning(
                    "pipeline trigger refused", pipeline=name, after=marker, reason=str(error)
                )
    return started


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
