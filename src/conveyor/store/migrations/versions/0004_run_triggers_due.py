"""A run remembers that its `pipeline:` triggers are still to be handled.

``runs.triggers_due`` is set in the same commit that ends a run whose
pipeline some `pipeline:` trigger waits for, and cleared once the triggers
have been handled, so a crash between the two no longer loses them (a sweep
handles what is left). Runs that ended before this revision are not due:
their triggers were handled, or lost, under the old rules.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("triggers_due", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.create_index(batch.f("ix_runs_triggers_due"), ["triggers_due"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(batch.f("ix_runs_triggers_due"))
        batch.drop_column("triggers_due")
