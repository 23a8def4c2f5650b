"""Absent JSON documents are SQL NULL: rewrite the JSON text 'null' stored before.

Until this revision a Python None written to a nullable JSON column
(``events.scan_summary``, ``events.outcome``) was stored as the JSON value
``null``, which ``IS NULL`` does not find. The tables now store SQL NULL
(``none_as_null``); this turns the old rows into the same. Both read back as
None, so the downgrade has nothing to undo.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NULLABLE_DOCUMENTS = {"events": ("scan_summary", "outcome")}


def upgrade() -> None:
    for table, columns in NULLABLE_DOCUMENTS.items():
        for column in columns:
            # JSON text on SQLite, JSONB on PostgreSQL: either way its text is 'null'.
            op.execute(
                sa.text(
                    f"UPDATE {table} SET {column} = NULL "
                    f"WHERE {column} IS NOT NULL AND CAST({column} AS TEXT) = 'null'"
                )
            )


def downgrade() -> None:
    pass
