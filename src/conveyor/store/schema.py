"""Migrations: bring a database to the schema of ``tables.py``, programmatically.

Alembic runs from the scripts packaged in ``migrations/`` (no alembic.ini is
needed). On PostgreSQL the upgrade holds a transaction-level advisory lock, so
several processes starting at once migrate one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from conveyor.store import database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

Progress = Callable[[str], None]


def alembic_config(engine: sa.Engine, *, progress: Progress | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations and this engine."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    config.attributes["progress"] = progress
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Conveyor."""
    script = ScriptDirectory.from_config(alembic_config(sa.create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None, "the packaged migrations have no head"
    return head


def upgrade(url: str, *, revision: str = "head", progress: Progress | None = None) -> str | None:
    """Migrate the database at `url` to `revision`; returns the revision it is now at.

    Idempotent: an up-to-date database is left unchanged. Raises
    InvalidDatabaseUrl or DatabaseUnavailable (password masked).
    """
    engine = database.create_engine(url)
    try:
        return upgrade_engine(engine, revision=revision, progress=progress)
    finally:
        engine.dispose()


def upgrade_engine(
    engine: sa.Engine, *, revision: str = "head", progress: Progress | None = None
) -> str | None:
    """Like `upgrade`, on an engine the caller owns."""
    with database.translate_errors(engine):
        command.upgrade(alembic_config(engine, progress=progress), revision)
        return current_revision(engine)


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with database.translate_errors(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def current(url: str) -> str | None:
    """The revision of the database at `url` (None when it was never migrated)."""
    engine = database.create_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()
