"""Use cases for runs: start (fixing the image), decide gates, cancel, and read.

Every state change is committed before its effects start: a run row exists,
with its image fixed by digest, before any worker touches it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor import aio
from conveyor.config import models, steps
from conveyor.core import gates, sources
from conveyor.core.errors import Conflict, InvalidInput, NotFound, PromotionRefused
from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.core.runs import RunStatus, StepStatus
from conveyor.service import environments, selection
from conveyor.service.context import Services
from conveyor.store import approvals, audit, tables
from conveyor.store import runs as store_runs
from conveyor.store.database import unit_of_work


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """What a user (or a trigger) asks for when starting a run."""

    pipeline: str
    tag: str | None = None
    digest: str | None = None
    from_run: int | None = None
    parameters: Mapping[str, str] = None  # type: ignore[assignment]
    user: str
    trigger: str = "manual"
    event_id: int | None = None
    # Set by rollback: deploy exactly this earlier image again.
    pinned: PinnedImage | None = None
    pinned_registry: str | None = None
    # Set by a registry event that reported both tag and digest: the digest the push put
    # behind ``tag``. Taken as is (no new look at the tag) when ``tag`` and the repository
    # are the pipeline source's; a later push sends its own event.
    pushed: PinnedImage | None = None
    # Where ``pushed``'s digest came from, as the run's audit entry records it.
    pushed_from: str = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixed:
    """The image a run takes, fixed at start."""

    image: PinnedImage | None
    registry: str | None
    source_kind: str
    upstream_run_id: int | None = None
    # Where the digest came from: "registry" (the tag resolved now), the request's
    # ``pushed_from`` ("event", "poll", ...), "rollback", "run N"; None without an image.
    # Audited as ``digest_from``.
    origin: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A run ready to be inserted: its request, pipeline, parameters and fixed image."""

    request: RunRequest
    pipeline: models.Pipeline
    parameters: dict[str, str]
    fixed: Fixed


def pipeline_of(services: Services, name: str) -> models.Pipeline:
    """The pipeline definition; raises NotFound naming the defined ones."""
    pipeline = services.definitions.pipelines.get(name)
    if pipeline is None:
        defined = ", ".join(sorted(services.definitions.pipelines)) or "none"
        raise NotFound("pipeline", name, hint=f"defined: {defined}")
    return pipeline


def resolve_parameters(
    pipeline_name: str, pipeline: models.Pipeline, given: Mapping[str, str]
) -> dict[str, str]:
    """Declared parameters with defaults applied; unknown or missing ones are refused."""
    unknown = sorted(set(given) - set(pipeline.parameters))
    if unknown:
        declared = ", ".join(sorted(pipeline.parameters)) or "none"
        raise InvalidInput(
            f"--param {unknown[0]}: pipeline '{pipeline_name}' has no parameter "
            f"'{unknown[0]}'; declared: {declared}"
        )
    values: dict[str, str] = {}
    for name, parameter in pipeline.parameters.items():
        if name in given:
            values[name] = given[name]
        elif parameter.default is not None:
            values[name] = parameter.default
        elif parameter.required:
            raise InvalidInput(
                f"--param {name}: pipeline '{pipeline_name}' requires parameter '{name}'; "
                f"pass --param {name}=VALUE"
            )
    return values


def start_run(services: Services, request: RunRequest) -> int:
    """Fix the run's image, check the environment's gates, and queue the run.

    Raises PromotionRefused (nothing is written) when the image may not enter
    the pipeline's environment; NotFound / InvalidInput for bad requests;
    Conflict when the request's event already started a run of this pipeline.
    """
    prepared = prepare_run(services, request)
    with unit_of_work(services.engine) as session:
        run_id = insert_run(session, services, prepared)
    if run_id is None:
        raise Conflict(
            f"event {request.event_id} already started a run of pipeline '{request.pipeline}'"
        )
    return run_id


