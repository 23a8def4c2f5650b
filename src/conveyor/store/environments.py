"""Environments: deployment history, verification records, and digests marked bad."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store.tables import BadDigest, Deployment, VerificationRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDeployment:
    """A digest put into an environment."""

    environment: str
    registry_host: str
    repository: str
    digest: str
    tag: str | None
    run_id: int | None
    deployed_by: str
    kind: str = "deploy"


def record_deployment(session: Session, new: NewDeployment, *, now: datetime) -> Deployment:
    """Append to an environment's history; the newest row is what it runs now."""
    deployment = Deployment(
        environment=new.environment,
        registry_host=new.registry_host,
        repository=new.repository,
        digest=new.digest,
        tag=new.tag,
        run_id=new.run_id,
        deployed_by=new.deployed_by,
        deployed_at=now,
        kind=new.kind,
    )
    session.add(deployment)
    session.flush()
    return deployment


def fetch_current_deployment(session: Session, environment: str) -> Deployment | None:
    """What the environment runs now (its newest deployment), or None."""
    return session.scalars(
        sa.select(Deployment)
        .where(Deployment.environment == environment)
        .order_by(Deployment.id.desc())
        .limit(1)
    ).first()


def list_history(session: Session, environment: str, *, limit: int = 100) -> list[Deployment]:
    """An environment's deployments, newest first."""
    return list(
        session.scalars(
            sa.select(Deployment)
            .where(Deployment.environment == environment)
            .order_by(Deployment.id.desc())
            .limit(limit)
        )
    )


def record_verification(
    session: Session,
    *,
    digest: str,
    environment: str,
    run_id: int,
    approvals: Sequence[dict[str, Any]],
    now: datetime,
) -> VerificationRecord:
    """Record that `digest` passed `environment` in `run_id`; idempotent per that triple."""
    existing = session.scalars(
        sa.select(VerificationRecord).where(
            VerificationRecord.digest == digest,
            VerificationRecord.environment == environment,
            VerificationRecord.run_id == run_id,
        )
    ).first()
    if existing is not None:
        return existing
    record = VerificationRecord(
        digest=digest,
        environment=environment,
        run_id=run_id,
        approvals=list(approvals),
        verified_at=now,
    )
    session.add(record)
    session.flush()
    return record


def list_verifications(
    session: Session, digest: str, *, environment: str | None = None
) -> list[VerificationRecord]:
    """The verification records of a digest, oldest first, optionally in one environment."""
    query = sa.select(VerificationRecord).where(VerificationRecord.digest == digest)
    if environment is not None:
        query = query.where(VerificationRecord.environment == environment)
    return list(session.scalars(query.order_by(VerificationRecord.id)))


def mark_bad(session: Session, digest: str, *, reason: str, by: str, now: datetime) -> BadDigest:
    """Block a digest from every environment until cleared."""
    mark = BadDigest(digest=digest, reason=reason, marked_by=by, marked_at=now)
    session.add(mark)
    session.flush()
    return mark


def clear_bad(session: Session, digest: str, *, by: str, now: datetime) -> int:
    """Clear every open mark on a digest; returns how many were cleared."""
    result = session.execute(
        sa.update(BadDigest)
        .where(BadDigest.digest == digest, BadDigest.cleared_at.is_(None))
        .values(cleared_by=by, cleared_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def fetch_bad_mark(session: Session, digest: str) -> BadDigest | None:
    """The open mark on a digest (newest), or None when it is not marked bad."""
    return session.scalars(
        sa.select(BadDigest)
        .where(BadDigest.digest == digest, BadDigest.cleared_at.is_(None))
        .order_by(BadDigest.id.desc())
        .limit(1)
    ).first()
