"""A step records its command's process; a takeover stops the one a dead worker left running.

Real processes and the real /proc; the dead worker is one that began the step
and then did nothing more (its lease runs out on the test's clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.engine import processes
from conveyor.engine.worker import Worker
from conveyor.service import queries, runs
from conveyor.service.context import Services
from conveyor.store import runs as store_runs
from conveyor.store import tables
from conveyor.store.database import unit_of_work
from tests.service.conftest import STORY
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

CONFIG = (
    STORY
    + """\
  handshake:
    steps:
      - {name: talk, type: command, run: 'echo $$ > pid; while [ ! -f go ]; do sleep 0.05; done'}
  long:
    steps:
      - {name: long job, type: command, run: 'sleep 60'}
"""
)


@pytest.fixture
def orphan() -> Iterator[subprocess.Popen[bytes]]:
    """A command in its own session, as a worker starts one: the 'orphan' of a dead worker."""
    child = subprocess.Popen(["sh", "-c", "sleep 60; echo never"], start_new_session=True)
    yield child
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _process_of(services: Services, run_id: int) -> dict[str, object] | None:
    with unit_of_work(services.engine, read_only=True) as session:
        return session.scalar(sa.select(tables.Step.process).where(tables.Step.run_id == run_id))


def _log(services: Services, run_id: int) -> list[str]:
    lines, _ = queries.read_logs(services, run_id, after=0)
    return [line["line"] for line in lines]


def _left_running(
    services: Services, pipeline: str, recorded: processes.CommandProcess, *, cancel: bool = False
) -> int:
    """A run whose worker began its step, recorded its command, and died."""
    run_id = runs.start_run(services, runs.RunRequest(pipeline=pipeline, user="ann"))
    dead = Worker(services=services, name="dead", lease=timedelta(seconds=30))
    claimed = dead._claim_and_begin()
    assert claimed is not None and claimed[0] == run_id
    with unit_of_work(services.engine) as session:
        step_id = session.scalar(sa.select(tables.Step.id).where(tables.Step.run_id == run_id))
        assert step_id is not None
        assert store_runs.set_step_process(session, step_id, recorded.to_json(), worker="dead")
    if cancel:
        runs.cancel(services, run_id, user="ann")
    services.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    return run_id


def test_a_running_command_is_recorded_on_its_step_and_cleared_when_it_ends(
    make_services: Callable[[str], Services],
) -> None:
    services = make_services(CONFIG)
    run_id = runs.start_run(services, runs.RunRequest(pipeline="handshake", user="ann"))
    worker = Worker(services=services, name="w")
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_until_idle()))
    thread.start()
    workdir = services.data_dir / "work" / f"run-{run_id}"
    try:
        wait_until(
            lambda: (workdir / "pid").exists() and _process_of(services, run_id) is not None,
            "the command to start",
        )
        wait_until(lambda: (workdir / "pid").read_text().strip() != "", "its pid")
        pid = int((workdir / "pid").read_text())
        recorded = _process_of(services, run_id)
        assert recorded is not None
        assert (
            recorded
            == processes.CommandProcess(
                host=processes.this_host(),  # type: ignore[arg-type]
                pid=pid,
                start_time=int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]),
            ).to_json()
        )
    finally:
        (workdir / "go").touch()
        thread.join(timeout=20)
    assert queries.show_run(services, run_id)["status"] == "succeeded"
    assert _process_of(services, run_id) is None


def test_a_takeover_stops_the_command_a_dead_worker_left_running(
    make_services: Callable[[str], Services], orphan: subprocess.Popen[bytes]
) -> None:
    services = make_services(CONFIG)
    recorded = processes.identify(orphan.pid)
    assert recorded is not None
    run_id = _left_running(services, "long", recorded)

    asyncio.run(Worker(services=services, name="next").run_until_idle())

    assert orphan.wait(timeout=10) == -signal.SIGTERM
    view = queries.show_run(services, run_id)
    assert view["status"] == "failed"
    assert view["steps"][0]["status"] == "failed"
    assert view["steps"][0]["reason"].startswith("interrupted")
    assert _log(services, run_id) == [
        f"stopped the orphaned command (pid {orphan.pid}) left running by the interrupted "
        "worker (SIGTERM to its process group)"
    ]
    assert _process_of(services, run_id) is None


def test_a_takeover_of_a_cancelled_run_stops_its_command_too(
    make_services: Callable[[str], Services], orphan: subprocess.Popen[bytes]
) -> None:
    services = make_services(CONFIG)
    recorded = processes.identify(orphan.pid)
    assert recorded is not None
    run_id = _left_running(services, "long", recorded, cancel=True)

    asyncio.run(Worker(services=services, name="next").run_until_idle())

    assert orphan.wait(timeout=10) == -signal.SIGTERM
    assert queries.show_run(services, run_id)["status"] == "cancelled"
    assert "stopped the orphaned command" in _log(services, run_id)[0]


def test_a_takeover_leaves_a_command_recorded_on_another_host_alone(
    make_services: Callable[[str], Services], orphan: subprocess.Popen[bytes]
) -> None:
    services = make_services(CONFIG)
    recorded = processes.identify(orphan.pid)
    assert recorded is not None
    elsewhere = dataclasses.replace(
        recorded, host=dataclasses.replace(recorded.host, name="build-7")
    )
    run_id = _left_running(services, "long", elsewhere)

    asyncio.run(Worker(services=services, name="next").run_until_idle())

    assert orphan.poll() is None
    view = queries.show_run(services, run_id)
    assert view["steps"][0]["status"] == "failed"
    assert view["steps"][0]["reason"].startswith("interrupted")
    assert _log(services, run_id) == [
        f"the orphaned command (pid {orphan.pid}) of the interrupted worker may still run on "
        "host build-7: this worker cannot see it there, an operator must check"
    ]


def test_a_takeover_leaves_a_reused_pid_alone(
    make_services: Callable[[str], Services], orphan: subprocess.Popen[bytes]
) -> None:
    """Same pid, another start time: not the recorded command (it ended, the pid was reused)."""
    services = make_services(CONFIG)
    recorded = processes.identify(orphan.pid)
    assert recorded is not None
    reused = dataclasses.replace(recorded, start_time=recorded.start_time - 1)
    run_id = _left_running(services, "long", reused)

    asyncio.run(Worker(services=services, name="next").run_until_idle())

    assert orphan.poll() is None
    assert queries.show_run(services, run_id)["steps"][0]["reason"].startswith("interrupted")
    assert _log(services, run_id) == [
        f"the interrupted worker's command (pid {orphan.pid}) is no longer running"
    ]