def prepare_run(services: Services, request: RunRequest) -> Prepared:
    """Check the request and fix its image (may ask the registry); writes nothing."""
    pipeline = pipeline_of(services, request.pipeline)
    parameters = resolve_parameters(request.pipeline, pipeline, request.parameters or {})
    fixed = _fix_image(services, pipeline, request, parameters)
    return Prepared(request=request, pipeline=pipeline, parameters=parameters, fixed=fixed)


def insert_run(session: Session, services: Services, prepared: Prepared) -> int | None:
    """In the caller's transaction: check the gates, insert the queued run, its steps, audit.

    Raises PromotionRefused before writing anything when the image may not
    enter the environment. None (nothing written) when the request's event
    already started a run of this pipeline.
    """
    request, pipeline, fixed = prepared.request, prepared.pipeline, prepared.fixed
    now = services.clock()
    if fixed.image is not None and pipeline.environment is not None:
        decision = environments.check(session, services, fixed.image.digest, pipeline.environment)
        if isinstance(decision, gates.Refused):
            raise PromotionRefused(decision.reasons)
    image = fixed.image
    run_id = store_runs.insert_run(
        session,
        store_runs.NewRun(
            pipeline=request.pipeline,
            environment=pipeline.environment,
            image_registry=fixed.registry,
            image_repository=str(image.repository) if image else None,
            image_digest=str(image.digest) if image else None,
            image_tag=image.tag if image else None,
            source_kind=fixed.source_kind,
            upstream_run_id=fixed.upstream_run_id,
            event_id=request.event_id,
            parameters=prepared.parameters,
            triggered_by=request.user,
            trigger_kind=request.trigger,
        ),
        steps=[
            store_runs.NewStep(name=step_name(step, index), kind=step.type)
            for index, step in enumerate(pipeline.steps)
        ],
        now=now,
        wake_at=now,
    )
    if run_id is None:
        return None
    details: dict[str, object] = {
        "pipeline": request.pipeline,
        "digest": str(image.digest) if image else None,
    }
    if fixed.origin is not None:
        details["digest_from"] = fixed.origin
    audit.record_audit(
        session,
        identity=request.user,
        action="run.start",
        target=f"run/{run_id}",
        details=details,
        now=now,
    )
    return run_id


def step_name(step: steps.StepCommon, index: int) -> str:
    """A step's display name: its own, else its type and position."""
    if step.name:
        return step.name
    kind = getattr(step, "type", "step")
    return f"{kind}-{index + 1}"


def _fix_image(
    services: Services,
    pipeline: models.Pipeline,
    request: RunRequest,
    parameters: Mapping[str, str],
) -> Fixed:
    if request.pinned is not None:
        return Fixed(
            image=request.pinned,
            registry=request.pinned_registry,
            source_kind="pipeline" if pipeline.source and pipeline.source.pipeline else "artifact",
            origin="rollback",
        )
    source = pipeline.source
    if source is None:
        if request.tag or request.digest or request.from_run:
            raise InvalidInput(
                f"pipeline '{request.pipeline}' has no source; its build step makes the image, "
                "so --tag, --digest and --from-run do not apply"
            )
        kind = "build" if any(s.type == "build" for s in pipeline.steps) else "none"
        return Fixed(image=None, registry=None, source_kind=kind)
    if source.pipeline is not None:
        if request.tag or request.digest:
            raise InvalidInput(
                f"pipeline '{request.pipeline}' takes its image from pipeline "
                f"'{source.pipeline}'; pick a run with --from-run ID instead of --tag/--digest"
            )
        upstream = _pick_upstream(services, source.pipeline, request.from_run)
        return Fixed(
            image=upstream.image,
            registry=upstream.registry,
            source_kind="pipeline",
            upstream_run_id=upstream.id,
            origin=f"run {upstream.id}" if upstream.image is not None else None,
        )
    assert source.artifact is not None
    if request.from_run is not None:
        raise InvalidInput(
            f"pipeline '{request.pipeline}' takes its image from source '{source.artifact}'; "
            "--from-run applies to pipeline sources only"
        )
    artifact = services.definitions.sources[source.artifact]
    if (
        request.pushed is not None
        and request.digest is None
        and request.pushed.tag == request.tag
        and request.pushed.repository == selection.repository_of(services.registries, artifact)
    ):
        pushed = selection.admit_pushed(source.artifact, artifact, request.pushed)
        return Fixed(
            image=pushed,
            registry=artifact.registry,
            source_kind="artifact",
            origin=request.pushed_from,
        )
    values = {**services.environ, **parameters}
    image = aio.run(
        selection.fix_artifact(
            services,
            source.artifact,
            artifact,
            tag=request.tag,
            digest=request.digest,
            values=values,
        )
    )
    return Fixed(image=image, registry=artifact.registry, source_kind="artifact", origin="registry")


