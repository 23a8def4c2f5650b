"""Who a step's command is, and stopping it, with real processes and the real /proc."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.waiting import wait_until

from conveyor.engine import processes
from conveyor.engine.processes import CommandProcess, Finding, Stopped

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

Start = Callable[[str], subprocess.Popen[bytes]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start a shell command in its own session, as run_process does; all killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def run(command: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(["sh", "-c", command], start_new_session=True)
        started.append(child)
        return child

    yield run
    for child in started:
        if group_alive(child.pid):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_alive(pgid: int) -> bool:
    """Whether any process of the group exists and is not a zombie."""
    return group_size(pgid) > 0


def group_size(pgid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += int(fields[2]) == pgid and fields[0] != "Z"
    return count


def start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def here() -> processes.Host:
    host = processes.this_host()
    assert host is not None
    return host


def test_a_command_is_identified_by_host_boot_pid_and_start_time(start: Start) -> None:
    child = start("sleep 60")
    recorded = processes.identify(child.pid)
    assert recorded is not None
    assert recorded.pid == child.pid
    assert recorded.start_time == start_time(child.pid)
    assert recorded.host.name == here().name
    assert recorded.host.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    document = recorded.to_json()
    assert document["pgid"] == child.pid
    assert CommandProcess.from_json(document) == recorded
    assert CommandProcess.from_json({"pid": "x"}) is None


def test_a_process_not_started_here_in_its_own_session_is_not_identified(start: Start) -> None:
    """Not our child leading its own session: its pid may already name another process."""
    assert processes.identify(1) is None
    assert processes.identify(os.getpid()) is None
    child = subprocess.Popen(["sleep", "60"])  # our child, but in our session
    try:
        assert processes.identify(child.pid) is None
    finally:
        child.kill()
        child.wait()


def test_the_same_command_on_this_host_is_found_running_and_stopped(start: Start) -> None:
    child = start("sleep 60; echo never")
    recorded = processes.identify(child.pid)
    assert recorded is not None
    assert processes.find(recorded, here()) is Finding.RUNNING
    assert processes.stop_group(recorded.pid) is Stopped.TERMINATED
    assert not group_alive(child.pid)
    assert child.wait() == -signal.SIGTERM
    assert processes.find(recorded, here()) is Finding.ENDED


def test_another_start_time_means_the_pid_was_reused_and_it_is_left_alone(start: Start) -> None:
    child = start("sleep 60")
    recorded = processes.identify(child.pid)
    assert recorded is not None
    reused = dataclasses.replace(recorded, start_time=recorded.start_time - 1)
    assert processes.find(reused, here()) is Finding.ENDED
    assert alive(child.pid)


def test_a_command_recorded_on_another_host_is_left_alone(start: Start) -> None:
    child = start("sleep 60")
    recorded = processes.identify(child.pid)
    assert recorded is not None
    elsewhere = dataclasses.replace(
        recorded, host=dataclasses.replace(recorded.host, name="other-host")
    )
    assert processes.find(elsewhere, here()) is Finding.ELSEWHERE
    other_namespace = dataclasses.replace(
        recorded, host=dataclasses.replace(recorded.host, pid_namespace="pid:[1]")
    )
    assert processes.find(other_namespace, here()) is Finding.ELSEWHERE
    before_reboot = dataclasses.replace(
        recorded, host=dataclasses.replace(recorded.host, boot_id="another-boot")
    )
    assert processes.find(before_reboot, here()) is Finding.ENDED
    assert alive(child.pid)


def test_what_the_leader_started_is_stopped_after_the_leader_ended(start: Start) -> None:
    """The leader gone (a zombie keeps its pid, so the group id too), its child still runs."""
    child = start("sleep 60 & sleep 1")
    recorded = processes.identify(child.pid)
    assert recorded is not None
    wait_until(lambda: not alive(child.pid), "the leader to exit")  # not reaped: a zombie
    assert group_alive(child.pid)
    assert processes.find(recorded, here()) is Finding.RUNNING
    assert processes.stop_group(recorded.pid) is Stopped.TERMINATED
    assert not group_alive(child.pid)


def test_a_group_ignoring_sigterm_is_killed_after_the_grace(start: Start) -> None:
    child = start("trap '' TERM; sleep 60; sleep 60")
    recorded = processes.identify(child.pid)
    assert recorded is not None
    # sh and its sleep, both ignoring SIGTERM (an ignored signal stays ignored across exec)
    wait_until(lambda: group_size(child.pid) == 2, "the sleep to start")
    assert processes.stop_group(recorded.pid, grace=0.3) is Stopped.KILLED
    assert not group_alive(child.pid)
    assert child.wait() == -signal.SIGKILL
