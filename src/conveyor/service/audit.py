"""The audit log: every write, with the identity that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from conveyor.store import tables


def record(
    session: Session,
    *,
    identity: str,
    action: str,
    target: str,
    details: dict[str, Any],
    at: datetime,
) -> None:
    """Add one audit entry in the caller's transaction (so it commits with the change)."""
    session.add(
        tables.AuditEntry(identity=identity, action=action, target=target, details=details, at=at)
    )