def _pick_upstream(services: Services, pipeline: str, run_id: int | None) -> sources.UpstreamRun:
    with unit_of_work(services.engine, read_only=True) as session:
        rows = session.scalars(sa.select(tables.Run).where(tables.Run.pipeline == pipeline)).all()
        upstream = [to_upstream(r) for r in rows]
    if run_id is not None and not any(r.id == run_id for r in upstream):
        with unit_of_work(services.engine, read_only=True) as session:
            other = session.get(tables.Run, run_id)
        if other is not None:
            raise PromotionRefused(
                [
                    f"run {run_id} is a run of '{other.pipeline}', not of the source pipeline "
                    f"'{pipeline}'"
                ]
            )
    return sources.pick_upstream(upstream, pipeline=pipeline, run_id=run_id)


def to_upstream(row: tables.Run) -> sources.UpstreamRun:
    """A run row as the core's view of an upstream run."""
    return sources.UpstreamRun(
        id=row.id,
        pipeline=row.pipeline,
        status=RunStatus(row.status),
        image=image_of(row),
        registry=row.image_registry,
        finished_at=row.finished_at,
    )


class RunImageColumns(Protocol):
    """A run's image columns: an ORM row or a store snapshot."""

    @property
    def image_repository(self) -> str | None: ...

    @property
    def image_digest(self) -> str | None: ...

    @property
    def image_tag(self) -> str | None: ...


def image_of(row: RunImageColumns) -> PinnedImage | None:
    """The run's fixed image, if it has one."""
    if row.image_repository is None or row.image_digest is None:
        return None
    return PinnedImage(
        repository=Repository.parse(row.image_repository),
        digest=Digest.parse(row.image_digest),
        tag=row.image_tag,
    )


def load_run(session: Session, run_id: int) -> tables.Run:
    """The run row; raises NotFound."""
    run = session.get(tables.Run, run_id)
    if run is None:
        raise NotFound("run", str(run_id), hint="see `conveyor runs list`")
    return run


def run_steps(session: Session, run_id: int) -> Sequence[tables.Step]:
    """A run's steps in order."""
    return session.scalars(
        sa.select(tables.Step).where(tables.Step.run_id == run_id).order_by(tables.Step.index)
    ).all()


