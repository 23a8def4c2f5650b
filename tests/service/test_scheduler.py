"""Pollers and schedules: new versions start runs once; one process runs each job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor import wiring
from conveyor.config import loader
from conveyor.core.errors import RegistryUnavailable
from conveyor.engine.scheduler import MAX_RETRY_AFTER, Scheduler
from conveyor.service import queries
from conveyor.service.context import Services
from conveyor.testing import InMemoryRegistry
from tests.service.conftest import STORY

POLLED = (
    STORY
    + """\
  polled:
    environment: test
    source: {artifact: myapp}
    triggers:
      - poll: {source: myapp, interval: 1m}
    steps:
      - {type: command, run: "true"}
  nightly:
    triggers:
      - schedule: {cron: "0 3 * * *"}
    steps:
      - {type: command, run: "true"}
"""
)


FOLLOWED = (
    STORY.replace(
        "filter: {pattern: '^myapp-V(?P<version>.+)$', extract: '$version'}\n"
        "    policy: {semver: {}}",
        "policy: {digest: {tag: stable}}",
    )
    + """\
  polled:
    environment: test
    source: {artifact: myapp}
    triggers:
      - poll: {source: myapp, interval: 1m}
    steps:
      - {type: command, run: "true"}
"""
)


class FlakyRegistry(InMemoryRegistry):
    """Answers 429-like failures while `failing` is set (a stand-in for a rate limit)."""

    failing: bool = False
    retry_after: float | None = None

    async def list_tags(self, repository):  # type: ignore[no-untyped-def]
        if self.failing:
            raise RegistryUnavailable(
                "127.0.0.1: too many requests (429)", retry_after=self.retry_after
            )
        return await super().list_tags(repository)


def _runs(services: Services, pipeline: str) -> list[dict[str, object]]:
    return queries.list_runs(services, pipeline=pipeline, status=None, limit=20)


def test_poll_starts_one_run_per_new_version_and_backs_off(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Polling starts a run for each new best version once, and waits longer after errors."""
    services = make_services(POLLED)
    clock = services.clock
    scheduler = Scheduler(services=services, owner="p1")
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    assert len(scheduler.tick()) == 1
    assert scheduler.tick() == []  # not due yet
    clock.now += timedelta(minutes=2)  # type: ignore[attr-defined]
    assert scheduler.tick() == []  # due, but nothing new
    registry.push("team/myapp", "myapp-V1.1.0", b"v1.1")
    registry.push("team/myapp", "other-9.0.0", b"o")
    clock.now += timedelta(minutes=2)  # type: ignore[attr-defined]
    assert len(scheduler.tick()) == 1
    assert [r["tag"] for r in _runs(services, "polled")] == ["myapp-V1.1.0", "myapp-V1.0.0"]
    assert {r["trigger"] for r in _runs(services, "polled")} == {"poll"}

    # A takeover by another process does not start the same version again.
    scheduler.release()
    other = Scheduler(services=services, owner="p2")
    assert other.tick() == []
    assert "poll:myapp" in other.held()


