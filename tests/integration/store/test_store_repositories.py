"""Repository functions round-trip on SQLite and PostgreSQL, and constraints hold."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.support.times import NOW
from tests.support.waiting import wait_until

from conveyor.core.errors import Conflict, NotFound
from conveyor.store import (
    approvals,
    audit,
    database,
    environments,
    events,
    logs,
    pipelines,
    runs,
    tokens,
)
from conveyor.store.tables import Event

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


def _new_run(session, pipeline: str = "pre-release", **overrides) -> int:
    fields = {
        "pipeline": pipeline,
        "triggered_by": "alice",
        "source_kind": "artifact",
        "image_registry": "registry.example.com",
        "image_repository": "team/myapp",
        "image_digest": DIGEST,
        "image_tag": "myapp-V1.0.0",
        "parameters": {"R_VERSION": "1.0.0"},
    } | overrides
    run = runs.create_run(
        session,
        runs.NewRun(**fields),
        steps=[
            runs.NewStep(name="deploy", kind="deploy"),
            runs.NewStep(name="verification", kind="approval"),
        ],
        now=NOW,
    )
    return run.id


def _delivery(delivery_id: str = "d-1", **overrides) -> events.Delivery:
    fields = {
        "endpoint": "registry",
        "sender": "distribution",
        "delivery_id": delivery_id,
        "kind": "push",
        "registry_host": "registry.example.com",
        "repository": "team/myapp",
        "tag": "myapp-V1.0.0",
        "digest": DIGEST,
    } | overrides
    return events.Delivery(**fields)


class TestPipelineDefinitions:
    def test_same_content_keeps_its_version_and_new_content_gets_the_next(self, engine):
        """Saving unchanged content returns version 1 again; changed content becomes version 2."""
        with database.unit_of_work(engine) as session:
            first = pipelines.save_definition(session, "prod", {"steps": [1]}, now=NOW)
            again = pipelines.save_definition(session, "prod", {"steps": [1]}, now=NOW)
            changed = pipelines.save_definition(session, "prod", {"steps": [1, 2]}, now=NOW)
        assert (first.version, again.id, changed.version) == (1, first.id, 2)
        assert first.content_hash == pipelines.content_hash({"steps": [1]})
        with database.unit_of_work(engine, read_only=True) as session:
            latest = pipelines.fetch_latest_definition(session, "prod")
        assert latest is not None and latest.body == {"steps": [1, 2]}


class TestRuns:
    def test_a_run_and_its_steps_round_trip(self, engine):
        """A created run reads back queued, with its image, parameters and ordered steps."""
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session)
        with database.unit_of_work(engine, read_only=True) as session:
            run = runs.fetch_run(session, run_id)
            steps = runs.list_steps(session, run_id)
        assert (run.status, run.image_digest, run.parameters) == (
            "queued",
            DIGEST,
            {"R_VERSION": "1.0.0"},
        )
        assert run.created_at == NOW
        assert [(s.index, s.name, s.kind, s.status) for s in steps] == [
            (0, "deploy", "deploy", "pending"),
            (1, "verification", "approval", "pending"),
        ]

    def test_last_successful_run_ignores_later_failures(self, engine):
        """The pipeline source default is the newest succeeded run, not a newer failed one."""
        with database.unit_of_work(engine) as session:
            good = _new_run(session)
            runs.update_run(session, good, status="succeeded", finished_at=NOW)
            bad = _new_run(session)
            runs.update_run(session, bad, status="failed", finished_at=NOW + timedelta(hours=1))
            _new_run(session, pipeline="other")
        with database.unit_of_work(engine, read_only=True) as session:
            last = runs.fetch_last_successful_run(session, "pre-release")
        assert last is not None and last.id == good

    def test_steps_record_exit_details_and_output(self, engine):
        """A finished step keeps its attempt, times, exit code, reason and output."""
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session)
            step = runs.fetch_step(session, run_id, 0)
            runs.update_step(
                session,
                step.id,
                status="failed",
                attempt=2,
                started_at=NOW,
                finished_at=NOW + timedelta(seconds=3),
                exit_code=7,
                reason="exit status 7",
                output={"pushed": DIGEST},
            )
        with database.unit_of_work(engine, read_only=True) as session:
            stored = runs.fetch_step(session, run_id, 0)
        assert (stored.status, stored.attempt, stored.exit_code, stored.reason, stored.output) == (
            "failed",
            2,
            7,
            "exit status 7",
            {"pushed": DIGEST},
        )
        assert stored.finished_at == NOW + timedelta(seconds=3)

    def test_an_unknown_status_is_refused_by_the_database(self, engine):
        """The status CHECK constraint refuses a value outside the run lifecycle."""
        with pytest.raises(sa.exc.IntegrityError), database.unit_of_work(engine) as session:
            run_id = _new_run(session)
            runs.update_run(session, run_id, status="exploded")

    def test_one_event_starts_at_most_one_run_per_pipeline(self, engine):
        """A second run of the same pipeline for the same event violates the unique constraint."""
        with database.unit_of_work(engine) as session:
            event_id = events.record_delivery(session, _delivery(), now=NOW).event.id
            _new_run(session, event_id=event_id)
            _new_run(session, pipeline="other", event_id=event_id)
        with pytest.raises(sa.exc.IntegrityError), database.unit_of_work(engine) as session:
            _new_run(session, event_id=event_id)

    def test_a_missing_run_is_not_found(self, engine):
        """Fetching a run that does not exist raises NotFound naming it."""
        with pytest.raises(NotFound, match="run '42' not found"):
            with database.unit_of_work(engine, read_only=True) as session:
                runs.fetch_run(session, 42)


class TestStepLogs:
    def test_lines_append_in_order_and_read_from_an_offset(self, engine):
        """Lines are numbered from 1 and a follower reads only the lines after its offset."""
        with database.unit_of_work(engine) as session:
            step = runs.fetch_step(session, _new_run(session), 0)
            assert logs.append_log(session, step.id, ["one", "two"], now=NOW) == 2
        with database.unit_of_work(engine) as session:
            assert logs.append_log(session, step.id, ["three"], stream="stderr", now=NOW) == 3
        with database.unit_of_work(engine, read_only=True) as session:
            everything = logs.read_log(session, step.id)
            tail = logs.read_log(session, step.id, after_seq=2)
            nothing = logs.read_log(session, step.id, after_seq=3)
        assert [(line.seq, line.line) for line in everything] == [
            (1, "one"),
            (2, "two"),
            (3, "three"),
        ]
        assert [(line.seq, line.stream, line.line) for line in tail] == [(3, "stderr", "three")]
        assert nothing == []

    def test_run_log_follows_across_steps(self, engine):
        """Reading a run's log after the last line id seen returns only newer lines, any step."""
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session)
            first, second = runs.list_steps(session, run_id)
            logs.append_log(session, first.id, ["a"], now=NOW)
        with database.unit_of_work(engine, read_only=True) as session:
            [(index, seen)] = logs.read_run_log(session, run_id)
        with database.unit_of_work(engine) as session:
            logs.append_log(session, second.id, ["b"], now=NOW)
        with database.unit_of_work(engine, read_only=True) as session:
            newer = logs.read_run_log(session, run_id, after_id=seen.id)
        assert (index, seen.line) == (0, "a")
        assert [(i, line.line) for i, line in newer] == [(1, "b")]


