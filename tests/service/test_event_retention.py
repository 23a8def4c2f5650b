"""The inbox from the CLI and the scheduler: listing by status, `events.prune`, `--event-retention`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.core.errors import InvalidInput
from conveyor.engine.scheduler import Scheduler
from conveyor.service import events
from conveyor.service.context import Services
from conveyor.store import audit, tables
from conveyor.store import events as inbox
from conveyor.store.database import unit_of_work
from tests.service.conftest import STORY

DIGEST = "sha256:" + "ab" * 32


def _store(services: Services, delivery_id: str, at: datetime, *, done: bool) -> int:
    delivery = inbox.Delivery(
        endpoint="registry",
        sender="distribution",
        delivery_id=delivery_id,
        kind="push",
        registry_host="registry.test:5000",
        repository="team/myapp",
        tag=delivery_id,  # a tag each: no event repeats another
        digest=DIGEST,
    )
    with unit_of_work(services.engine) as session:
        [stored] = inbox.record_deliveries(session.connection(), [(delivery, at)])
        if done:
            inbox.mark_processed(session, stored.id, outcome={"triggers": []}, now=at)
    return stored.id


def _left(services: Services) -> list[str]:
    with unit_of_work(services.engine, read_only=True) as session:
        return list(session.scalars(sa.select(tables.Event.delivery_id).order_by(tables.Event.id)))


@pytest.fixture
def inbox_services(services: Services) -> Services:
    """Three events: 40 days old and processed, 40 days old and pending, processed today."""
    now = services.clock()
    _store(services, "old-done", now - timedelta(days=40), done=True)
    _store(services, "old-pending", now - timedelta(days=40), done=False)
    _store(services, "today", now, done=True)
    return services


def test_prune_deletes_old_events_done_with_and_audits_it(inbox_services: Services) -> None:
    pruned = events.prune(inbox_services, older_than=timedelta(days=30), user="ops")
    assert (pruned.deleted, pruned.dry_run) == (1, False)
    assert _left(inbox_services) == ["old-pending", "today"]
    with unit_of_work(inbox_services.engine, read_only=True) as session:
        [entry] = [e for e in audit.list_audit(session) if e.action == "events.prune"]
    assert (entry.identity, entry.details["deleted"]) == ("ops", 1)


def test_a_dry_run_counts_and_changes_nothing(inbox_services: Services) -> None:
    pruned = events.prune(inbox_services, older_than=timedelta(days=30), user="ops", dry_run=True)
    assert (pruned.deleted, pruned.dry_run) == (1, True)
    assert _left(inbox_services) == ["old-done", "old-pending", "today"]


def test_prune_works_in_chunks_and_reports_progress(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "PRUNE_CHUNK", 2)
    old = services.clock() - timedelta(days=40)
    for n in range(5):
        _store(services, f"old-{n}", old, done=True)
    seen: list[int] = []
    pruned = events.prune(services, older_than=timedelta(days=30), user="ops", progress=seen.append)
    assert (pruned.deleted, seen, _left(services)) == (5, [2, 4, 5], [])


def test_a_retention_under_a_day_is_refused_and_nothing_changes(inbox_services: Services) -> None:
    with pytest.raises(InvalidInput, match="at least 1d"):
        events.prune(inbox_services, older_than=timedelta(hours=2), user="ops")
    assert _left(inbox_services) == ["old-done", "old-pending", "today"]


def test_the_scheduler_prunes_only_with_a_retention(inbox_services: Services) -> None:
    without = Scheduler(services=inbox_services, owner="a")
    without.tick()
    assert "event-retention" not in without.held()
    assert _left(inbox_services) == ["old-done", "old-pending", "today"]
    without.release()

    inbox_services.event_retention = timedelta(days=30)
    scheduler = Scheduler(services=inbox_services, owner="b")
    scheduler.tick()
    assert "event-retention" in scheduler.held()
    assert _left(inbox_services) == ["old-pending", "today"]
    scheduler.release()


def _cli(tmp_path: Path, *args: str):
    config = tmp_path / "cli.yaml"
    config.write_text(STORY)
    env = {
        "CONVEYOR_CONFIG": str(config),
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONVEYOR_USER": "ops",
    }
    return CliRunner().invoke(cli, list(args), env=env)


def test_the_cli_prunes_and_names_a_bad_option(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    services = make_services(STORY)  # the same state.db the CLI opens
    now = services.clock()
    _store(services, "ancient", now - timedelta(days=400), done=True)

    refused = _cli(tmp_path, "events", "prune", "--older-than", "2h")
    assert refused.exit_code == 2
    assert "--older-than" in refused.output and "shorter than 1d" in refused.output
    garbled = _cli(tmp_path, "events", "prune", "--older-than", "thirty days")
    assert garbled.exit_code == 2 and "is not a duration" in garbled.output

    dry = _cli(tmp_path, "events", "prune", "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 event(s)" in dry.output
    assert _left(services) == ["ancient"]
    done = _cli(tmp_path, "events", "prune", "--older-than", "30d")
    assert done.exit_code == 0, done.output
    assert "deleted 1 event(s)" in done.output
    assert _left(services) == []


def test_serve_refuses_a_bad_retention_before_starting(tmp_path: Path) -> None:
    result = _cli(tmp_path, "serve", "--event-retention", "1h", "--port", "0")
    assert result.exit_code == 2
    assert "--event-retention" in result.output and "shorter than 1d" in result.output


def test_the_cli_lists_events_by_status(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    """`events list --status pending` shows what waits; a bad --limit is refused naming it."""
    services = make_services(STORY)
    now = services.clock()
    _store(services, "waiting", now, done=False)
    _store(services, "done", now, done=True)
    pending = _cli(tmp_path, "events", "list", "--status", "pending", "--json")
    assert pending.exit_code == 0, pending.output
    assert [e["delivery_id"] for e in json.loads(pending.stdout)] == ["waiting"]
    wrong = _cli(tmp_path, "events", "list", "--limit", "0")
    assert wrong.exit_code != 0
    assert "'limit' must be a number from 1 to 1000, found 0" in wrong.output


def test_a_worker_says_at_start_what_happens_to_old_events(tmp_path: Path) -> None:
    kept = _cli(tmp_path, "worker", "--until-idle")
    assert kept.exit_code == 0, kept.output
    assert "webhook events are kept (no --event-retention)" in kept.output
    pruned = _cli(tmp_path, "worker", "--until-idle", "--event-retention", "2d")
    assert pruned.exit_code == 0, pruned.output
    assert "deleted 2d after they arrive (--event-retention), checked hourly" in pruned.output
