"""Pipeline definitions: one row per distinct content of a pipeline, numbered by version."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store.tables import PipelineDefinition


def content_hash(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON form of a definition (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def save_definition(
    session: Session, name: str, body: dict[str, Any], *, now: datetime
) -> PipelineDefinition:
    """Store a definition; unchanged content returns the existing version, new content the next.

    Idempotent per (name, content). Two processes saving the same new content at
    once: one insert wins and the other fails on uq_pipeline_definitions_name_content_hash.
    """
    digest = content_hash(body)
    existing = session.scalars(
        sa.select(PipelineDefinition).where(
            PipelineDefinition.name == name, PipelineDefinition.content_hash == digest
        )
    ).first()
    if existing is not None:
        return existing
    latest = session.scalar(
        sa.select(sa.func.max(PipelineDefinition.version)).where(PipelineDefinition.name == name)
    )
    definition = PipelineDefinition(
        name=name, version=(latest or 0) + 1, content_hash=digest, body=body, created_at=now
    )
    session.add(definition)
    session.flush()
    return definition


def fetch_latest_definition(session: Session, name: str) -> PipelineDefinition | None:
    """The newest version of a pipeline's definition, or None."""
    return session.scalars(
        sa.select(PipelineDefinition)
        .where(PipelineDefinition.name == name)
        .order_by(PipelineDefinition.version.desc())
        .limit(1)
    ).first()
