"""The schema: one typed declarative class per table, named with the glossary words.

Closed sets (statuses, kinds, roles) are strings guarded by CHECK constraints
rather than native PostgreSQL enums, so that adding a value is a one-line
migration on both backends. Every timestamp is a timezone-aware UTC
``datetime`` in Python, whatever the backend stores (see ``UtcDateTime``).
Migrations in ``migrations/versions`` must produce exactly this schema; the
store test suite diffs the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so that migrations can name what they alter.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")
STEP_STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "skipped", "cancelled")
SOURCE_KINDS = ("artifact", "pipeline", "build", "none")
TRIGGER_KINDS = ("manual", "registry_event", "poll", "schedule", "pipeline", "rollback")
LOG_STREAMS = ("stdout", "stderr", "system")
EVENT_KINDS = ("push", "scan_completed", "scan_failed", "delete")
EVENT_STATUSES = ("pending", "processed", "duplicate", "failed")
DEPLOYMENT_KINDS = ("deploy", "rollback")
DECISIONS = ("approve", "reject")
ROLES = ("viewer", "operator", "approver", "admin")


def is_one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text of a CHECK that a column holds one of the values."""
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is
    stored as naive UTC text and made aware again when read. Naive datetimes are
    refused on the way in: they are a bug (which zone did the caller mean?).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY (64-bit anyway).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite. Python None is
# SQL NULL (not the JSON text 'null'), so `IS NULL` finds every absent document.
JsonDocument = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (for defaults; callers normally pass `now`)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention and type map."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UtcDateTime(),
        dict[str, Any]: JsonDocument,
        list[Any]: JsonDocument,
    }


class PipelineDefinition(Base):
    """One version of a pipeline's definition, identified by the hash of its content."""

    __tablename__ = "pipeline_definitions"
    __table_args__ = (
        sa.UniqueConstraint("name", "content_hash"),
        sa.UniqueConstraint("name", "version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int]
    content_hash: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Run(Base):
    """One execution of a pipeline, with its image fixed when it starts."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("status", RUN_STATUSES), name="status"),
        sa.CheckConstraint(is_one_of("source_kind", SOURCE_KINDS), name="source_kind"),
        sa.CheckConstraint(is_one_of("trigger_kind", TRIGGER_KINDS), name="trigger_kind"),
        # One event starts at most one run of each pipeline, even with several processes.
        sa.UniqueConstraint("event_id", "pipeline"),
        sa.Index(None, "status", "created_at"),
        sa.Index(None, "pipeline", "status", "finished_at"),
        sa.Index(None, "triggers_due"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pipeline: Mapped[str] = mapped_column(sa.String(200))
    pipeline_version: Mapped[int | None]
    environment: Mapped[str | None] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16))
    image_registry: Mapped[str | None] = mapped_column(sa.String(255))
    image_repository: Mapped[str | None] = mapped_column(sa.String(255))
    image_digest: Mapped[str | None] = mapped_column(sa.String(200))
    image_tag: Mapped[str | None] = mapped_column(sa.String(128))
    source_kind: Mapped[str] = mapped_column(sa.String(16))
    upstream_run_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("runs.id"))
    event_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("events.id"))
    parameters: Mapped[dict[str, Any]]
    triggered_by: Mapped[str] = mapped_column(sa.String(200))
    trigger_kind: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    # Claims (see claims.py): which worker holds the run, until when, and when a
    # waiting run should be looked at again (an approval sets it to now).
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[datetime | None]
    wake_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    # Set in the commit that ends the run when a `pipeline:` trigger waits for its
    # pipeline; cleared once those triggers have been handled (service/triggers.py).
    triggers_due: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class Step(Base):
    """One step of a run: status, attempts, timings and what it produced."""

    __tablename__ = "steps"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("status", STEP_STATUSES), name="status"),
        sa.UniqueConstraint("run_id", "index"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempt: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(sa.Text)
    output: Mapped[dict[str, Any]]
    # While the step's command runs: who it is (host, boot id, pid, start time; see
    # engine/processes.py), so that a worker taking the run over can stop it.
    process: Mapped[dict[str, Any] | None]


class StepLog(Base):
    """One line of a step's log; ``seq`` numbers the lines of a step from 1."""

    __tablename__ = "step_logs"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("stream", LOG_STREAMS), name="stream"),
        sa.UniqueConstraint("step_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    step_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("steps.id", ondelete="CASCADE"))
    seq: Mapped[int]
    at: Mapped[datetime]
    stream: Mapped[str] = mapped_column(sa.String(8))
    line: Mapped[str] = mapped_column(sa.Text)


class Event(Base):
    """The inbox: one accepted registry delivery, and what it triggered and why."""

    __tablename__ = "events"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("kind", EVENT_KINDS), name="kind"),
        sa.CheckConstraint(is_one_of("status", EVENT_STATUSES), name="status"),
        # Registries retry: a delivery id is stored once per endpoint.
        sa.UniqueConstraint("endpoint", "delivery_id"),
        sa.Index(None, "status", "received_at"),
        sa.Index(None, "dedupe_key", "received_at"),
        # Repeats of an event (pruning keeps an original a kept repeat names, and the
        # foreign key is checked on every delete); only repeats have it, so an
        # ordinary delivery pays nothing for it.
        sa.Index(
            None,
            "duplicate_of",
            sqlite_where=sa.text("duplicate_of IS NOT NULL"),
            postgresql_where=sa.text("duplicate_of IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    sender: Mapped[str] = mapped_column(sa.String(64))
    delivery_id: Mapped[str] = mapped_column(sa.String(255))
    dedupe_key: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(16))
    registry_host: Mapped[str] = mapped_column(sa.String(255))
    repository: Mapped[str] = mapped_column(sa.String(255))
    tag: Mapped[str | None] = mapped_column(sa.String(128))
    digest: Mapped[str | None] = mapped_column(sa.String(200))
    scan_summary: Mapped[dict[str, Any] | None]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16))
    outcome: Mapped[dict[str, Any] | None]
    duplicate_of: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("events.id"))
    redeliveries: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[datetime | None]


