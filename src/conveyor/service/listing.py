"""Checks shared by the listings (runs, events, the audit log): the window and the filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.core.errors import InvalidInput, Location, Problem

# Bounds of one listing (a larger window is a database export, not a listing).
MAX_LIMIT = 1000


def check_listing(
    limit: int, filters: Mapping[str, tuple[str | None, Sequence[str]]] | None = None
) -> None:
    """Refuse a limit outside 1..MAX_LIMIT or a filter value outside its choices.

    ``filters`` maps a field name to (the value asked for or None, the values
    it may take). Raises InvalidInput naming every wrong field.
    """
    problems = []
    if not 1 <= limit <= MAX_LIMIT:
        message = f"'limit' must be a number from 1 to {MAX_LIMIT}, found {limit}"
        problems.append(Problem(location=Location(field="limit"), message=message))
    for field, (value, allowed) in (filters or {}).items():
        if value is not None and value not in allowed:
            message = f"'{field}' must be one of {', '.join(allowed)}, found '{value}'"
            problems.append(Problem(location=Location(field=field), message=message))
    if problems:
        raise InvalidInput(problems)
