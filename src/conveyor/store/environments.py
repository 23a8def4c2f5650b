"""Environments: deployment history, verification records, and digests marked bad."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store import database
from conveyor.store.tables import BadDigest, Deployment, VerificationRecord

_verifications = cast(sa.Table, VerificationRecord.__table__)
_bad = cast(sa.Table, BadDigest.__table__)


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


@functools.cache
def _insert_verification(postgresql: bool) -> sa.Insert:
    return database.skipping_conflicts(
        _verifications, ("digest", "environment", "run_id"), postgresql=postgresql
    )


def record_verification(
    session: Session,
    *,
    digest: str,
    environment: str,
    run_id: int,
    approvals: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    """Record that `digest` passed `environment` in `run_id`; idempotent per that triple.

    One ``INSERT ... ON CONFLICT DO NOTHING`` (a Core statement built once): every
    successful run into an environment records one.
    """
    session.execute(
        _insert_verification(database.is_postgresql(session)),
        {
            "digest": digest,
            "environment": environment,
            "run_id": run_id,
            "approvals": list(approvals),
            "verified_at": now,
        },
    )


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


# The open mark on a digest, newest first: read by every gate check (built once).
_OPEN_MARK = (
    sa.select(_bad.c.reason, _bad.c.marked_by)
    .where(_bad.c.digest == sa.bindparam("digest"), _bad.c.cleared_at.is_(None))
    .order_by(_bad.c.id.desc())
    .limit(1)
)


def fetch_bad_mark(session: Session, digest: str) -> sa.Row[Any, Any] | None:
    """The open mark on a digest (newest: its ``reason`` and ``marked_by``), or None."""
    return session.execute(_OPEN_MARK, {"digest": digest}).first()