def decide(
    services: Services,
    run_id: int,
    *,
    approver: gates.Approver,
    approved: bool,
    comment: str,
) -> str:
    """Record an approval or rejection at the run's waiting gate; returns the gate's name.

    Refused (nothing recorded) when no gate is waiting, when the approver may
    not decide it (author, users/groups), or when they already decided.
    """
    now = services.clock()
    with unit_of_work(services.engine) as session:
        run = load_run(session, run_id)
        gate = next(
            (
                s
                for s in run_steps(session, run_id)
                if s.kind == "approval" and s.status == StepStatus.WAITING
            ),
            None,
        )
        if gate is None or run.status != RunStatus.WAITING:
            raise Conflict(f"run {run_id} is {run.status} and has no gate waiting for a decision")
        config = pipeline_of(services, run.pipeline).steps[gate.index]
        assert isinstance(config, steps.ApprovalStep)
        reason = gates.may_decide(config.rule(), approver, author=run.triggered_by)
        if reason is not None:
            raise PromotionRefused([reason])
        approvals.record_approval(
            session,
            run_id,
            step=gate.name,
            user=approver.user,
            decision="approve" if approved else "reject",
            comment=comment,
            now=now,
        )
        run.wake_at = now
        audit.record_audit(
            session,
            identity=approver.user,
            action="run.approve" if approved else "run.reject",
            target=f"run/{run_id}",
            details={"step": gate.name, "comment": comment},
            now=now,
        )
        return gate.name


def gate_decisions(session: Session, run_id: int, step: str) -> tuple[gates.ApprovalDecision, ...]:
    """The decisions recorded at one gate of a run, oldest first."""
    rows = approvals.list_approvals(session, run_id, step=step)
    return tuple(
        gates.ApprovalDecision(
            user=r.user,
            approved=r.decision == "approve",
            comment=r.comment,
            decided_at=r.decided_at,
        )
        for r in rows
    )


def cancel(services: Services, run_id: int, *, user: str) -> None:
    """Cancel a run that has not finished; a running step is stopped by its worker."""
    now = services.clock()
    with unit_of_work(services.engine) as session:
        run = load_run(session, run_id)
        if RunStatus(run.status).is_terminal:
            raise Conflict(f"run {run_id} already {run.status}; nothing to cancel")
        run.cancel_requested_at = now
        run.wake_at = now
        if run.claimed_by is None:
            finish(session, run, RunStatus.CANCELLED, now=now, error=f"cancelled by {user}")
        audit.record_audit(
            session, identity=user, action="run.cancel", target=f"run/{run_id}", details={}, now=now
        )


def finish(
    session: Session,
    run: tables.Run,
    status: RunStatus,
    *,
    now: datetime,
    error: str | None,
    steps: Sequence[tables.Step] | None = None,
    triggers_due: bool = False,
) -> None:
    """Move a run to a terminal status, closing its unfinished steps.

    ``steps``: the run's steps when the caller has them loaded in this session.
    ``triggers_due``: `pipeline:` triggers wait for this run (service/triggers.py).
    """
    run.status = status
    run.finished_at = now
    run.error = error
    run.triggers_due = triggers_due
    run.claimed_by = None
    run.lease_expires_at = None
    run.wake_at = None
    for step in run_steps(session, run.id) if steps is None else steps:
        if not StepStatus(step.status).is_terminal:
            step.status = (
                StepStatus.CANCELLED if status == RunStatus.CANCELLED else StepStatus.SKIPPED
            )
            step.finished_at = now


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`K=V` pairs from the command line."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--param '{pair}': write NAME=VALUE, e.g. R_VERSION=1.4.2")
        values[name] = value
    return values


def rollback(
    services: Services,
    environment: str,
    *,
    to_run: int | None,
    to_digest: str | None,
    user: str,
) -> int:
    """Start a run that redeploys an earlier digest of ``environment`` through the same gates."""
    target = environments.rollback_target(services, environment, to_run=to_run, to_digest=to_digest)
    with unit_of_work(services.engine, read_only=True) as session:
        origin = session.get(tables.Run, target.run_id) if target.run_id is not None else None
    if origin is None:
        raise NotFound("run", str(target.run_id), hint="the deployment's run is gone")
    return start_run(
        services,
        RunRequest(
            pipeline=origin.pipeline,
            parameters=dict(origin.parameters),
            user=user,
            trigger="rollback",
            pinned=target.image,
            pinned_registry=origin.image_registry
            or services.definitions.registry_for_host(target.registry),
        ),
    )