class Deployment(Base):
    """An environment's history: which digest was put there, by whom, when, from which run."""

    __tablename__ = "deployments"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("kind", DEPLOYMENT_KINDS), name="kind"),
        sa.Index(None, "environment", "deployed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    environment: Mapped[str] = mapped_column(sa.String(200))
    registry_host: Mapped[str] = mapped_column(sa.String(255))
    repository: Mapped[str] = mapped_column(sa.String(255))
    digest: Mapped[str] = mapped_column(sa.String(200))
    tag: Mapped[str | None] = mapped_column(sa.String(128))
    run_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("runs.id"))
    deployed_by: Mapped[str] = mapped_column(sa.String(200))
    deployed_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(16))


class VerificationRecord(Base):
    """The fact "digest D passed environment E in run R at time T, approved by P"."""

    __tablename__ = "verification_records"
    __table_args__ = (
        sa.UniqueConstraint("digest", "environment", "run_id"),
        sa.Index(None, "environment", "digest"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(200))
    environment: Mapped[str] = mapped_column(sa.String(200))
    run_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("runs.id"))
    approvals: Mapped[list[Any]]
    verified_at: Mapped[datetime]


class Approval(Base):
    """One person's decision at a gate step of a run."""

    __tablename__ = "approvals"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("decision", DECISIONS), name="decision"),
        sa.UniqueConstraint("run_id", "step", "user"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(sa.String(200))
    user: Mapped[str] = mapped_column(sa.String(200))
    decision: Mapped[str] = mapped_column(sa.String(8))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    decided_at: Mapped[datetime]


class BadDigest(Base):
    """A digest blocked from every environment until the mark is cleared."""

    __tablename__ = "bad_digests"
    __table_args__ = (sa.Index(None, "digest"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str] = mapped_column(sa.Text)
    marked_by: Mapped[str] = mapped_column(sa.String(200))
    marked_at: Mapped[datetime]
    cleared_by: Mapped[str | None] = mapped_column(sa.String(200))
    cleared_at: Mapped[datetime | None]


class ApiToken(Base):
    """An API token: only its SHA-256 hash is stored, never the token."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        sa.CheckConstraint(is_one_of("role", ROLES), name="role"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One write, with the identity that made it."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index(None, "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(100))
    target: Mapped[str] = mapped_column(sa.String(500))
    details: Mapped[dict[str, Any]]
    at: Mapped[datetime]


class Lease(Base):
    """A named lock with an owner and an expiry (environment deploy locks; SQLite singletons)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(200))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


metadata = Base.metadata


class SourcePoll(Base):
    """What the last poll of an artifact source saw: validators for conditional requests.

    One row per polled source; only the source's singleton poller writes it.
    """

    __tablename__ = "source_polls"

    source: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    rule: Mapped[str] = mapped_column(sa.String(64))
    tags_etag: Mapped[str | None] = mapped_column(sa.String(500))
    tags_last_modified: Mapped[str | None] = mapped_column(sa.String(500))
    tag: Mapped[str | None] = mapped_column(sa.String(200))
    digest: Mapped[str | None] = mapped_column(sa.String(200))
    manifest_etag: Mapped[str | None] = mapped_column(sa.String(500))
    polled_at: Mapped[datetime]
    changed_at: Mapped[datetime]
