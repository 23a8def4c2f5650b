"""Index the repeats of an event (``events.duplicate_of``), partially.

Pruning the inbox (``conveyor events prune``, ``--event-retention``) keeps
an original that a kept repeat names, and both SQLite and PostgreSQL check
the self-referencing foreign key for every event deleted: without an index
each of those looks scans the whole inbox. Only repeats have the column set,
so the index holds those rows alone and ordinary deliveries pay nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REPEATS = sa.text("duplicate_of IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_events_duplicate_of",
        "events",
        ["duplicate_of"],
        unique=False,
        sqlite_where=_REPEATS,
        postgresql_where=_REPEATS,
    )


def downgrade() -> None:
    op.drop_index("ix_events_duplicate_of", table_name="events")
