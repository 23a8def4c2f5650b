"""Poll state per artifact source (validators for conditional requests; issue 6).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_polls",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("tags_etag", sa.String(length=500), nullable=True),
        sa.Column("tags_last_modified", sa.String(length=500), nullable=True),
        sa.Column("tag", sa.String(length=200), nullable=True),
        sa.Column("digest", sa.String(length=200), nullable=True),
        sa.Column("manifest_etag", sa.String(length=500), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_source_polls")),
    )


def downgrade() -> None:
    op.drop_table("source_polls")
