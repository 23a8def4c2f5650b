"""Who does which piece of work: run claims, leases, and singleton locks.

Conveyor scales out by sharing one PostgreSQL database, with no cluster
protocol of its own (SPEC.md, "Where users outgrow one machine").

**Claiming runs and events: ``SELECT ... FOR UPDATE SKIP LOCKED``.** A worker
picks the oldest claimable row, locking it; a second worker running the same
query at the same moment skips the locked row and takes the next one instead of
waiting for the first transaction or failing. Each claim then records the
worker (``claimed_by``) and a lease (``lease_expires_at``) and commits, so the
row lock is held only for the instant of the claim. A worker renews its lease
while it works; if it dies, the lease runs out and another worker's claim
picks the run up again (crash recovery). The guarded ``UPDATE ... WHERE``
re-checks the claim condition, so even without row locks a run can only be
handed to one claimer.

**Singletons (pollers, schedulers): advisory locks.** ``pg_try_advisory_lock``
takes a lock on a 64-bit key that belongs to a database session, not to a row
or transaction. The holder keeps one dedicated connection open; if its process
dies, PostgreSQL drops the connection and the lock with it, so a standby takes
over at its next try without any expiry to tune.

**SQLite.** SQLite has one writer at a time and no row locks: ``SKIP LOCKED``
does not exist and is not needed. A claim is one guarded
``UPDATE runs SET claimed_by=... WHERE id=? AND <still claimable>`` inside a
``BEGIN IMMEDIATE`` transaction (see database.py), so two claimers are
serialised by the database file lock and the second sees the run already
claimed. Advisory locks do not exist either: singletons use a row in
``leases`` (owner plus expiry), which the holder must renew before it expires;
a crashed holder is replaced once its lease runs out. The same ``leases``
table serves environment deploy locks on both backends, because a deploy lock
must outlive any one transaction and be visible to every process.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store import database
from conveyor.store.tables import Event, Lease, Run


@dataclass(frozen=True, slots=True, kw_only=True)
class RunClaim:
    """A run handed to one worker, with the status it had when it was claimed."""

    run_id: int
    previous_status: str
    lease_expires_at: datetime

    @property
    def recovered(self) -> bool:
        """Whether the run was running under another worker whose lease ran out."""
        return self.previous_status == "running"


# The statuses a claimable run can have: the claim query searches the (status, created_at)
# index for these instead of scanning every run ever made.
_UNFINISHED = ("queued", "running", "waiting")
_runs = cast(sa.Table, Run.__table__)
_events = cast(sa.Table, Event.__table__)


def _claimable_run(now: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    c = _runs.c
    unheld = sa.or_(c.claimed_by.is_(None), c.lease_expires_at < now)
    woken = sa.and_(c.status == "waiting", c.wake_at <= now)
    return sa.and_(
        c.status.in_(_UNFINISHED),
        sa.or_(c.status == "queued", sa.and_(sa.or_(woken, c.status == "running"), unheld)),
    )


@functools.cache
def _run_claim_statements(postgresql: bool) -> tuple[sa.Select[Any], sa.Update]:
    """The claim query and the guarded claim, built once (parameters: now, worker, expires).

    Prebuilt Core statements: claiming is the worker's hottest path, and
    building SQLAlchemy expressions costs more than SQLite takes to run them.
    """
    c = _runs.c
    now = sa.bindparam("now", type_=c.lease_expires_at.type)
    query = (
        sa.select(c.id, c.status).where(_claimable_run(now)).order_by(c.created_at, c.id).limit(1)
    )
    if postgresql:
        query = query.with_for_update(skip_locked=True)
    queued = c.status == "queued"
    claim = (
        sa.update(_runs)
        .where(c.id == sa.bindparam("run_id"), _claimable_run(now))
        .values(
            claimed_by=sa.bindparam("worker"),
            lease_expires_at=sa.bindparam("expires", type_=c.lease_expires_at.type),
            # A queued run starts now; any other keeps its status and start time.
            status=sa.case((queued, "running"), else_=c.status),
            started_at=sa.case((queued, now), else_=c.started_at),
        )
    )
    return query, claim


def claim_next_run(
    session: Session, *, worker: str, lease: timedelta, now: datetime
) -> RunClaim | None:
    """Claim the oldest claimable run for `worker`, or return None when there is none.

    Claimable: queued; waiting with ``wake_at`` reached; or running/waiting under
    an expired lease (its worker died). A queued run becomes running. No run is
    ever handed to two claimers at once, on either backend.
    """
    query, claim = _run_claim_statements(database.is_postgresql(session))
    expires = now + lease
    while (row := session.execute(query, {"now": now}).first()) is not None:
        run_id, status = row
        updated = session.execute(
            claim, {"run_id": run_id, "now": now, "worker": worker, "expires": expires}
        )
        if updated.rowcount == 1:  # type: ignore[attr-defined]
            return RunClaim(run_id=run_id, previous_status=status, lease_expires_at=expires)
    return None


def claim_run(
    session: Session, run_id: int, *, worker: str, lease: timedelta, now: datetime
) -> RunClaim | None:
    """Claim one particular run if it is claimable now (e.g. `conveyor run --wait`)."""
    row = session.execute(sa.select(_runs.c.status).where(_runs.c.id == run_id)).first()
    if row is None:
        return None
    status = row[0]
    expires = now + lease
    _, claim = _run_claim_statements(database.is_postgresql(session))
    updated = session.execute(
        claim, {"run_id": run_id, "now": now, "worker": worker, "expires": expires}
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return RunClaim(run_id=run_id, previous_status=status, lease_expires_at=expires)


def renew_run_lease(
    session: Session, run_id: int, *, worker: str, lease: timedelta, now: datetime
) -> bool:
    """Extend `worker`'s lease on a run; False when the worker no longer holds it.

    A Core statement (no ORM synchronisation): it fences every step outcome
    and runs in every heartbeat, so it is on the worker's hot path.
    """
    updated = session.execute(_RENEW, {"run_id": run_id, "worker": worker, "expires": now + lease})
    return bool(updated.rowcount == 1)  # type: ignore[attr-defined]


_RENEW = (
    sa.update(_runs)
    .where(_runs.c.id == sa.bindparam("run_id"), _runs.c.claimed_by == sa.bindparam("worker"))
    .values(lease_expires_at=sa.bindparam("expires", type_=_runs.c.lease_expires_at.type))
)


def release_run(session: Session, run_id: int, *, worker: str) -> bool:
    """Give a run back (e.g. it now waits at a gate); False when `worker` did not hold it."""
    updated = session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.claimed_by == worker)
        .values(claimed_by=None, lease_expires_at=None)
    )
    return bool(updated.rowcount == 1)  # type: ignore[attr-defined]


def _claimable_event(now: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    c = _events.c
    return sa.and_(
        c.status == "pending",
        sa.or_(c.claimed_by.is_(None), c.lease_expires_at < now),
    )


def claim_next_event(
    session: Session, *, worker: str, lease: timedelta, now: datetime
) -> int | None:
    """Claim the oldest pending inbox event for processing; its id, or None."""
    claimed = claim_events(session, worker=worker, lease=lease, now=now, limit=1)
    return claimed[0].id if claimed else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventClaim:
    """An inbox event handed to one processor, with what processing it needs."""

    id: int
    endpoint: str
    kind: str
    registry_host: str
    repository: str
    tag: str | None
    digest: str | None
    sender: str
    delivery_id: str
    received_at: datetime


@functools.cache
def _event_claim_statements(postgresql: bool) -> tuple[sa.Select[Any], sa.Update]:
    """The pending-events query and the guarded claim, built once (see the run claim)."""
    c = _events.c
    now = sa.bindparam("now", type_=c.lease_expires_at.type)
    query = (
        sa.select(c.id)
        .where(_claimable_event(now))
        .order_by(c.received_at, c.id)
        .limit(sa.bindparam("limit"))
    )
    if postgresql:
        query = query.with_for_update(skip_locked=True)
    claim = (
        sa.update(_events)
        .where(c.id.in_(sa.bindparam("ids", expanding=True)), _claimable_event(now))
        .values(
            claimed_by=sa.bindparam("worker"),
            lease_expires_at=sa.bindparam("expires", type_=c.lease_expires_at.type),
            attempts=c.attempts + 1,
        )
        .returning(*(c[name] for name in EventClaim.__dataclass_fields__))
    )
    return query, claim


def claim_events(
    session: Session, *, worker: str, lease: timedelta, now: datetime, limit: int
) -> list[EventClaim]:
    """Claim up to ``limit`` of the oldest pending inbox events, oldest first.

    One guarded UPDATE ... RETURNING takes them and reads them; like runs, no
    event is handed to two claimers at once, on either backend.
    """
    query, claim = _event_claim_statements(database.is_postgresql(session))
    while ids := list(session.scalars(query, {"now": now, "limit": limit})):
        rows = session.execute(
            claim, {"ids": ids, "now": now, "worker": worker, "expires": now + lease}
        ).all()
        if rows:
            claimed = [EventClaim(**row._asdict()) for row in rows]
            return sorted(claimed, key=lambda c: (c.received_at, c.id))
    return []


def acquire_lease(
    session: Session, name: str, *, owner: str, ttl: timedelta, now: datetime
) -> bool:
    """Take or renew the named lease for `owner`; False while someone else holds it.

    Succeeds when the lease is free, expired, or already held by `owner`
    (which renews it). Used for environment deploy locks
    (``environment:<name>``) and, on SQLite, for singletons.
    """
    expires = now + ttl
    taken = session.execute(
        sa.update(Lease)
        .where(Lease.name == name, sa.or_(Lease.owner == owner, Lease.expires_at <= now))
        .values(owner=owner, acquired_at=now, expires_at=expires)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return True
    inserted = database.insert_ignoring_conflicts(
        session,
        Lease,
        {"name": name, "owner": owner, "acquired_at": now, "expires_at": expires},
        conflict_columns=("name",),
    )
    return inserted


def release_lease(session: Session, name: str, *, owner: str) -> bool:
    """Release the named lease if `owner` holds it; False otherwise."""
    deleted = session.execute(sa.delete(Lease).where(Lease.name == name, Lease.owner == owner))
    return bool(deleted.rowcount == 1)  # type: ignore[attr-defined]


def environment_lock(environment: str) -> str:
    """The lease name of an environment's deploy lock (one deploy at a time per environment)."""
    return f"environment:{environment}"


