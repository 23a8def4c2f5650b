"""``conveyor db``: create and migrate the state database."""

from __future__ import annotations

import click

from conveyor import settings
from conveyor.store import database, schema

DATABASE_URL_OPTION = click.option(
    "--database-url",
    envvar="CONVEYOR_DATABASE_URL",
    show_envvar=True,
    default=None,
    help="sqlite:///path/to/state.db or postgresql://user:password@host:5432/dbname "
    "[default: sqlite:///.conveyor/state.db, under CONVEYOR_DATA_DIR]",
)


def _resolve_url(database_url: str | None) -> str:
    return database_url or settings.from_environ().database_url


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


@click.group("db")
def db() -> None:
    """Create and migrate the state database."""


@db.command("upgrade")
@DATABASE_URL_OPTION
def upgrade(database_url: str | None) -> None:
    """Migrate the database to the newest schema (creates it if empty)."""
    url = _resolve_url(database_url)
    database.parse_url(url)
    click.echo(f"upgrading {database.masked(url)} to {schema.head_revision()}", err=True)
    revision = schema.upgrade(url, progress=_progress)
    click.echo(f"database at revision {revision}")


@db.command("current")
@DATABASE_URL_OPTION
def current(database_url: str | None) -> None:
    """Print the database's schema revision ('none' when never migrated)."""
    url = _resolve_url(database_url)
    revision = schema.current(url)
    head = schema.head_revision()
    state = "up to date" if revision == head else f"behind {head}: run `conveyor db upgrade`"
    click.echo(f"{revision or 'none'} ({state})")
