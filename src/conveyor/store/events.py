"""The events inbox: accepted registry deliveries, stored once, processed asynchronously."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.core import events as core_events
from conveyor.core.errors import NotFound
from conveyor.store import database
from conveyor.store.tables import Event, Run


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What recording one delivery of a batch did (no ORM object: the hot path stays in Core).

    ``id`` is the inbox row: the new one, or for a redelivery (``created`` false)
    the original, whose ``redeliveries`` counter went up. ``status`` is the new
    row's ``pending`` or ``duplicate`` (then ``duplicate_of`` names the row with
    the same content), or ``redelivery``.
    """

    id: int
    created: bool
    status: str
    duplicate_of: int | None = None


def dedupe_key(delivery: Delivery) -> str:
    """The delivery's content identity: ``core.events.dedupe_key`` of what is stored."""
    return core_events.dedupe_key(
        kind=delivery.kind,
        registry=delivery.registry_host,
        repository=delivery.repository,
        digest=delivery.digest,
        tag=delivery.tag,
    )


_EVENTS: sa.Table = Event.__table__  # type: ignore[assignment]
# Built once: SQLAlchemy caches each one's compiled form, so a batch compiles no SQL.
# Endpoint first: the unique index on (endpoint, delivery_id) serves the lookup.
_EXISTING = sa.select(_EVENTS.c.id, _EVENTS.c.delivery_id).where(
    _EVENTS.c.endpoint == sa.bindparam("endpoint"),
    _EVENTS.c.delivery_id.in_(sa.bindparam("delivery_ids", expanding=True)),
)
_ORIGINALS = (
    sa.select(_EVENTS.c.id, _EVENTS.c.dedupe_key, _EVENTS.c.received_at)
    .where(
        _EVENTS.c.dedupe_key.in_(sa.bindparam("keys", expanding=True)),
        _EVENTS.c.received_at >= sa.bindparam("since"),
        _EVENTS.c.duplicate_of.is_(None),
    )
    .order_by(_EVENTS.c.id)
)
_RETURNING = (_EVENTS.c.id, _EVENTS.c.endpoint, _EVENTS.c.delivery_id)
_INSERTS: dict[str, Any] = {
    name: database.skipping_conflicts(
        _EVENTS, ("endpoint", "delivery_id"), postgresql=name == "postgresql"
    ).returning(*_RETURNING)
    for name in ("sqlite", "postgresql")
}
# The advisory-lock namespace of inbox contents ("cnvy"), and the locking
# statement: an aggregate reads its sorted subquery in order, one lock per row.
_CONTENT_LOCKS = 0x636E7679
_LOCK_CONTENTS = sa.text(
    "SELECT count(pg_advisory_xact_lock(:namespace, h)) FROM "
    "(SELECT h FROM unnest(CAST(:hashes AS integer[])) AS u(h) ORDER BY h) AS ordered"
)
_COUNT_REDELIVERIES = (
    sa.update(_EVENTS)
    .where(
        _EVENTS.c.endpoint == sa.bindparam("e_endpoint"),
        _EVENTS.c.delivery_id == sa.bindparam("e_delivery_id"),
    )
    .values(redeliveries=_EVENTS.c.redeliveries + sa.bindparam("e_count"))
)


