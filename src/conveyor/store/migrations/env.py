"""Alembic environment: runs online against the engine handed over by conveyor.store.schema."""

from __future__ import annotations

import zlib
from typing import Any

from alembic import context

from conveyor.store import tables

# pg_advisory_xact_lock key: a fixed number derived from a fixed name.
MIGRATION_LOCK_KEY = zlib.crc32(b"conveyor:migrations")


def _report(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:  # noqa: ANN401
    progress = context.config.attributes.get("progress")
    if progress is not None:
        progress(f"applied {step.up_revision_id}: {step.up_revision.doc}")


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=tables.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            on_version_apply=_report,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Conveyor migrations run online only: use `conveyor db upgrade`")
run_migrations_online()