def fetch_lease_owner(session: Session, name: str, *, now: datetime) -> str | None:
    """Who holds the named lease now (None if free or expired)."""
    return session.execute(
        sa.select(Lease.owner).where(Lease.name == name, Lease.expires_at > now)
    ).scalar()


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, derived from the lock's name."""
    digest = hashlib.sha256(f"conveyor:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SingletonLock:
    """A held singleton lock; call `is_held` periodically and `release` when done.

    PostgreSQL: a session advisory lock on a dedicated connection. SQLite: a
    lease row the holder renews in `is_held`.
    """

    def __init__(
        self,
        engine: sa.Engine,
        name: str,
        *,
        owner: str,
        ttl: timedelta,
        connection: sa.Connection | None,
    ) -> None:
        self.name = name
        self.owner = owner
        self._engine = engine
        self._ttl = ttl
        self._connection = connection
        self._released = False

    def is_held(self, *, now: datetime) -> bool:
        """Whether the lock is still ours (renewing the lease on SQLite)."""
        if self._released:
            return False
        if self._connection is not None:
            try:
                self._connection.exec_driver_sql("SELECT 1")
            except sa.exc.SQLAlchemyError:
                return False  # the connection, and with it the advisory lock, is gone
            return True
        with database.unit_of_work(self._engine) as session:
            return acquire_lease(session, self.name, owner=self.owner, ttl=self._ttl, now=now)

    def release(self) -> None:
        """Let another process take the lock; idempotent."""
        if self._released:
            return
        self._released = True
        if self._connection is not None:
            try:
                self._connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.name)}
                )
            except sa.exc.SQLAlchemyError:
                # A dead connection has released the lock already; never pool it again.
                self._connection.invalidate()
            finally:
                self._connection.close()
            return
        with database.unit_of_work(self._engine) as session:
            release_lease(session, self.name, owner=self.owner)


def try_acquire_singleton(
    engine: sa.Engine, name: str, *, owner: str, ttl: timedelta, now: datetime
) -> SingletonLock | None:
    """Become the one holder of `name` across all processes, or return None if taken.

    `ttl` only matters on SQLite (the lease the holder must renew through
    `SingletonLock.is_held`); on PostgreSQL the lock lasts as long as the
    holder's connection.
    """
    if engine.dialect.name != "postgresql":
        with database.unit_of_work(engine) as session:
            if not acquire_lease(session, name, owner=owner, ttl=ttl, now=now):
                return None
        return SingletonLock(engine, name, owner=owner, ttl=ttl, connection=None)
    with database.translate_errors(engine):
        # Session-level lock: outside any transaction, on a connection kept open.
        connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        held = connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(name)}
        ).scalar()
    except BaseException:
        connection.close()
        raise
    if not held:
        connection.close()
        return None
    return SingletonLock(engine, name, owner=owner, ttl=ttl, connection=connection)
