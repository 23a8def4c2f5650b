"""`conveyor audit list`: who wrote what, newest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from conveyor.cli.runs import _emit, _services, json_option, state_options
from conveyor.service import audit


@click.group("audit")
def audit_group() -> None:
    """The audit log: every write, with the identity that made it."""


@audit_group.command("list")
@click.option("--limit", default=50, show_default=True, help="How many entries, newest first.")
@state_options
@json_option
def audit_list(
    limit: int, config_path: Path | None, database_url: str | None, as_json: bool
) -> None:
    """Recent audit entries, newest first."""
    services, _ = _services(config_path, database_url)
    rows = audit.list_entries(services, limit=limit)

    def human(data: list[dict[str, Any]]) -> None:
        click.echo(f"{'ID':>5}  {'AT':<20} {'IDENTITY':<16} {'ACTION':<20} {'TARGET':<24} DETAILS")
        for row in data:
            at = row["at"].strftime("%Y-%m-%d %H:%M:%S")
            details = json.dumps(row["details"], sort_keys=True, default=str)
            click.echo(
                f"{row['id']:>5}  {at:<20} {row['identity']:<16} {row['action']:<20} "
                f"{row['target']:<24} {details}"
            )

    _emit(rows, as_json, human)