def record_deliveries(
    connection: sa.Connection,
    received: Sequence[tuple[Delivery, datetime]],
    *,
    duplicate_window: timedelta | None = None,
) -> list[Stored]:
    """Store many deliveries, each with its receive time, in the connection's transaction.

    The outcome is that of ``record_delivery`` called for each in order, with a
    fixed number of statements per batch instead of several per delivery: one
    lookup of the delivery ids, one of the dedupe keys, one multi-row
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (a second one only for
    content duplicates of rows new in the same batch), one counter update.

    A delivery id already stored on its endpoint, in the database or earlier in
    the batch, is a redelivery: nothing new is stored and the original's
    ``redeliveries`` goes up. A new delivery whose content (dedupe key) was
    received within ``duplicate_window``, in the database or earlier in the
    batch, is stored with status ``duplicate`` and ``duplicate_of`` set, so the
    inbox shows it but nothing triggers. Safe under concurrency: the unique
    constraint decides, a conflict with another writer's row is a redelivery,
    and no exception escapes on a conflict.
    """
    if not received:
        return []
    keys = [dedupe_key(delivery) for delivery, _ in received]
    stored_ids = _stored_ids(connection, {(d.endpoint, d.delivery_id) for d, _ in received})
    known: dict[str, list[tuple[int, datetime]]] = {}
    if duplicate_window is not None:
        _lock_contents(connection, keys)
        since = min(at for _, at in received) - duplicate_window
        for row in connection.execute(_ORIGINALS, {"keys": sorted(set(keys)), "since": since}):
            known.setdefault(row.dedupe_key, []).append((row.id, _aware(row.received_at)))

    # Decide each delivery in order; rows new in this batch are referred to by index.
    plans: list[_Plan] = []
    first_in_batch: set[tuple[str, str]] = set()
    batch_originals: dict[str, tuple[int, datetime]] = {}
    for index, ((delivery, at), key) in enumerate(zip(received, keys, strict=True)):
        ident = (delivery.endpoint, delivery.delivery_id)
        if ident in stored_ids or ident in first_in_batch:
            plans.append(_Plan(ident=ident))
            continue
        first_in_batch.add(ident)
        plan = _Plan(ident=ident, values=_row(delivery, key, at))
        if duplicate_window is not None:
            floor = at - duplicate_window
            plan.duplicate_of = next((i for i, when in known.get(key, ()) if when >= floor), None)
            earlier = batch_originals.get(key)
            if plan.duplicate_of is None and earlier is not None and earlier[1] >= floor:
                plan.duplicate_of_index = earlier[0]
            elif plan.duplicate_of is None:
                batch_originals.setdefault(key, (index, at))
        plans.append(plan)

    insert = _INSERTS[connection.dialect.name]
    new = [p for p in plans if p.values is not None]
    for group in (
        [p for p in new if p.duplicate_of_index is None],
        [p for p in new if p.duplicate_of_index is not None],
    ):
        if not group:
            continue
        for plan in group:
            if plan.duplicate_of_index is not None:
                plan.duplicate_of = _row_id(plans[plan.duplicate_of_index], stored_ids)
        inserted = {
            (endpoint, delivery_id): row_id
            for row_id, endpoint, delivery_id in connection.execute(
                insert, [p.finished_values() for p in group]
            )
        }
        for plan in group:
            plan.id = inserted.get(plan.ident)
            if plan.id is not None:
                stored_ids[plan.ident] = plan.id
        # A row missing from RETURNING: another writer stored this delivery id
        # meanwhile (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers).
        lost = {p.ident for p in group if p.id is None}
        if lost:
            stored_ids.update(_stored_ids(connection, lost))

    counts: dict[tuple[str, str], int] = {}
    for plan in plans:
        if plan.id is None:
            counts[plan.ident] = counts.get(plan.ident, 0) + 1
    if counts:
        connection.execute(
            _COUNT_REDELIVERIES,
            [
                {"e_endpoint": endpoint, "e_delivery_id": delivery_id, "e_count": count}
                for (endpoint, delivery_id), count in counts.items()
            ],
        )
    return [_outcome(plan, stored_ids) for plan in plans]


def _lock_contents(connection: sa.Connection, keys: Sequence[str]) -> None:
    """On PostgreSQL, serialise writers of the same content until this transaction ends.

    The content check (a lookup of earlier rows with the same dedupe key) and
    the insert are two statements: without this, two servers storing the same
    change under different delivery ids at the same moment would each miss the
    other's uncommitted row and both store it as new, starting two runs. A
    transaction-level advisory lock per dedupe key makes the second writer wait
    for the first one's commit; under READ COMMITTED its lookup, a new
    statement, then sees that row. Locks are taken in one statement, in key
    order, so two batches cannot deadlock. Their two-int keys (a namespace and
    32 bits of the key's hash) cannot meet the singleton locks' 64-bit keys,
    and a hash collision only makes unrelated writers take turns. SQLite needs
    none of this: ``BEGIN IMMEDIATE`` already admits one writer at a time.
    """
    if connection.dialect.name != "postgresql":
        return
    hashes = sorted({_content_lock(key) for key in keys})
    connection.execute(_LOCK_CONTENTS, {"namespace": _CONTENT_LOCKS, "hashes": hashes})


def _content_lock(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)


def record_delivery(
    session: Session,
    delivery: Delivery,
    *,
    now: datetime,
    duplicate_window: timedelta | None = None,
) -> Recorded:
    """Store one delivery once per (endpoint, delivery id) and return its inbox row.

    ``record_deliveries`` of one delivery; a redelivery returns the original
    row with its counter gone up.
    """
    [stored] = record_deliveries(
        session.connection(), [(delivery, now)], duplicate_window=duplicate_window
    )
    event = session.scalars(
        sa.select(Event).where(Event.id == stored.id).execution_options(populate_existing=True)
    ).one()
    return Recorded(event=event, created=stored.created)