class TestEventsInbox:
    def test_a_redelivery_is_stored_once_and_counted(self, engine):
        """The same delivery id on the same endpoint is stored once; the retry is only counted."""
        with database.unit_of_work(engine) as session:
            first = events.record_delivery(session, _delivery(), now=NOW)
        with database.unit_of_work(engine) as session:
            retry = events.record_delivery(session, _delivery(), now=NOW + timedelta(seconds=5))
        assert (first.created, retry.created) == (True, False)
        assert retry.event.id == first.event.id
        assert retry.event.redeliveries == 1
        with database.unit_of_work(engine, read_only=True) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 1

    def test_a_duplicate_delivery_id_is_rejected_by_the_unique_constraint(self, engine):
        """A raw second row with the same (endpoint, delivery_id) violates the constraint."""
        with database.unit_of_work(engine) as session:
            events.record_delivery(session, _delivery(), now=NOW)
        row = {
            "endpoint": "registry",
            "sender": "distribution",
            "delivery_id": "d-1",
            "dedupe_key": "x",
            "kind": "push",
            "registry_host": "r",
            "repository": "p",
            "received_at": NOW,
            "status": "pending",
            "redeliveries": 0,
            "attempts": 0,
        }
        with pytest.raises(sa.exc.IntegrityError, match=r"(?i)unique"):
            with database.unit_of_work(engine) as session:
                session.execute(sa.insert(Event), [row])

    def test_the_same_delivery_id_on_another_endpoint_is_a_new_event(self, engine):
        """Delivery ids are unique per endpoint, not globally."""
        with database.unit_of_work(engine) as session:
            events.record_delivery(session, _delivery(), now=NOW)
            other = events.record_delivery(session, _delivery(endpoint="harbor"), now=NOW)
        assert other.created

    def test_same_content_within_the_window_is_recorded_as_a_duplicate(self, engine):
        """A new delivery of the same change within the window is stored as a duplicate."""
        window = timedelta(minutes=5)
        with database.unit_of_work(engine) as session:
            original = events.record_delivery(
                session, _delivery("a"), now=NOW, duplicate_window=window
            )
            copy = events.record_delivery(
                session, _delivery("b"), now=NOW + timedelta(minutes=1), duplicate_window=window
            )
            late = events.record_delivery(
                session, _delivery("c"), now=NOW + timedelta(hours=1), duplicate_window=window
            )
        assert (original.event.status, copy.event.status, late.event.status) == (
            "pending",
            "duplicate",
            "pending",
        )
        assert copy.event.duplicate_of == original.event.id

    @pytest.mark.postgres
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    def test_two_writers_of_the_same_content_store_one_original(self, engine):
        """Two servers store one change under two delivery ids at once: one stays pending.

        Writer A has looked up and inserted but not committed when writer B
        stores the same content. B must wait for A's commit and then see A's
        row; without the wait both rows would be pending and start two runs.
        (SQLite is not tested here: BEGIN IMMEDIATE admits one writer at a time.)
        """
        window = timedelta(minutes=5)
        outcome: list[events.Stored] = []
        with engine.connect() as first:
            with first.begin():
                [a] = events.record_deliveries(
                    first, [(_delivery("a"), NOW)], duplicate_window=window
                )

                def second_writer() -> None:
                    with database.core_transaction(engine) as second:
                        outcome.extend(
                            events.record_deliveries(
                                second, [(_delivery("b"), NOW)], duplicate_window=window
                            )
                        )

                writer = threading.Thread(target=second_writer)
                writer.start()

                def waiting_or_done() -> bool:
                    if not writer.is_alive():
                        return True
                    with engine.connect() as probe:
                        return bool(
                            probe.scalar(
                                sa.text(
                                    "SELECT count(*) FROM pg_stat_activity "
                                    "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                                )
                            )
                        )

                wait_until(waiting_or_done, "the second writer to wait or finish")
            writer.join(timeout=30)
        assert not writer.is_alive()
        [b] = outcome
        assert (a.status, b.status, b.duplicate_of) == ("pending", "duplicate", a.id)

    def test_a_batch_records_what_one_delivery_after_another_would(self, engine):
        """One batch: new, redelivered (stored and in-batch), duplicated content, other endpoint.

        Each lands exactly once; redeliveries count on the original; content
        duplicates (of a stored row or of a row earlier in the batch) point at it.
        """
        window = timedelta(minutes=10)
        with database.unit_of_work(engine) as session:
            stored = events.record_delivery(session, _delivery("old"), now=NOW)
        later = NOW + timedelta(seconds=1)
        batch = [
            (_delivery("old", tag="anything"), later),  # redelivery of a stored id
            (_delivery("n1", tag="v2"), later),  # new
            (_delivery("n1", tag="v2"), later),  # redelivery of n1, in the batch
            (_delivery("n2"), later),  # same content as "old": duplicate of it
            (_delivery("n3", tag="v2"), later),  # same content as n1: duplicate of n1
            (_delivery("n1", endpoint="harbor", tag="v3"), later),  # same id, other endpoint
            (_delivery("n1", tag="v2"), later),  # redelivery of n1 again
        ]
        with database.core_transaction(engine) as connection:
            outcomes = events.record_deliveries(connection, batch, duplicate_window=window)
        old, n1, n1_again, n2, n3, harbor, n1_third = outcomes
        assert [o.status for o in outcomes] == [
            "redelivery",
            "pending",
            "redelivery",
            "duplicate",
            "duplicate",
            "pending",
            "redelivery",
        ]
        assert old.id == stored.event.id and not old.created
        assert n1_again.id == n1_third.id == n1.id and n1.created
        assert (n2.duplicate_of, n3.duplicate_of) == (stored.event.id, n1.id)
        assert harbor.id not in (n1.id, n2.id, n3.id)
        with database.unit_of_work(engine, read_only=True) as session:
            rows = {(e.endpoint, e.delivery_id): e for e in session.scalars(sa.select(Event)).all()}
        assert sorted(rows) == [
            ("harbor", "n1"),
            ("registry", "n1"),
            ("registry", "n2"),
            ("registry", "n3"),
            ("registry", "old"),
        ]
        assert rows[("registry", "old")].redeliveries == 1
        assert rows[("registry", "n1")].redeliveries == 2
        assert rows[("registry", "n3")].status == "duplicate"
        assert rows[("registry", "n3")].outcome == {"duplicate_of": n1.id}
        assert rows[("registry", "n1")].outcome is None
        assert rows[("registry", "n1")].received_at == later

    def test_a_failed_batch_stores_nothing(self, engine):
        """The batch is one transaction: an error after some inserts leaves no row behind."""
        with pytest.raises(RuntimeError), database.core_transaction(engine) as connection:
            events.record_deliveries(
                connection, [(_delivery("a"), NOW), (_delivery("b", tag="v2"), NOW)]
            )
            raise RuntimeError("the commit never happens")
        with database.unit_of_work(engine, read_only=True) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 0

    def test_absent_json_documents_are_sql_null(self, engine):
        """No scan summary or outcome is SQL NULL, not the JSON text 'null' (`IS NULL` finds it)."""
        scanned = _delivery("s", kind="scan_completed", scan_summary={"critical": 1})
        with database.core_transaction(engine) as connection:
            events.record_deliveries(connection, [(_delivery("p"), NOW), (scanned, NOW)])
        with database.unit_of_work(engine, read_only=True) as session:
            rows = session.execute(
                sa.select(
                    Event.delivery_id, Event.scan_summary.is_(None), Event.outcome.is_(None)
                ).order_by(Event.delivery_id)
            ).all()
        assert [tuple(row) for row in rows] == [("p", True, True), ("s", False, True)]

    def test_processing_records_the_outcome(self, engine):
        """Marking an event processed stores which triggers matched and why others did not."""
        outcome = {"matched": ["pre-release-cd"], "unmatched": {"prod": "tag does not match"}}
        with database.unit_of_work(engine) as session:
            event_id = events.record_delivery(session, _delivery(), now=NOW).event.id
            events.mark_processed(session, event_id, outcome=outcome, now=NOW)
        with database.unit_of_work(engine, read_only=True) as session:
            stored = events.fetch_event(session, event_id)
        assert (stored.status, stored.outcome, stored.processed_at) == ("processed", outcome, NOW)


class TestEventRetention:
    """events.prune_events: old events that are done with go; nothing else does."""

    WINDOW = timedelta(minutes=10)

    def _store(self, engine, delivery_id: str, at, **overrides) -> int:
        with database.unit_of_work(engine) as session:
            [stored] = events.record_deliveries(
                session.connection(),
                [(_delivery(delivery_id, **overrides), at)],
                duplicate_window=self.WINDOW,
            )
        return stored.id

    def _process(self, engine, *event_ids: int) -> None:
        with database.unit_of_work(engine) as session:
            for event_id in event_ids:
                events.mark_processed(session, event_id, outcome={"triggers": []}, now=NOW)

    def _left(self, engine) -> list[str]:
        with database.unit_of_work(engine, read_only=True) as session:
            return list(session.scalars(sa.select(Event.delivery_id).order_by(Event.id)))

    def _prune(self, engine, before, limit: int = 1000) -> int:
        with database.unit_of_work(engine) as session:
            return events.prune_events(session.connection(), before=before, limit=limit)

    def test_old_processed_events_go_and_pending_or_recent_ones_stay(self, engine):
        old = NOW - timedelta(days=40)
        done = self._store(engine, "old-done", old, digest=DIGEST)
        self._store(engine, "old-pending", old, digest=OTHER_DIGEST)
        recent = self._store(engine, "recent-done", NOW, tag="myapp-V2.0.0")
        self._process(engine, done, recent)
        with database.unit_of_work(engine, read_only=True) as session:
            assert events.count_prunable(session.connection(), before=NOW - timedelta(days=30)) == 1
        assert self._prune(engine, NOW - timedelta(days=30)) == 1
        assert self._left(engine) == ["old-pending", "recent-done"]

    def test_an_original_repeated_by_a_kept_event_stays(self, engine):
        """The repeat is recent: deleting its original would leave it naming nothing."""
        old = NOW - timedelta(days=40)
        original = self._store(engine, "original", old)
        # The same content again within the window, delivered late: recent, a repeat.
        repeat = self._store(engine, "repeat", old + timedelta(minutes=1))
        self._process(engine, original)
        with database.unit_of_work(engine) as session:  # the repeat arrives again, recently
            session.execute(sa.update(Event).where(Event.id == repeat).values(received_at=NOW))
        assert self._prune(engine, NOW - timedelta(days=30)) == 0
        assert self._left(engine) == ["original", "repeat"]

    def test_chunks_of_one_never_break_the_repeats_foreign_key(self, engine):
        """Whichever row a chunk picks first, an original never goes before its repeats.

        A chunk that picks the original takes its (prunable) repeats along in
        the same statement, past the limit; one that picks a repeat just
        deletes it. Either way every chunk commits.
        """
        old = NOW - timedelta(days=40)
        original = self._store(engine, "original", old)
        self._store(engine, "repeat-1", old + timedelta(minutes=1))
        self._store(engine, "repeat-2", old + timedelta(minutes=2))
        self._process(engine, original)
        deleted = []
        while count := self._prune(engine, NOW - timedelta(days=30), limit=1):
            deleted.append(count)
        assert sum(deleted) == 3
        assert self._left(engine) == []

    def test_a_run_keeps_its_record_and_loses_only_the_link(self, engine):
        old = NOW - timedelta(days=40)
        event_id = self._store(engine, "started-a-run", old)
        self._process(engine, event_id)
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session, event_id=event_id)
        assert self._prune(engine, NOW - timedelta(days=30)) == 1
        with database.unit_of_work(engine, read_only=True) as session:
            run = runs.fetch_run(session, run_id)
            assert (run.event_id, run.image_digest, run.image_tag) == (
                None,
                DIGEST,
                "myapp-V1.0.0",
            )


