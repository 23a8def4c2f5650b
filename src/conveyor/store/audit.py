"""The audit log: every write, with the identity that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store.tables import AuditEntry


def record_audit(
    session: Session,
    *,
    identity: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Append one entry in the caller's transaction (so it commits with the write it records)."""
    session.execute(
        _INSERT,
        {
            "identity": identity,
            "action": action,
            "target": target,
            "details": dict(details or {}),
            "at": now,
        },
    )


# A Core insert, built once: every write records one entry.
_INSERT = sa.insert(cast(sa.Table, AuditEntry.__table__))


def list_audit(session: Session, *, limit: int = 100) -> list[AuditEntry]:
    """Audit entries, newest first."""
    return list(session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))
