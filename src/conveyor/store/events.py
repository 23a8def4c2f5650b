"""The events inbox: accepted registry deliveries, stored once, processed asynchronously."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.core.errors import NotFound
from conveyor.store import database
from conveyor.store.tables import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One normalised registry event as received on an endpoint."""

    endpoint: str
    sender: str
    delivery_id: str
    kind: str
    registry_host: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    scan_summary: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """The outcome of recording a delivery: the inbox event and whether it is new."""

    event: Event
    created: bool


def dedupe_key(delivery: Delivery) -> str:
    """sha256 over kind, registry, repository, digest and tag: the same change twice."""
    parts = [
        delivery.kind,
        delivery.registry_host,
        delivery.repository,
        delivery.digest or "",
        delivery.tag or "",
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def record_delivery(
    session: Session,
    delivery: Delivery,
    *,
    now: datetime,
    duplicate_window: timedelta | None = None,
) -> Recorded:
    """Store a delivery once per (endpoint, delivery id); a redelivery only counts up.

    A new delivery whose content (dedupe key) was already received within
    `duplicate_window` is stored with status ``duplicate`` and ``duplicate_of``
    set, so the inbox shows it but nothing triggers. Safe under concurrency: the
    unique constraint decides, and no exception escapes on a conflict.
    """
    key = dedupe_key(delivery)
    status, original = "pending", None
    if duplicate_window is not None:
        original = session.scalar(
            sa.select(Event.id)
            .where(
                Event.dedupe_key == key,
                Event.received_at >= now - duplicate_window,
                Event.duplicate_of.is_(None),
            )
            .order_by(Event.id)
            .limit(1)
        )
        status = "pending" if original is None else "duplicate"
    created = database.insert_ignoring_conflicts(
        session,
        Event,
        {
            "endpoint": delivery.endpoint,
            "sender": delivery.sender,
            "delivery_id": delivery.delivery_id,
            "dedupe_key": key,
            "kind": delivery.kind,
            "registry_host": delivery.registry_host,
            "repository": delivery.repository,
            "tag": delivery.tag,
            "digest": delivery.digest,
            "scan_summary": delivery.scan_summary,
            "received_at": now,
            "status": status,
            "duplicate_of": original,
            "redeliveries": 0,
            "attempts": 0,
        },
        conflict_columns=("endpoint", "delivery_id"),
    )
    same_delivery = (Event.endpoint == delivery.endpoint) & (
        Event.delivery_id == delivery.delivery_id
    )
    if not created:
        session.execute(
            sa.update(Event).where(same_delivery).values(redeliveries=Event.redeliveries + 1)
        )
    event = session.scalars(
        sa.select(Event).where(same_delivery).execution_options(populate_existing=True)
    ).one()
    return Recorded(event=event, created=created)


def fetch_event(session: Session, event_id: int) -> Event:
    """The inbox event with this id; raises NotFound."""
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("event", str(event_id), hint="list events with `conveyor events list`")
    return event


def list_events(session: Session, *, status: str | None = None, limit: int = 50) -> list[Event]:
    """Inbox events, newest first."""
    query = sa.select(Event).order_by(Event.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Event.status == status)
    return list(session.scalars(query))


def mark_processed(
    session: Session,
    event_id: int,
    *,
    outcome: dict[str, Any],
    now: datetime,
    status: str = "processed",
) -> Event:
    """Record what an event triggered (matched and unmatched triggers, with reasons)."""
    event = fetch_event(session, event_id)
    event.status = status
    event.outcome = outcome
    event.processed_at = now
    event.claimed_by = None
    event.lease_expires_at = None
    session.flush()
    return event


def requeue_event(session: Session, event_id: int) -> Event:
    """Make an event pending again (``conveyor events replay``)."""
    event = fetch_event(session, event_id)
    event.status = "pending"
    event.processed_at = None
    event.claimed_by = None
    event.lease_expires_at = None
    session.flush()
    return event
