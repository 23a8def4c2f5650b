"""The worker: cancelling a running step, the environment deploy lock, logs, parameters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from conveyor.core.errors import InvalidInput
from conveyor.engine.worker import Worker
from conveyor.service import queries, runs
from conveyor.service.context import Services
from conveyor.store import claims
from conveyor.store.database import unit_of_work
from conveyor.testing import InMemoryRegistry
from tests.service.conftest import STORY
from tests.support.waiting import wait_until

COMMANDS = (
    STORY
    + """\
  slow:
    parameters: {GREETING: {default: hello}, WHO: {required: true}}
    steps:
      - {name: talk, type: command, run: 'echo "$GREETING $WHO"; echo to-stderr >&2; sleep 30'}
"""
)


def test_cancel_stops_a_running_step(make_services: Callable[[str], Services]) -> None:
    """Cancelling a run stops its running command; the run and step end cancelled."""
    services = make_services(COMMANDS)
    worker = Worker(services=services, name="w", lease=timedelta(seconds=0.6))
    run_id = runs.start_run(
        services, runs.RunRequest(pipeline="slow", parameters={"WHO": "world"}, user="ann")
    )
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_until_idle()))
    thread.start()
    wait_until(lambda: bool(queries.read_logs(services, run_id, after=0)[0]), "output")
    lines, _ = queries.read_logs(services, run_id, after=0)
    assert [(line["stream"], line["line"]) for line in lines][:1] == [("stdout", "hello world")]
    runs.cancel(services, run_id, user="ann")
    thread.join(timeout=20)
    assert not thread.is_alive()
    view = queries.show_run(services, run_id)
    assert view["status"] == "cancelled"
    assert view["steps"][0]["status"] == "cancelled"


def test_parameters_are_checked(make_services: Callable[[str], Services]) -> None:
    """A missing required parameter or an undeclared one is refused, naming it; nothing is created."""
    services = make_services(COMMANDS)
    with pytest.raises(InvalidInput, match="requires parameter 'WHO'; pass --param WHO=VALUE"):
        runs.start_run(services, runs.RunRequest(pipeline="slow", parameters={}, user="ann"))
    with pytest.raises(InvalidInput, match="has no parameter 'NOPE'; declared: GREETING, WHO"):
        runs.start_run(
            services,
            runs.RunRequest(pipeline="slow", parameters={"WHO": "x", "NOPE": "1"}, user="ann"),
        )
    assert queries.list_runs(services, pipeline=None, status=None, limit=5) == []


def test_one_deploy_at_a_time_per_environment(
    services: Services, worker: Worker, registry: InMemoryRegistry
) -> None:
    """A deploy waits while another process holds the environment's deploy lock."""
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    with unit_of_work(services.engine) as session:
        assert claims.acquire_lease(
            session,
            claims.environment_lock("pre-release"),
            owner="other-process",
            ttl=timedelta(hours=1),
            now=services.clock(),
        )
    run_id = runs.start_run(services, runs.RunRequest(pipeline="prerelease-cd", user="ann"))
    asyncio.run(worker.run_until_idle())
    view = queries.show_run(services, run_id)
    assert view["status"] == "waiting"
    assert view["steps"][0]["reason"] == "another deploy to 'pre-release' is in progress"
    assert ("team/myapp", "pre-release") not in registry.tags

    with unit_of_work(services.engine) as session:
        claims.release_lease(session, claims.environment_lock("pre-release"), owner="other-process")
    services.clock.now += timedelta(seconds=5)  # type: ignore[attr-defined]
    asyncio.run(worker.run_until_idle())
    assert queries.show_run(services, run_id)["steps"][0]["status"] == "succeeded"
    assert ("team/myapp", "pre-release") in registry.tags


CHAINED = (
    STORY
    + """\
  smoke:
    environment: test
    source: {pipeline: prerelease-cd}
    triggers:
      - pipeline: {name: prerelease-cd, status: succeeded}
    steps:
      - {type: deploy, deployer: registry-tag, with: {tag: smoke}}
  notify-failure:
    triggers:
      - pipeline: {name: prerelease-cd, status: failed}
    steps:
      - {type: command, run: "echo pre-release failed"}
"""
)


