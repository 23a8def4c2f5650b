"""Reading the audit log: every write, with the identity that made it, newest first."""

from __future__ import annotations

from typing import Any

from conveyor.service import listing
from conveyor.service.context import Services
from conveyor.store import audit
from conveyor.store.database import unit_of_work


def list_entries(services: Services, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest `limit` audit entries as plain dictionaries (the stable --json shape)."""
    listing.check_listing(limit)
    with unit_of_work(services.engine, read_only=True) as session:
        return [
            {
                "id": entry.id,
                "at": entry.at,
                "identity": entry.identity,
                "action": entry.action,
                "target": entry.target,
                "details": entry.details,
            }
            for entry in audit.list_audit(session, limit=limit)
        ]
