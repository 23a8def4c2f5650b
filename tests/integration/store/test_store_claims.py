"""Claims, leases and singleton locks: no run goes to two workers, one singleton holder."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.support.times import NOW

from conveyor.store import claims, database, events, runs

LEASE = timedelta(minutes=1)


def _queue_runs(engine: sa.Engine, count: int) -> list[int]:
    with database.unit_of_work(engine) as session:
        return [
            runs.create_run(
                session,
                runs.NewRun(pipeline="p", triggered_by="t"),
                now=NOW + timedelta(seconds=i),
            ).id
            for i in range(count)
        ]


def _claim(engine: sa.Engine, worker: str, now=NOW) -> claims.RunClaim | None:
    with database.unit_of_work(engine) as session:
        return claims.claim_next_run(session, worker=worker, lease=LEASE, now=now)


def _claim_concurrently(engine: sa.Engine, workers: int) -> list[tuple[str, int]]:
    claimed: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(name: str) -> None:
        try:
            barrier.wait()
            while (claim := _claim(engine, name)) is not None:
                claimed.append((name, claim.run_id))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return claimed


class TestClaimNextRun:
    def test_runs_are_claimed_oldest_first_and_become_running(self, engine):
        """The oldest queued run is claimed first and becomes running under the worker."""
        first, second = _queue_runs(engine, 2)
        claim = _claim(engine, "w1")
        assert claim == claims.RunClaim(
            run_id=first, previous_status="queued", lease_expires_at=NOW + LEASE
        )
        with database.unit_of_work(engine, read_only=True) as session:
            run = runs.fetch_run(session, first)
        assert (run.status, run.claimed_by, run.started_at) == ("running", "w1", NOW)
        assert _claim(engine, "w2").run_id == second
        assert _claim(engine, "w3") is None

    def test_concurrent_workers_never_share_a_run(self, engine):
        """Several workers claiming at once get every run exactly once between them."""
        run_ids = _queue_runs(engine, 40)
        claimed = _claim_concurrently(engine, workers=6)
        counts = Counter(run_id for _, run_id in claimed)
        assert sorted(counts) == sorted(run_ids)
        assert set(counts.values()) == {1}

    def test_a_run_whose_worker_died_is_recovered_after_its_lease(self, engine):
        """A running run is claimable by another worker only once its lease has expired."""
        [run_id] = _queue_runs(engine, 1)
        _claim(engine, "dead")
        assert _claim(engine, "w2", now=NOW + LEASE / 2) is None
        claim = _claim(engine, "w2", now=NOW + LEASE * 2)
        assert claim is not None and (claim.run_id, claim.recovered) == (run_id, True)
        with database.unit_of_work(engine) as session:
            assert not claims.renew_run_lease(session, run_id, worker="dead", lease=LEASE, now=NOW)
            assert claims.renew_run_lease(session, run_id, worker="w2", lease=LEASE, now=NOW)

    def test_a_waiting_run_is_claimable_once_woken(self, engine):
        """A run released at a gate is claimable again only when its wake_at is reached."""
        [run_id] = _queue_runs(engine, 1)
        _claim(engine, "w1")
        with database.unit_of_work(engine) as session:
            runs.update_run(session, run_id, status="waiting", wake_at=NOW + timedelta(hours=1))
            assert claims.release_run(session, run_id, worker="w1")
        assert _claim(engine, "w2") is None
        claim = _claim(engine, "w2", now=NOW + timedelta(hours=2))
        assert claim is not None and (claim.run_id, claim.previous_status) == (run_id, "waiting")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
class TestSkipLocked:
    def test_a_claimer_skips_a_run_locked_by_an_open_claim(self, engine):
        """While one claim is open, another claimer takes the next run without waiting."""
        first, second = _queue_runs(engine, 2)
        holder = database.sessions(engine)()
        try:
            holder.begin()
            held = claims.claim_next_run(holder, worker="slow", lease=LEASE, now=NOW)
            assert held is not None and held.run_id == first
            with database.unit_of_work(engine) as session:
                # Without SKIP LOCKED this would wait for the holder; fail fast instead of hanging.
                session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                other = claims.claim_next_run(session, worker="fast", lease=LEASE, now=NOW)
            assert other is not None and other.run_id == second
        finally:
            holder.rollback()
            holder.close()


class TestClaimNextEvent:
    def test_pending_events_are_claimed_once(self, engine):
        """A pending event is handed to one worker; a second claimer finds nothing."""
        delivery = events.Delivery(
            endpoint="e",
            sender="distribution",
            delivery_id="1",
            kind="push",
            registry_host="r",
            repository="p",
            tag="t",
        )
        with database.unit_of_work(engine) as session:
            event_id = events.record_delivery(session, delivery, now=NOW).event.id
        with database.unit_of_work(engine) as session:
            claimed = claims.claim_next_event(session, worker="w1", lease=LEASE, now=NOW)
            again = claims.claim_next_event(session, worker="w2", lease=LEASE, now=NOW)
        assert (claimed, again) == (event_id, None)


class TestLeases:
    def test_a_lease_has_one_owner_until_it_expires_or_is_released(self, engine):
        """Another owner is refused while the lease is live, and takes it once it expires."""
        name = claims.environment_lock("production")
        with database.unit_of_work(engine) as session:
            assert claims.acquire_lease(session, name, owner="a", ttl=LEASE, now=NOW)
            assert not claims.acquire_lease(session, name, owner="b", ttl=LEASE, now=NOW)
            assert claims.acquire_lease(session, name, owner="a", ttl=LEASE, now=NOW)  # renew
            assert claims.fetch_lease_owner(session, name, now=NOW) == "a"
            assert claims.acquire_lease(session, name, owner="b", ttl=LEASE, now=NOW + 2 * LEASE)
            assert not claims.release_lease(session, name, owner="a")
            assert claims.release_lease(session, name, owner="b")
            assert claims.fetch_lease_owner(session, name, now=NOW) is None

    def test_concurrent_acquirers_get_one_owner(self, engine):
        """Of several processes racing for a free lease, exactly one wins."""
        winners: list[str] = []
        barrier = threading.Barrier(5)

        def race(owner: str) -> None:
            barrier.wait()
            with database.unit_of_work(engine) as session:
                if claims.acquire_lease(session, "poller:src", owner=owner, ttl=LEASE, now=NOW):
                    winners.append(owner)

        threads = [threading.Thread(target=race, args=(f"p{i}",)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(winners) == 1


class TestSingletons:
    def test_only_one_holder_until_released(self, engine):
        """A second process cannot take a held singleton; after release it can."""
        first = claims.try_acquire_singleton(engine, "poller:a", owner="p1", ttl=LEASE, now=NOW)
        assert first is not None
        try:
            assert (
                claims.try_acquire_singleton(engine, "poller:a", owner="p2", ttl=LEASE, now=NOW)
                is None
            )
            assert first.is_held(now=NOW)
            other = claims.try_acquire_singleton(engine, "poller:b", owner="p2", ttl=LEASE, now=NOW)
            assert other is not None
            other.release()
        finally:
            first.release()
        assert not first.is_held(now=NOW)
        second = claims.try_acquire_singleton(engine, "poller:a", owner="p2", ttl=LEASE, now=NOW)
        assert second is not None
        second.release()

    def test_a_dead_holder_is_replaced(self, engine, backend: str):
        """When the holder dies (connection gone, or lease expired) a standby takes over."""
        holder = claims.try_acquire_singleton(engine, "scheduler", owner="p1", ttl=LEASE, now=NOW)
        assert holder is not None
        if backend == "postgresql":
            holder._connection.invalidate()  # the process died: its connection is gone
            later = NOW
        else:
            later = NOW + 2 * LEASE  # the holder stopped renewing
        standby = claims.try_acquire_singleton(
            engine, "scheduler", owner="p2", ttl=LEASE, now=later
        )
        assert standby is not None
        assert not holder.is_held(now=later)
        holder.release()  # harmless: it no longer holds anything
        assert standby.is_held(now=later)
        standby.release()

    @pytest.mark.postgres
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    def test_advisory_lock_has_one_holder_among_many_connections(self, engine):
        """Of many connections racing for one advisory lock, exactly one holds it."""
        held: list[claims.SingletonLock] = []
        barrier = threading.Barrier(8)

        def race(owner: str) -> None:
            barrier.wait()
            lock = claims.try_acquire_singleton(engine, "poller:x", owner=owner, ttl=LEASE, now=NOW)
            if lock is not None:
                held.append(lock)

        threads = [threading.Thread(target=race, args=(f"p{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        try:
            assert len(held) == 1
            with engine.connect() as connection:
                locks = connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                ).scalar()
            assert locks == 1
        finally:
            for lock in held:
                lock.release()