def test_pipeline_triggers_fire_once_on_the_matching_status(
    make_services: Callable[[str], Services], registry: InMemoryRegistry
) -> None:
    """A succeeded run starts its `succeeded` followers with its own image; a failed one the others."""
    services = make_services(CHAINED)
    worker = Worker(services=services, name="w")
    pushed = registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    good = runs.start_run(services, runs.RunRequest(pipeline="prerelease-cd", user="ann"))
    asyncio.run(worker.run_until_idle())
    from conveyor.core import gates

    runs.decide(services, good, approver=gates.Approver(user="qa"), approved=True, comment="")
    asyncio.run(worker.run_until_idle())
    asyncio.run(worker.run_until_idle())
    [smoke] = queries.list_runs(services, pipeline="smoke", status=None, limit=5)
    assert (smoke["status"], smoke["upstream_run"], smoke["trigger"]) == (
        "succeeded",
        good,
        "pipeline",
    )
    assert registry.tags[("team/myapp", "smoke")] == pushed.digest
    assert queries.list_runs(services, pipeline="notify-failure", status=None, limit=5) == []

    bad = runs.start_run(services, runs.RunRequest(pipeline="prerelease-cd", user="ann"))
    asyncio.run(worker.run_until_idle())
    runs.decide(services, bad, approver=gates.Approver(user="qa"), approved=False, comment="no")
    asyncio.run(worker.run_until_idle())
    asyncio.run(worker.run_until_idle())
    [notified] = queries.list_runs(services, pipeline="notify-failure", status=None, limit=5)
    assert notified["status"] == "succeeded"
    assert len(queries.list_runs(services, pipeline="smoke", status=None, limit=5)) == 1


def _handshake_config(directory: str) -> str:
    # Each run marks itself, then waits (up to 3 s) for the other's mark: both can
    # succeed only if their steps run at the same time.
    wait = (
        f'touch {directory}/"$ME"; i=0; '
        f'while [ ! -e {directory}/"$OTHER" ]; do i=$((i+1)); [ $i -gt 30 ] && exit 1; '
        "sleep 0.1; done"
    )
    return (
        STORY
        + f"""\
  handshake:
    parameters: {{ME: {{required: true}}, OTHER: {{required: true}}}}
    steps:
      - {{name: meet, type: command, run: '{wait}'}}
  to-test:
    environment: test
    source: {{artifact: myapp}}
    steps:
      - name: deploy
        type: deploy
        deployer: command
        with: {{run: 'echo "start $CONVEYOR_RUN_ID" >> {directory}/deploys; sleep 0.5; echo "end $CONVEYOR_RUN_ID" >> {directory}/deploys'}}
"""
    )


@pytest.mark.parametrize(("concurrency", "succeeded"), [(2, 2), (1, 1)])
def test_concurrency_runs_steps_of_several_runs_at_once(
    make_services: Callable[[str], Services], tmp_path, concurrency: int, succeeded: int
) -> None:
    """With concurrency 2 two runs' steps overlap, so both meet; one at a time, the first gives up."""
    services = make_services(_handshake_config(str(tmp_path)))
    worker = Worker(services=services, name="w", concurrency=concurrency)
    for me, other in (("a", "b"), ("b", "a")):
        runs.start_run(
            services,
            runs.RunRequest(pipeline="handshake", parameters={"ME": me, "OTHER": other}, user="u"),
        )
    asyncio.run(worker.run_until_idle())
    statuses = [
        r["status"] for r in queries.list_runs(services, pipeline=None, status=None, limit=5)
    ]
    assert statuses.count("succeeded") == succeeded
    assert len(statuses) == 2


