"""Read-side use cases: plain dictionaries for tables and the stable --json output."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from conveyor.service import environments, listing, runs
from conveyor.service.context import Services
from conveyor.store import tables
from conveyor.store.database import unit_of_work


def _run_summary(row: tables.Run) -> dict[str, Any]:
    image = runs.image_of(row)
    return {
        "id": row.id,
        "pipeline": row.pipeline,
        "status": row.status,
        "environment": row.environment,
        "image": str(image) if image else None,
        "digest": row.image_digest,
        "tag": row.image_tag,
        "registry": row.image_registry,
        "source": row.source_kind,
        "upstream_run": row.upstream_run_id,
        "triggered_by": row.triggered_by,
        "trigger": row.trigger_kind,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "error": row.error,
    }


def list_runs(
    services: Services, *, pipeline: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    """Recent runs, newest first; raises InvalidInput for a bad limit or status, naming it."""
    listing.check_listing(limit, {"status": (status or None, tables.RUN_STATUSES)})
    query = sa.select(tables.Run).order_by(tables.Run.id.desc()).limit(limit)
    if pipeline:
        query = query.where(tables.Run.pipeline == pipeline)
    if status:
        query = query.where(tables.Run.status == status)
    with unit_of_work(services.engine, read_only=True) as session:
        return [_run_summary(r) for r in session.scalars(query)]


def show_run(services: Services, run_id: int) -> dict[str, Any]:
    """One run with its steps and approvals."""
    with unit_of_work(services.engine, read_only=True) as session:
        run = runs.load_run(session, run_id)
        view = _run_summary(run)
        steps = runs.run_steps(session, run_id)
        view["steps"] = [
            {
                "index": s.index,
                "name": s.name,
                "kind": s.kind,
                "status": s.status,
                "attempt": s.attempt,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "reason": s.reason,
                "output": s.output,
            }
            for s in steps
        ]
        waiting = next((s for s in steps if s.status == "waiting"), None)
        view["waiting_for"] = waiting.reason if waiting is not None else None
        approvals = session.scalars(
            sa.select(tables.Approval)
            .where(tables.Approval.run_id == run_id)
            .order_by(tables.Approval.decided_at, tables.Approval.id)
        )
        view["approvals"] = [
            {
                "step": a.step,
                "user": a.user,
                "decision": a.decision,
                "comment": a.comment,
                "decided_at": a.decided_at,
            }
            for a in approvals
        ]
        return view


def read_logs(services: Services, run_id: int, *, after: int) -> tuple[list[dict[str, Any]], int]:
    """Log lines of a run with ids above ``after``; returns them and the new position."""
    with unit_of_work(services.engine, read_only=True) as session:
        runs.load_run(session, run_id)
        rows = session.execute(
            sa.select(tables.StepLog, tables.Step.name)
            .join(tables.Step, tables.Step.id == tables.StepLog.step_id)
            .where(tables.Step.run_id == run_id, tables.StepLog.id > after)
            .order_by(tables.StepLog.id)
        ).all()
    lines = [
        {"step": name, "seq": log.seq, "at": log.at, "stream": log.stream, "line": log.line}
        for log, name in rows
    ]
    position = max((log.id for log, _ in rows), default=after)
    return lines, position


def _deployment(view: environments.DeploymentView | None) -> dict[str, Any]:
    if view is None:
        return {
            "image": None,
            "digest": None,
            "tag": None,
            "run_id": None,
            "deployed_by": None,
            "deployed_at": None,
        }
    return {
        "image": str(view.image),
        "digest": str(view.image.digest),
        "tag": view.image.tag,
        "run_id": view.run_id,
        "deployed_by": view.deployed_by,
        "deployed_at": view.deployed_at,
        "kind": view.kind,
    }


def list_environments(services: Services) -> list[dict[str, Any]]:
    """Every environment in lifecycle order with what it runs now."""
    return [show_environment(services, e.name) for e in services.definitions.environments]


def show_environment(services: Services, environment: str) -> dict[str, Any]:
    """What an environment runs now."""
    requires = environments.requires_of(services, environment)
    return {
        "name": environment,
        "requires": requires,
        **_deployment(environments.current(services, environment)),
    }


def environment_history(services: Services, environment: str) -> list[dict[str, Any]]:
    """An environment's deployments, newest first."""
    return [_deployment(v) for v in environments.history(services, environment)]
