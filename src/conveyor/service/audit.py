"""Reading the audit log: every write, with the identity that made it, newest first."""

from __future__ import annotations

from typing import Any

from conveyor.core.errors import InvalidInput, Location, Problem
from conveyor.service.context import Services
from conveyor.store import audit
from conveyor.store.database import unit_of_work

# Bounds of one read (a larger window is a database export, not a listing).
MAX_LIMIT = 1000


def list_entries(services: Services, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest `limit` audit entries as plain dictionaries (the stable --json shape)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            [
                Problem(
                    location=Location(field="limit"),
                    message=f"'limit' must be a number from 1 to {MAX_LIMIT}, found {limit}",
                )
            ]
        )
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