def test_unchanged_registry_answers_skip_selection_but_a_moved_tag_still_fires(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """A 304 on the tag list skips selection; the followed tag is still checked, and fires."""
    assert "digest: {tag: stable}" in FOLLOWED
    services = make_services(FOLLOWED)
    clock = services.clock
    scheduler = Scheduler(services=services, owner="p1")
    registry.push("team/myapp", "stable", b"build 1")
    assert len(scheduler.tick()) == 1
    # The poll reads the list and the manifest; the run takes that digest (no second look).
    assert registry.calls == ["list_tags", "resolve"]

    # Nothing moved: no selection, no manifest read. The first check is a plain HEAD compared
    # by Docker-Content-Digest (a GET gave no manifest ETag); it learns the ETag for the next.
    for expected in (["list_tags:304", "check_tag"], ["list_tags:304", "check_tag:304"]):
        registry.calls.clear()
        clock.now += timedelta(minutes=2)  # type: ignore[attr-defined]
        assert scheduler.tick() == []
        assert registry.calls == expected

    # Same tag list, but `stable` now names another digest: the poll must see it.
    registry.push("team/myapp", "stable", b"build 2")
    registry.calls.clear()
    clock.now += timedelta(minutes=2)  # type: ignore[attr-defined]
    assert len(scheduler.tick()) == 1
    assert registry.calls == ["list_tags:304", "check_tag", "resolve"]
    digests = [r["digest"] for r in _runs(services, "polled")]
    assert len(set(digests)) == 2

    # The validators live in the store: another process taking over asks conditionally too.
    scheduler.release()
    other = Scheduler(services=services, owner="p2")
    registry.calls.clear()
    assert other.tick() == []
    assert registry.calls == ["list_tags:304", "check_tag:304"]


def test_a_changed_source_definition_forgets_the_validators(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Validators recorded under another filter or policy are not sent again."""
    registry.push("team/myapp", "stable", b"build 1")
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    Scheduler(services=make_services(FOLLOWED), owner="p1").tick()
    registry.calls.clear()
    services = make_services(POLLED)  # same source name, semver policy now
    assert len(Scheduler(services=services, owner="p1").tick()) == 1
    assert registry.calls == ["list_tags", "resolve"]


def test_schedule_fires_at_the_cron_time(make_services: Callable[[str], Services]) -> None:
    """A schedule trigger starts its pipeline when the cron time passes, once per slot."""
    services = make_services(POLLED)
    clock = services.clock
    clock.now = datetime(2026, 11, 28, 2, 58, tzinfo=UTC)  # type: ignore[attr-defined]
    scheduler = Scheduler(services=services, owner="s1")
    scheduler.tick()
    assert _runs(services, "nightly") == []
    clock.now = datetime(2026, 11, 28, 3, 0, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    scheduler.tick()
    scheduler.tick()
    assert [r["trigger"] for r in _runs(services, "nightly")] == ["schedule"]


def test_registry_errors_back_off(tmp_path: Path) -> None:
    """A failing registry is polled at doubling intervals instead of every interval."""
    registry = FlakyRegistry(host="registry.test:5000")
    (tmp_path / "conveyor.yaml").write_text(POLLED)
    definitions = loader.load(tmp_path / "conveyor.yaml")
    from tests.service.conftest import Clock

    clock = Clock()
    services = Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
        registries=wiring.ConfiguredRegistries(definitions.registries, {}, lambda d, c: registry),
        data_dir=tmp_path / "data",
        clock=clock,
    )
    scheduler = Scheduler(services=services, owner="p")
    registry.failing = True
    scheduler.tick()
    job = next(j for j in scheduler.jobs if j.kind == "poll")
    assert job.backoff == 2
    assert job.next_at is not None and job.next_at - clock.now >= timedelta(minutes=1, seconds=59)
    registry.failing = False
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    clock.now += timedelta(minutes=1)
    assert scheduler.tick() == []  # still backing off
    clock.now += timedelta(minutes=2)
    assert len(scheduler.tick()) == 1
    assert job.backoff == 1


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(3600.0, timedelta(hours=1), id="longer-than-backoff"),
        pytest.param(30.0, timedelta(minutes=2), id="shorter-than-backoff"),
        pytest.param(10**9, MAX_RETRY_AFTER, id="capped"),
    ],
)
def test_a_429_retry_after_is_honoured(
    tmp_path: Path, retry_after: float, expected: timedelta
) -> None:
    """After a 429 the next poll waits for Retry-After when it is longer than the backoff."""
    registry = FlakyRegistry(host="registry.test:5000")
    registry.failing, registry.retry_after = True, retry_after
    (tmp_path / "conveyor.yaml").write_text(POLLED)
    definitions = loader.load(tmp_path / "conveyor.yaml")
    from tests.service.conftest import Clock

    clock = Clock()
    services = Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
        registries=wiring.ConfiguredRegistries(definitions.registries, {}, lambda d, c: registry),
        data_dir=tmp_path / "data",
        clock=clock,
    )
    scheduler = Scheduler(services=services, owner="p")
    scheduler.tick()
    job = next(j for j in scheduler.jobs if j.kind == "poll")
    assert job.next_at is not None
    assert abs((job.next_at - clock.now) - expected) < timedelta(seconds=1)


@pytest.mark.postgres
def test_one_poller_per_source_across_processes_on_postgresql(
    postgres_url: str, tmp_path: Path, registry: InMemoryRegistry
) -> None:
    """With two processes on one PostgreSQL, exactly one holds each poller and schedule."""
    (tmp_path / "conveyor.yaml").write_text(POLLED)
    definitions = loader.load(tmp_path / "conveyor.yaml")

    def services() -> Services:
        return Services(
            definitions=definitions,
            engine=wiring.open_database(postgres_url),
            registries=wiring.ConfiguredRegistries(
                definitions.registries, {}, lambda d, c: registry
            ),
            data_dir=tmp_path / "data",
        )

    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    first, second = (
        Scheduler(services=services(), owner="a"),
        Scheduler(services=services(), owner="b"),
    )
    started = first.tick() + second.tick() + first.tick() + second.tick()
    assert len(started) == 1
    assert sorted(first.held() + second.held()) == ["poll:myapp", "schedule:nightly#0"]
    assert not set(first.held()) & set(second.held())
    first.release()  # the holder stops: the other process takes its jobs over
    assert second.tick() == []  # and does not start the version polled before
    assert sorted(second.held()) == ["poll:myapp", "schedule:nightly#0"]
    second.release()
    first.services.engine.dispose()
    second.services.engine.dispose()


def test_a_newest_policy_poll_picks_by_creation_time(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """Polling a `newest` source reads creation times: the latest build wins, not the greatest name."""
    newest = FOLLOWED.replace("policy: {digest: {tag: stable}}", "policy: {newest: {}}")
    assert "policy: {newest: {}}" in newest
    services = make_services(newest)
    registry.push("team/myapp", "zz-old", b"old", created=datetime(2026, 1, 1, tzinfo=UTC))
    registry.push("team/myapp", "aa-new", b"new", created=datetime(2026, 6, 1, tzinfo=UTC))
    assert len(Scheduler(services=services, owner="p1").tick()) == 1
    assert [r["tag"] for r in _runs(services, "polled")] == ["aa-new"]
    assert registry.config_reads == 2