def test_one_worker_never_overlaps_two_deploys_to_one_environment(
    make_services: Callable[[str], Services], registry: InMemoryRegistry, tmp_path
) -> None:
    """Two runs driven at once by one worker: the second deploy waits for the environment lock."""
    services = make_services(_handshake_config(str(tmp_path)))
    registry.push("team/myapp", "myapp-V1.0.0", b"v1")
    registry.push("team/myapp", "myapp-V1.1.0", b"v2")
    worker = Worker(services=services, name="w", concurrency=2)
    first = runs.start_run(
        services, runs.RunRequest(pipeline="to-test", tag="myapp-V1.0.0", user="u")
    )
    second = runs.start_run(
        services, runs.RunRequest(pipeline="to-test", tag="myapp-V1.1.0", user="u")
    )
    asyncio.run(worker.run_until_idle())
    waiting = queries.show_run(services, second)
    assert queries.show_run(services, first)["status"] == "succeeded"
    assert waiting["status"] == "waiting"
    assert "another deploy to 'test' is in progress" in waiting["steps"][0]["reason"]
    services.clock.now += timedelta(seconds=5)  # type: ignore[attr-defined]
    asyncio.run(worker.run_until_idle())
    assert queries.show_run(services, second)["status"] == "succeeded"
    lines = (tmp_path / "deploys").read_text().split()
    assert lines == [
        "start",
        str(first),
        "end",
        str(first),
        "start",
        str(second),
        "end",
        str(second),
    ]


FENCED = (
    STORY
    + """\
  fenced:
    steps:
      - {name: first, type: command, run: 'echo started; sleep 1; exit $CODE'}
      - {name: second, type: command, run: 'echo second'}
    parameters: {CODE: {default: "0"}}
"""
)


@pytest.mark.parametrize("code", ["0", "3"])
def test_a_worker_whose_run_was_taken_over_drops_its_step_outcome(
    make_services: Callable[[str], Services], code: str
) -> None:
    """A stalled worker's step ends after another worker took the run: nothing it says is kept.

    The takeover is written straight into the claim, as another process's
    claim would be after this worker's lease ran out (its heartbeat, every
    third of the 30 s lease, has not come round in the step's one second).
    Without the fence the step's success began the next step here, and its
    failure failed the run under the new holder's feet.
    """
    services = make_services(FENCED)
    worker = Worker(services=services, name="stalled")
    run_id = runs.start_run(
        services, runs.RunRequest(pipeline="fenced", parameters={"CODE": code}, user="ann")
    )
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_until_idle()))
    thread.start()
    wait_until(lambda: bool(queries.read_logs(services, run_id, after=0)[0]), "the step's output")
    with unit_of_work(services.engine) as session:
        taken = claims.claim_run(
            session,
            run_id,
            worker="successor",
            lease=timedelta(minutes=5),
            now=services.clock() + timedelta(minutes=1),  # the stalled worker's lease ran out
        )
    assert taken is not None
    thread.join(timeout=20)
    assert not thread.is_alive()
    view = queries.show_run(services, run_id)
    assert view["status"] == "running"
    assert [step["status"] for step in view["steps"]] == ["running", "pending"]
    with unit_of_work(services.engine, read_only=True) as session:
        assert runs.load_run(session, run_id).claimed_by == "successor"


def test_a_failed_step_fails_the_run_and_skips_the_rest(
    make_services: Callable[[str], Services],
) -> None:
    """The step's reason and the run's error name the step; later steps are skipped, not run."""
    services = make_services(
        STORY
        + """\
  breaks:
    steps:
      - {name: fails, type: command, run: 'exit 3'}
      - {name: never, type: command, run: 'echo never'}
"""
    )
    run_id = runs.start_run(services, runs.RunRequest(pipeline="breaks", user="ann"))
    asyncio.run(Worker(services=services, name="w").run_until_idle())
    view = queries.show_run(services, run_id)
    assert (view["status"], [s["status"] for s in view["steps"]]) == (
        "failed",
        ["failed", "skipped"],
    )
    assert view["error"].startswith("step 'fails': ")
    assert "3" in view["steps"][0]["reason"]
    with unit_of_work(services.engine, read_only=True) as session:
        assert runs.load_run(session, run_id).claimed_by is None
