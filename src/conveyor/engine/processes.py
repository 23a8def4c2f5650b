"""Which process a step's command is, and stopping one that a killed worker left running.

A command runs in its own session (``start_new_session``), so its pid is also
its process group id, and killing the group kills whatever it started. When a
worker is SIGKILLed its commands go on as orphans; the step records who its
command is (``CommandProcess``) so that a worker taking the run over on the
same host can stop the orphan before the step runs again or fails.

A pid alone is not an identity: pids are reused, and on another host or after
a reboot the same number names another process. So a record holds the host
(name, boot id, pid namespace) and the leader's start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot), and a process is stopped only
when all of them match. Linux only: without ``/proc`` nothing is recorded.
"""

from __future__ import annotations

import enum
import functools
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
BOOT_ID = PROC / "sys/kernel/random/boot_id"
# After SIGTERM, how long the group gets before SIGKILL.
STOP_GRACE = 5.0
# After SIGKILL, how long to wait for the group to be gone before giving up.
KILL_WAIT = 2.0
_POLL = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """Where a process runs: pids mean something only within one host, boot and pid namespace."""

    name: str
    boot_id: str
    pid_namespace: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandProcess:
    """A step's command: the leader of its own process group, on one host."""

    host: Host
    pid: int  # the leader's pid, which is also the process group id
    start_time: int  # the leader's start, clock ticks since boot (guards against pid reuse)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host.name,
            "boot_id": self.host.boot_id,
            "pid_namespace": self.host.pid_namespace,
            "pid": self.pid,
            "pgid": self.pid,
            "start_time": self.start_time,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> CommandProcess | None:
        """The record read back; None when it is not one (written by another version)."""
        try:
            host = Host(
                name=str(document["host"]),
                boot_id=str(document["boot_id"]),
                pid_namespace=str(document["pid_namespace"]),
            )
            return cls(host=host, pid=int(document["pid"]), start_time=int(document["start_time"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class _Stat:
    state: str
    ppid: int
    pgrp: int
    session: int
    start_time: int


def _stat(pid: int) -> _Stat | None:
    """Fields of /proc/<pid>/stat, or None when there is no such process (or no /proc)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); field n is fields[n - 3].
    return _Stat(
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        start_time=int(fields[19]),
    )


@functools.cache
def this_host() -> Host | None:
    """This process's host, boot and pid namespace; None without /proc (not Linux)."""
    try:
        boot_id = BOOT_ID.read_text().strip()
        namespace = os.readlink(PROC / "self/ns/pid")
    except OSError:
        return None
    return Host(name=socket.gethostname(), boot_id=boot_id, pid_namespace=namespace)


def identify(pid: int) -> CommandProcess | None:
    """Who the command this process just started in its own session is.

    None when it cannot be told: it has ended already, or the pid is no longer
    our child leading its own session (it ended and the pid was reused), or
    there is no /proc.
    """
    host = this_host()
    stat = _stat(pid)
    if host is None or stat is None:
        return None
    if stat.state == "Z" or stat.ppid != os.getpid() or stat.session != pid:
        return None
    return CommandProcess(host=host, pid=pid, start_time=stat.start_time)


class Finding(enum.Enum):
    """What a worker taking a step over finds of the command recorded on it."""

    RUNNING = "running"  # here, and the same process (or its group) is alive: stop it
    ENDED = "ended"  # here, and gone (its pid may name another process now)
    ELSEWHERE = "elsewhere"  # another host (or pid namespace): this worker cannot tell


def find(recorded: CommandProcess, here: Host) -> Finding:
    """Whether ``recorded`` is still running, looked at from ``here``."""
    if (recorded.host.name, recorded.host.pid_namespace) != (here.name, here.pid_namespace):
        return Finding.ELSEWHERE
    if recorded.host.boot_id != here.boot_id:
        return Finding.ENDED  # the host has rebooted since: nothing of it survived
    stat = _stat(recorded.pid)
    if stat is None or stat.start_time != recorded.start_time:
        return Finding.ENDED
    # The leader itself (a zombie keeps its pid, so the group id cannot be reused) or
    # what it started may be alive.
    return Finding.RUNNING if _alive_in_group(recorded.pid) else Finding.ENDED


def _alive_in_group(pgid: int) -> bool:
    """Whether any process of the group is alive (zombies are not)."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat.pgrp == pgid and stat.state != "Z":
                return True
    return False


class Stopped(enum.Enum):
    """How stopping a process group went."""

    TERMINATED = "terminated"  # gone within the grace after SIGTERM
    KILLED = "killed"  # needed SIGKILL
    SURVIVED = "survived"  # still alive after SIGKILL (stuck in the kernel, say)


def stop_group(pgid: int, *, grace: float = STOP_GRACE) -> Stopped:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds.

    Blocks up to ``grace + KILL_WAIT`` seconds: call it from a thread.
    """
    try:
        if not _signal_group(pgid, signal.SIGTERM) or _ended_within(pgid, grace):
            return Stopped.TERMINATED
        if not _signal_group(pgid, signal.SIGKILL) or _ended_within(pgid, KILL_WAIT):
            return Stopped.KILLED
    except PermissionError:  # another user's processes: not ours to stop
        pass
    return Stopped.SURVIVED


def _signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send a signal to the group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _ended_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive_in_group(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True