def test_the_prune_query_looks_up_repeats_by_index(sqlite_template):
    """The kept-repeat check runs once per candidate: a scan each would be quadratic.

    SQLite's EXPLAIN QUERY PLAN on the migrated schema (PostgreSQL's planner
    prefers a scan on a table this small, so its plan would say nothing).
    """
    engine = database.create_engine(f"sqlite:///{sqlite_template}")
    query = events._prunable(NOW).limit(2000)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        plan = " / ".join(r[3] for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    engine.dispose()
    assert "USING INDEX ix_events_duplicate_of" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort of every candidate per chunk


class TestEnvironments:
    def test_history_is_newest_first_and_the_newest_is_current(self, engine):
        """The current deployment is the newest, and history lists all, newest first."""
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session)
            for digest, kind in [
                (DIGEST, "deploy"),
                (OTHER_DIGEST, "deploy"),
                (DIGEST, "rollback"),
            ]:
                environments.record_deployment(
                    session,
                    environments.NewDeployment(
                        environment="production",
                        registry_host="registry.example.com",
                        repository="team/myapp",
                        digest=digest,
                        tag=None,
                        run_id=run_id,
                        deployed_by="bob",
                        kind=kind,
                    ),
                    now=NOW,
                )
        with database.unit_of_work(engine, read_only=True) as session:
            current = environments.fetch_current_deployment(session, "production")
            history = environments.list_history(session, "production")
            nothing = environments.fetch_current_deployment(session, "test")
        assert current is not None and (current.digest, current.kind) == (DIGEST, "rollback")
        assert [d.digest for d in history] == [DIGEST, OTHER_DIGEST, DIGEST]
        assert nothing is None

    def test_verification_records_are_idempotent_per_digest_environment_and_run(self, engine):
        """Recording the same verification twice keeps one record."""
        approvals_json = [{"user": "carol", "at": NOW.isoformat()}]
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session)
            environments.record_verification(
                session,
                digest=DIGEST,
                environment="pre-release",
                run_id=run_id,
                approvals=approvals_json,
                now=NOW,
            )
            environments.record_verification(
                session,
                digest=DIGEST,
                environment="pre-release",
                run_id=run_id,
                approvals=[],
                now=NOW,
            )
        with database.unit_of_work(engine, read_only=True) as session:
            records = environments.list_verifications(session, DIGEST, environment="pre-release")
            elsewhere = environments.list_verifications(session, OTHER_DIGEST)
        assert [(r.run_id, r.approvals) for r in records] == [(run_id, approvals_json)]
        assert elsewhere == []

    def test_a_bad_mark_blocks_until_cleared(self, engine):
        """A digest marked bad has an open mark until it is cleared."""
        with database.unit_of_work(engine) as session:
            environments.mark_bad(session, DIGEST, reason="CVE-2026-1", by="dave", now=NOW)
        with database.unit_of_work(engine) as session:
            mark = environments.fetch_bad_mark(session, DIGEST)
            assert mark is not None and (mark.reason, mark.marked_by) == ("CVE-2026-1", "dave")
            assert environments.clear_bad(session, DIGEST, by="erin", now=NOW) == 1
        with database.unit_of_work(engine, read_only=True) as session:
            assert environments.fetch_bad_mark(session, DIGEST) is None