@dataclass(slots=True, kw_only=True)
class _Plan:
    """One delivery of a batch: a new row (``values``) or a redelivery (no values)."""

    ident: tuple[str, str]
    values: dict[str, Any] | None = None
    duplicate_of: int | None = None
    duplicate_of_index: int | None = None
    id: int | None = None

    def finished_values(self) -> dict[str, Any]:
        assert self.values is not None
        if self.duplicate_of is None:
            return self.values
        return self.values | {
            "status": "duplicate",
            "duplicate_of": self.duplicate_of,
            "outcome": {"duplicate_of": self.duplicate_of},
        }


def _stored_ids(
    connection: sa.Connection, idents: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The stored row ids of these (endpoint, delivery id) pairs: one query per endpoint."""
    by_endpoint: dict[str, list[str]] = {}
    for endpoint, delivery_id in sorted(idents):
        by_endpoint.setdefault(endpoint, []).append(delivery_id)
    found: dict[tuple[str, str], int] = {}
    for endpoint, delivery_ids in by_endpoint.items():
        for row_id, delivery_id in connection.execute(
            _EXISTING, {"endpoint": endpoint, "delivery_ids": delivery_ids}
        ):
            found[(endpoint, delivery_id)] = row_id
    return found


def _row(delivery: Delivery, key: str, at: datetime) -> dict[str, Any]:
    return {
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
        "received_at": at,
        "status": "pending",
        "duplicate_of": None,
        "outcome": None,
        "redeliveries": 0,
        "attempts": 0,
    }


def _row_id(plan: _Plan, stored_ids: dict[tuple[str, str], int]) -> int:
    """The inbox id a planned delivery ended up as: its own new row, or the one it repeats."""
    return plan.id if plan.id is not None else stored_ids[plan.ident]


def _outcome(plan: _Plan, stored_ids: dict[tuple[str, str], int]) -> Stored:
    if plan.id is None:
        return Stored(id=stored_ids[plan.ident], created=False, status="redelivery")
    if plan.duplicate_of is not None:
        return Stored(id=plan.id, created=True, status="duplicate", duplicate_of=plan.duplicate_of)
    return Stored(id=plan.id, created=True, status="pending")


def _aware(value: datetime) -> datetime:
    # UtcDateTime makes results aware already; this only guards a naive value.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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


# Inbox rows that are done with: their triggers were matched (or they repeat one that was).
PRUNABLE_STATUSES = ("processed", "duplicate", "failed")
_RUNS: sa.Table = Run.__table__  # type: ignore[assignment]


def _prunable(before: datetime) -> sa.Select[tuple[int]]:
    """Ids of rows received before ``before`` and done with.

    A row still pending is never one. Nor is an original that a row kept
    (newer, or pending) names as ``duplicate_of``: the inbox must still show
    what that row repeats.
    """
    done = sa.and_(_EVENTS.c.received_at < before, _EVENTS.c.status.in_(PRUNABLE_STATUSES))
    repeat = _EVENTS.alias("repeat")
    kept_repeat = (
        sa.exists()
        .where(repeat.c.duplicate_of == _EVENTS.c.id)
        .where(
            sa.or_(
                repeat.c.received_at >= before,
                repeat.c.status.not_in(PRUNABLE_STATUSES),
            )
        )
    )
    # No ORDER BY: any of them will do, and sorting every candidate for each chunk
    # would cost more than the chunk's delete on a large inbox.
    return sa.select(_EVENTS.c.id).where(done, ~kept_repeat)


def count_prunable(connection: sa.Connection, *, before: datetime) -> int:
    """How many rows ``prune_events`` would delete for this cut-off."""
    prunable = _prunable(before).subquery()
    return int(connection.scalar(sa.select(sa.func.count()).select_from(prunable)) or 0)


def prune_events(connection: sa.Connection, *, before: datetime, limit: int) -> int:
    """Delete about ``limit`` rows that ``_prunable`` selects; returns how many went.

    Runs started by a deleted row keep everything they recorded but the link
    (``runs.event_id`` becomes NULL).
    """
    ids = set(connection.scalars(_prunable(before).limit(limit)))
    if not ids:
        return 0
    # The repeats of these originals are prunable too (else the original would be kept),
    # but may lie beyond the limit: they go with their originals, or the foreign key fails.
    ids.update(connection.scalars(sa.select(_EVENTS.c.id).where(_EVENTS.c.duplicate_of.in_(ids))))
    connection.execute(sa.update(_RUNS).where(_RUNS.c.event_id.in_(ids)).values(event_id=None))
    # One statement for originals and repeats: the foreign key is checked at its end.
    result = connection.execute(sa.delete(_EVENTS).where(_EVENTS.c.id.in_(ids)))
    return int(result.rowcount)
