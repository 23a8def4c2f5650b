"""Use cases for environments: eligibility, history, verification records, rollback, mark-bad."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from conveyor.core import gates
from conveyor.core.errors import Conflict, InvalidInput, NotFound
from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.service.context import Services
from conveyor.store import audit, tables
from conveyor.store import environments as store_environments
from conveyor.store.database import unit_of_work


def requires_of(services: Services, environment: str) -> list[str]:
    """The environments a digest must be verified in before entering ``environment``."""
    definition = services.definitions.environment(environment)
    if definition is None:
        known = ", ".join(e.name for e in services.definitions.environments) or "none"
        raise NotFound("environment", environment, hint=f"defined: {known}")
    return list(definition.requires)


def verification_records(session: Session, digest: Digest) -> list[gates.VerificationRecord]:
    """Every verification record of a digest."""
    return [
        gates.VerificationRecord(
            digest=digest,
            environment=r.environment,
            run_id=r.run_id,
            verified_at=r.verified_at,
            approvers=tuple(str(a.get("user", "")) for a in r.approvals),
        )
        for r in store_environments.list_verifications(session, str(digest))
    ]


def bad_marks(session: Session, digest: Digest) -> list[gates.BadDigest]:
    """The open bad mark of a digest, if any."""
    mark = store_environments.fetch_bad_mark(session, str(digest))
    if mark is None:
        return []
    return [gates.BadDigest(digest=digest, reason=mark.reason, marked_by=mark.marked_by)]


def check(session: Session, services: Services, digest: Digest, environment: str) -> gates.Decision:
    """May ``digest`` enter ``environment`` now? The one question every path asks."""
    requires = requires_of(services, environment)
    return gates.can_deploy(
        digest,
        environment=environment,
        requires=requires,
        # Records matter only for required environments; a digest verified many times
        # has many, so they are not read for an environment that requires none.
        records=verification_records(session, digest) if requires else (),
        bad=bad_marks(session, digest),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentView:
    """One entry of an environment's history."""

    id: int
    environment: str
    image: PinnedImage
    registry: str
    run_id: int | None
    deployed_by: str
    deployed_at: datetime
    kind: str


def _view(row: tables.Deployment) -> DeploymentView:
    return DeploymentView(
        id=row.id,
        environment=row.environment,
        image=PinnedImage(
            repository=Repository.parse(row.repository),
            digest=Digest.parse(row.digest),
            tag=row.tag,
        ),
        registry=row.registry_host,
        run_id=row.run_id,
        deployed_by=row.deployed_by,
        deployed_at=row.deployed_at,
        kind=row.kind,
    )


def history(services: Services, environment: str) -> list[DeploymentView]:
    """An environment's deployments, newest first."""
    requires_of(services, environment)
    with unit_of_work(services.engine, read_only=True) as session:
        return [_view(r) for r in store_environments.list_history(session, environment)]


def current(services: Services, environment: str) -> DeploymentView | None:
    """What the environment runs now (its latest deployment)."""
    entries = history(services, environment)
    return entries[0] if entries else None


def record_deployment(
    session: Session,
    *,
    environment: str,
    image: PinnedImage,
    run_id: int,
    deployed_by: str,
    kind: str,
    at: datetime,
) -> None:
    """Append to an environment's history (in the caller's transaction)."""
    store_environments.record_deployment(
        session,
        store_environments.NewDeployment(
            environment=environment,
            registry_host=image.repository.registry,
            repository=str(image.repository),
            digest=str(image.digest),
            tag=image.tag,
            run_id=run_id,
            deployed_by=deployed_by,
            kind=kind,
        ),
        now=at,
    )


def mark_bad(services: Services, digest: str, *, reason: str, user: str) -> None:
    """Block a digest from every environment until the mark is cleared."""
    parsed = Digest.parse(digest)
    if not reason.strip():
        raise InvalidInput("--reason: say why the digest is bad (it is shown on every refusal)")
    now = services.clock()
    with unit_of_work(services.engine) as session:
        store_environments.mark_bad(session, str(parsed), reason=reason, by=user, now=now)
        audit.record_audit(
            session,
            identity=user,
            action="digest.mark_bad",
            target=str(parsed),
            details={"reason": reason},
            now=now,
        )


def clear_bad(services: Services, digest: str, *, user: str) -> int:
    """Clear every bad mark of a digest; returns how many were cleared."""
    parsed = Digest.parse(digest)
    now = services.clock()
    with unit_of_work(services.engine) as session:
        cleared = store_environments.clear_bad(session, str(parsed), by=user, now=now)
        if not cleared:
            raise Conflict(f"{parsed} is not marked bad")
        audit.record_audit(
            session,
            identity=user,
            action="digest.clear_bad",
            target=str(parsed),
            details={},
            now=now,
        )
        return cleared


def rollback_target(
    services: Services, environment: str, *, to_run: int | None, to_digest: str | None
) -> DeploymentView:
    """The earlier deployment a rollback redeploys: by run, by digest, or the previous one."""
    entries = history(services, environment)
    if not entries:
        raise Conflict(f"environment '{environment}' has no deployments to roll back to")
    if to_run is not None:
        match = next((e for e in entries if e.run_id == to_run), None)
        if match is None:
            raise NotFound("deployment of run", str(to_run), hint=f"in '{environment}' history")
        return match
    if to_digest is not None:
        digest = Digest.parse(to_digest)
        match = next((e for e in entries if e.image.digest == digest), None)
        if match is None:
            raise NotFound("deployment of digest", str(digest), hint=f"in '{environment}' history")
        return match
    now_running = entries[0].image.digest
    previous = next((e for e in entries if e.image.digest != now_running), None)
    if previous is None:
        raise Conflict(f"environment '{environment}' has never run another digest")
    return previous