class TestApprovals:
    def test_one_decision_per_user_per_step(self, engine):
        """A user's second decision at the same step is a Conflict; other users may decide."""
        with database.unit_of_work(engine) as session:
            run_id = _new_run(session)
            approvals.record_approval(
                session,
                run_id,
                step="verification",
                user="carol",
                decision="approve",
                comment="looks good",
                now=NOW,
            )
            approvals.record_approval(
                session,
                run_id,
                step="verification",
                user="dave",
                decision="reject",
                comment="no",
                now=NOW,
            )
        with pytest.raises(Conflict, match="carol already decided"):
            with database.unit_of_work(engine) as session:
                approvals.record_approval(
                    session, run_id, step="verification", user="carol", decision="reject", now=NOW
                )
        with database.unit_of_work(engine, read_only=True) as session:
            decided = approvals.list_approvals(session, run_id, step="verification")
        assert [(a.user, a.decision, a.comment) for a in decided] == [
            ("carol", "approve", "looks good"),
            ("dave", "reject", "no"),
        ]


class TestTokensAndAudit:
    def test_only_the_hash_is_stored_and_the_token_authenticates(self, engine):
        """A token authenticates until revoked, and its plain value is stored nowhere."""
        with database.unit_of_work(engine) as session:
            issued = tokens.create_token(
                session, "ci", role="operator", created_by="admin", now=NOW
            )
        assert issued.token not in repr(issued)
        with database.unit_of_work(engine) as session:
            row = tokens.authenticate(session, issued.token, now=NOW + timedelta(minutes=1))
            assert row is not None and (row.name, row.role) == ("ci", "operator")
            assert row.token_hash == tokens.hash_token(issued.token) != issued.token
            assert tokens.revoke_token(session, "ci", now=NOW)
        with database.unit_of_work(engine, read_only=True) as session:
            assert tokens.authenticate(session, issued.token, now=NOW) is None
            stored = session.execute(sa.text("SELECT * FROM api_tokens")).all()
        assert issued.token not in repr(stored)
        assert stored[0].last_used_at is not None

    def test_audit_entries_keep_identity_action_target_and_details(self, engine):
        """An audit entry reads back exactly as written."""
        with database.unit_of_work(engine) as session:
            audit.record_audit(
                session,
                identity="token:ci",
                action="run.start",
                target="pipeline/prod",
                details={"run": 1},
                now=NOW,
            )
        with database.unit_of_work(engine, read_only=True) as session:
            [entry] = audit.list_audit(session)
        assert (entry.identity, entry.action, entry.target, entry.details, entry.at) == (
            "token:ci",
            "run.start",
            "pipeline/prod",
            {"run": 1},
            NOW,
        )
