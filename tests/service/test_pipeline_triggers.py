"""`pipeline:` triggers survive the worker dying between a run's end and its followers' start.

The worker ends a run and marks its triggers due in one commit; it then starts
the followers. These tests stop it in between (as a crash would) or make a
start fail for a passing reason, and check that the scheduler's sweep starts
each follower exactly once, and only after its grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from conveyor.core import gates
from conveyor.core.errors import RegistryUnavailable
from conveyor.core.images import PinnedImage
from conveyor.engine import scheduler as scheduler_module
from conveyor.engine.scheduler import Scheduler
from conveyor.engine.worker import Worker
from conveyor.service import queries, runs, triggers
from conveyor.service.context import Services
from conveyor.store import claims, tables
from conveyor.store.database import unit_of_work
from conveyor.testing import InMemoryRegistry
from tests.service.conftest import STORY
from tests.service.test_worker import CHAINED


def _runs(services: Services, pipeline: str) -> list[dict[str, object]]:
    return queries.list_runs(services, pipeline=pipeline, status=None, limit=20)


def _due(services: Services, run_id: int) -> bool:
    with unit_of_work(services.engine, read_only=True) as session:
        return bool(
            session.scalar(sa.select(tables.Run.triggers_due).where(tables.Run.id == run_id))
        )


def _approved_prerelease(services: Services, worker: Worker) -> int:
    """A pre-release run driven to success (deploy, then its approval)."""
    run_id = runs.start_run(services, runs.RunRequest(pipeline="prerelease-cd", user="ann"))
    asyncio.run(worker.run_until_idle())
    runs.decide(services, run_id, approver=gates.Approver(user="qa"), approved=True, comment="")
    asyncio.run(worker.run_until_idle())
    assert queries.show_run(services, run_id)["status"] == "succeeded"
    return run_id


@pytest.fixture
def crashing_worker(monkeypatch: pytest.MonkeyPatch) -> Callable[[Services], Worker]:
    """A worker that 'dies' right after the commit that ends a run: it never fires triggers."""

    async def died(self: Worker, run_id: int) -> None:
        return None

    def make(services: Services) -> Worker:
        monkeypatch.setattr(Worker, "_after", died)
        return Worker(services=services, name="w")

    return make


@pytest.fixture
def died_after_success(
    make_services: Callable[[str], Services],
    registry: InMemoryRegistry,
    crashing_worker: Callable[[Services], Worker],
) -> tuple[Services, int, PinnedImage]:
    """A pre-release run that succeeded under a worker that died before firing its triggers.

    Returns the services (CHAINED pipelines), the run's id and the image it took.
    """
    services = make_services(CHAINED)
    pushed = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    return services, _approved_prerelease(services, crashing_worker(services)), pushed


def test_the_sweep_starts_followers_of_a_run_whose_worker_died(
    died_after_success: tuple[Services, int, PinnedImage],
) -> None:
    """After the grace period the sweep starts the follower once, with the run's image."""
    services, good, pushed = died_after_success
    clock = services.clock
    assert _runs(services, "smoke") == [] and _due(services, good)

    scheduler = Scheduler(services=services, owner="p1")
    assert scheduler.tick() == []  # within the grace period: the worker's own turn
    clock.now += triggers.GRACE  # type: ignore[attr-defined]
    [started] = scheduler.tick()
    [smoke] = _runs(services, "smoke")
    assert (smoke["id"], smoke["upstream_run"], smoke["trigger"]) == (started, good, "pipeline")
    assert smoke["digest"] == str(pushed.digest)
    assert not _due(services, good)

    clock.now += timedelta(minutes=5)  # type: ignore[attr-defined]
    assert scheduler.tick() == []
    assert len(_runs(services, "smoke")) == 1


