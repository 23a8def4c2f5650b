"""Running a subprocess with its output streamed, line by line, into the step log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor.core.errors import StepFailed
from conveyor.engine.context import LogSink, ProcessSink

# Lines longer than this are cut in the log: a runaway command must not fill the database.
MAX_LINE = 8192
# After a cancel kills the process group, how long to wait for it to be reaped.
REAP_TIMEOUT = 5.0


async def run_process(
    argv: Sequence[str] | str,
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: LogSink,
    timeout: float | None,
    what: str,
    track: ProcessSink | None = None,
) -> int:
    """Run ``argv`` (a shell command when a string); returns its exit code.

    Raises StepFailed when it cannot start or runs past ``timeout`` (its whole
    process group is killed). ``track`` is given the pid once it started and
    None once it ended and was reaped.
    """
    full_env = dict(env)
    try:
        if isinstance(argv, str):
            process = await asyncio.create_subprocess_shell(
                argv,
                cwd=cwd,
                env=full_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        else:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=full_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
    except OSError as exc:
        raise StepFailed(f"{what} could not start: {exc.strerror or exc}") from exc
    assert process.stdout is not None and process.stderr is not None
    # The pid is recorded (committed) as soon as the start returns, before the output
    # is read: it does not exist before the process does. A worker killed in between
    # (a fork, the pipes' set-up and one commit) leaves a command nobody knows of, as before
    # this was recorded; one killed later leaves a record that the worker taking
    # the run over uses to stop it. It is cleared only once the process has been
    # reaped, never before: a record outliving its process is harmless (the start
    # time it holds no longer matches), a process outliving its record is not.
    if track is not None:
        try:
            track(process.pid)
        except Exception:
            # Unrecorded, it must not outlive this step: nothing could stop it later.
            await _kill_and_reap(process)
            raise
    pumps = asyncio.gather(
        _pump(process.stdout, log, "stdout"), _pump(process.stderr, log, "stderr")
    )
    try:
        await asyncio.wait_for(asyncio.shield(pumps), timeout)
        code = await process.wait()
    except TimeoutError:
        _kill_group(process.pid)
        await process.wait()
        pumps.cancel()
        if track is not None:
            track(None)
        raise StepFailed(f"{what} timed out after {_seconds(timeout)}") from None
    except asyncio.CancelledError:
        # Reap it before the cancel goes on (``wait`` also sees its pipes closed):
        # the loop may be closing (a server stopping), whose own cancel of every
        # task may already have stopped the pumps, and a child left unreaped would
        # leak. Not through ``pumps``, for that reason.
        if await _kill_and_reap(process) and track is not None:
            with contextlib.suppress(Exception):
                track(None)
        raise
    if track is not None:
        track(None)
    return code


async def _pump(stream: asyncio.StreamReader, log: LogSink, name: str) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # longer than the reader's limit
            line = await stream.read(MAX_LINE)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        log(text[:MAX_LINE], stream=name)


async def _kill_and_reap(process: asyncio.subprocess.Process) -> bool:
    """Kill the process group and wait (a while) for the leader; whether it was reaped."""
    _kill_group(process.pid)
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(process.wait(), REAP_TIMEOUT)
    return process.returncode is not None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _seconds(timeout: float | None) -> str:
    if timeout is None:
        return "?"
    if timeout >= 60 and timeout % 60 == 0:
        return f"{int(timeout // 60)}m"
    return f"{timeout:g}s"
