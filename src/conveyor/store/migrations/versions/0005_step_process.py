"""A step records the command process it has running.

``steps.process`` holds, while a step's command runs, what identifies it
(host name, boot id, pid namespace, pid = process group id, the leader's
start time); it is cleared when the command ends. A worker that takes a run
over after its worker was killed uses it to stop the command left running
before the step runs again or fails. Steps written before this revision
have none: their commands are left alone, as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    document = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("process", document, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("process")