def test_a_failed_run_leaves_its_failure_followers_due_too(
    make_services: Callable[[str], Services],
    registry: InMemoryRegistry,
    crashing_worker: Callable[[Services], Worker],
) -> None:
    """A run that fails (approval rejected) marks `status: failed` followers due in its commit."""
    services = make_services(CHAINED)
    worker = crashing_worker(services)
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    bad = runs.start_run(services, runs.RunRequest(pipeline="prerelease-cd", user="ann"))
    asyncio.run(worker.run_until_idle())
    runs.decide(services, bad, approver=gates.Approver(user="qa"), approved=False, comment="no")
    asyncio.run(worker.run_until_idle())
    assert queries.show_run(services, bad)["status"] == "failed" and _due(services, bad)
    services.clock.now += triggers.GRACE  # type: ignore[attr-defined]
    Scheduler(services=services, owner="p1").tick()
    [notified] = _runs(services, "notify-failure")
    assert notified["trigger"] == "pipeline" and _runs(services, "smoke") == []


def test_a_start_that_fails_for_a_passing_reason_is_tried_again(
    make_services: Callable[[str], Services],
    registry: InMemoryRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry down when the worker fires: the run stays due and the sweep starts it."""
    services = make_services(CHAINED)
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    real_start = runs.start_run
    failures = iter([RegistryUnavailable("registry.test:5000: connection refused")])

    def flaky_start(services: Services, request: runs.RunRequest) -> int:
        failure = next(failures, None) if request.trigger == "pipeline" else None
        if failure is not None:
            raise failure
        return real_start(services, request)

    monkeypatch.setattr(triggers.runs, "start_run", flaky_start)
    good = _approved_prerelease(services, Worker(services=services, name="w"))
    assert _runs(services, "smoke") == [] and _due(services, good)
    services.clock.now += triggers.GRACE  # type: ignore[attr-defined]
    Scheduler(services=services, owner="p1").tick()
    assert [r["upstream_run"] for r in _runs(services, "smoke")] == [good]
    assert not _due(services, good)


def test_triggers_due_for_over_a_day_are_given_up(
    died_after_success: tuple[Services, int, PinnedImage],
) -> None:
    """A run that ended more than HORIZON ago starts nothing when the sweep first sees it."""
    services, good, _ = died_after_success
    services.clock.now += triggers.HORIZON + timedelta(minutes=1)  # type: ignore[attr-defined]
    assert Scheduler(services=services, owner="p1").tick() == []
    assert _runs(services, "smoke") == [] and not _due(services, good)


def test_triggers_being_handled_elsewhere_are_left_alone(
    died_after_success: tuple[Services, int, PinnedImage],
) -> None:
    """While another process holds a run's trigger lease, the sweep starts nothing for it."""
    services, good, _ = died_after_success
    clock = services.clock
    lease = f"pipeline-triggers:run-{good}"
    with unit_of_work(services.engine) as session:
        assert claims.acquire_lease(
            session, lease, owner="elsewhere", ttl=timedelta(minutes=5), now=clock()
        )
    clock.now += triggers.GRACE  # type: ignore[attr-defined]
    scheduler = Scheduler(services=services, owner="p1")
    assert scheduler.tick() == []
    assert _runs(services, "smoke") == [] and _due(services, good)

    with unit_of_work(services.engine) as session:
        claims.release_lease(session, lease, owner="elsewhere")
    clock.now += scheduler_module.FOLLOW_UP_INTERVAL  # type: ignore[attr-defined]
    assert len(scheduler.tick()) == 1
    assert len(_runs(services, "smoke")) == 1 and not _due(services, good)
    # Handled: a late second call (the worker's own, say) starts nothing more.
    assert triggers.after_run(services, good) == []
    assert len(_runs(services, "smoke")) == 1


def test_runs_nobody_waits_for_are_not_due(
    services: Services, worker: Worker, registry: InMemoryRegistry
) -> None:
    """Without a `pipeline:` trigger on its pipeline a run ends with nothing due, and no sweep."""
    assert "pipeline: {name:" not in STORY
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    good = _approved_prerelease(services, worker)
    assert not _due(services, good)
    assert "pipeline-triggers" not in {job.name for job in Scheduler(services, owner="p").jobs}
