"""Named leases: one deploy at a time per environment, across processes and machines.

A lease is a row (name, owner, expiry). Taking it is one transaction that
inserts the row, or takes it over when it expired or is already ours; the
owner renews it while it works, so a crashed holder blocks others only until
the expiry. Works the same on SQLite (transactions are serialised by
BEGIN IMMEDIATE) and PostgreSQL (the row is locked FOR UPDATE; a concurrent
first insert loses on the primary key and counts as "busy").
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc

from conveyor.store import tables
from conveyor.store.database import unit_of_work


def acquire(engine: sa.Engine, name: str, *, owner: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease; False when another live owner holds it."""
    try:
        with unit_of_work(engine) as session:
            lease = session.get(tables.Lease, name, with_for_update=True)
            if lease is None:
                session.add(
                    tables.Lease(name=name, owner=owner, acquired_at=now, expires_at=now + ttl)
                )
                return True
            if lease.owner != owner and lease.expires_at > now:
                return False
            if lease.owner != owner:
                lease.acquired_at = now
            lease.owner = owner
            lease.expires_at = now + ttl
            return True
    except exc.IntegrityError:
        return False


def release(engine: sa.Engine, name: str, *, owner: str) -> None:
    """Give the lease up if we hold it."""
    with unit_of_work(engine) as session:
        session.execute(
            sa.delete(tables.Lease).where(tables.Lease.name == name, tables.Lease.owner == owner)
        )
